package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	"github.com/weft-io/weft/api"
	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/internal/apiclient"
	"github.com/weft-io/weft/shadow"
	"github.com/weft-io/weft/store"
)

// testNode is a node's API over a real store, served on loopback, as
// weft edge and weft core serve it.
type testNode struct {
	url  string
	st   *store.Store
	priv ed25519.PrivateKey
	// deviceLists counts the requests to GET /api/v1/devices.
	deviceLists atomic.Int64
}

func newTestNode(t *testing.T) *testNode {
	t.Helper()
	st, err := store.Open(store.Config{Dir: t.TempDir(), MinFreeBytes: -1, RetentionInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	srv, err := api.New(api.Config{Store: st, TokenKey: pub, Gatherer: reg, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	n := &testNode{st: st, priv: priv}
	h := srv.Handler()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Path == "/api/v1/devices" {
			n.deviceLists.Add(1)
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	n.url = ts.URL
	return n
}

func (n *testNode) token(t *testing.T, role certs.Role) string {
	t.Helper()
	tok, err := certs.IssueToken(n.priv, certs.TokenClaims{Subject: "alice@" + string(role), Role: role}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// addDevices gives the node count devices, dev-000 on, reported by the
// edge truck-7: every third a chiller, the others pumps.
func (n *testNode) addDevices(t *testing.T, count int) {
	t.Helper()
	for i := range count {
		class := "pump"
		if i%3 == 0 {
			class = "chiller"
		}
		id := fmt.Sprintf("dev-%03d", i)
		if _, err := shadow.Report(context.Background(), n.st, id, json.RawMessage(`{"setpoint":4,"firmware":"1.0.0"}`),
			shadow.Source{Class: class, Edge: "truck-7", Site: "yard"}, time.Now(), nil); err != nil {
			t.Fatal(err)
		}
	}
}

// isolate gives the test its own config directory and no WEFT_SERVER or
// WEFT_TOKEN.
func isolate(t *testing.T) string {
	dir := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", dir)
	t.Setenv("HOME", dir)
	t.Setenv(serverEnv, "")
	t.Setenv(tokenEnv, "")
	return filepath.Join(dir, "weft", "config.yaml")
}

// weft runs the command line args through the cobra root, as main does,
// and returns its stdout, and its error as main prints it ("" if none).
func weft(t *testing.T, args ...string) (stdout, errLine string) {
	t.Helper()
	return weftCtx(t, context.Background(), nil, args...)
}

func weftCtx(t *testing.T, ctx context.Context, out io.Writer, args ...string) (stdout, errLine string) {
	t.Helper()
	root := newRootCmd()
	var buf, stderr bytes.Buffer
	w := io.Writer(&buf)
	if out != nil {
		w = io.MultiWriter(&buf, out)
	}
	root.SetOut(w)
	root.SetErr(&stderr)
	root.SetIn(strings.NewReader(""))
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		errLine = "weft: " + err.Error()
	}
	return buf.String(), errLine
}

// must runs args and fails the test if the command fails.
func must(t *testing.T, args ...string) string {
	t.Helper()
	out, errLine := weft(t, args...)
	if errLine != "" {
		t.Fatalf("weft %s: %s", strings.Join(args, " "), errLine)
	}
	return out
}

// fails runs args and fails the test unless the command fails with an
// error holding want.
func fails(t *testing.T, want string, args ...string) {
	t.Helper()
	out, errLine := weft(t, args...)
	if errLine == "" || !strings.Contains(errLine, want) {
		t.Fatalf("weft %s: error %q, want one holding %q (stdout %q)", strings.Join(args, " "), errLine, want, out)
	}
	if strings.HasPrefix(want, "weft: ") && strings.Contains(errLine, "\n") {
		t.Fatalf("weft %s: error of more than one line: %q", strings.Join(args, " "), errLine)
	}
}

func deviceIDs(t *testing.T, jsonOut string) []string {
	t.Helper()
	var ds []struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(jsonOut), &ds); err != nil {
		t.Fatalf("%v: %s", err, jsonOut)
	}
	ids := make([]string, len(ds))
	for i, d := range ds {
		ids[i] = d.ID
	}
	return ids
}

func TestRemoteLoginContexts(t *testing.T) {
	cfgPath := isolate(t)
	a, b := newTestNode(t), newTestNode(t)
	a.addDevices(t, 2)
	b.addDevices(t, 5)
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "a.jwt")
	if err := os.WriteFile(tokFile, []byte(a.token(t, certs.RoleViewer)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	fails(t, "no node to call", "devices", "ls")
	// A token the node refuses is not saved.
	fails(t, "401 Invalid token", "login", "--server", a.url, "--token", b.token(t, certs.RoleViewer))
	if _, err := os.Stat(cfgPath); !os.IsNotExist(err) {
		t.Fatalf("config written after a refused login: %v", err)
	}

	must(t, "login", "--server", a.url, "--token-file", tokFile, "--name", "a")
	for path, mode := range map[string]os.FileMode{cfgPath: 0o600, filepath.Dir(cfgPath): 0o700 | os.ModeDir} {
		if fi, err := os.Stat(path); err != nil || fi.Mode() != mode {
			t.Fatalf("%s: %v %v, want mode %v", path, fi.Mode(), err, mode)
		}
	}
	must(t, "login", "--server", b.url, "--token", b.token(t, certs.RoleViewer))
	bName := strings.TrimPrefix(b.url, "http://")
	if out := must(t, "context", "ls"); !strings.Contains(out, "*        "+bName) || strings.Contains(out, "eyJ") {
		t.Fatalf("context ls:\n%s", out)
	}
	if n := len(deviceIDs(t, must(t, "devices", "ls", "-o", "json"))); n != 5 {
		t.Fatalf("current context b: %d devices", n)
	}
	must(t, "context", "use", "a")
	if n := len(deviceIDs(t, must(t, "devices", "ls", "-o", "json"))); n != 2 {
		t.Fatalf("current context a: %d devices", n)
	}
	fails(t, `no context "nope"`, "context", "use", "nope")
	fails(t, `no context "nope"`, "devices", "ls", "--context", "nope")
	if n := len(deviceIDs(t, must(t, "devices", "ls", "-o", "json", "--context", bName))); n != 5 {
		t.Fatalf("--context b: %d devices", n)
	}

	// The environment overrides the context, and the flags the environment.
	t.Setenv(serverEnv, b.url)
	fails(t, "401 Invalid token", "devices", "ls") // a's token, b's server
	t.Setenv(tokenEnv, b.token(t, certs.RoleViewer))
	if n := len(deviceIDs(t, must(t, "devices", "ls", "-o", "json"))); n != 5 {
		t.Fatalf("WEFT_SERVER and WEFT_TOKEN of b: %d devices", n)
	}
	if n := len(deviceIDs(t, must(t, "devices", "ls", "-o", "json", "--server", a.url, "--token", a.token(t, certs.RoleViewer)))); n != 2 {
		t.Fatalf("--server and --token of a: %d devices", n)
	}

	var saved cliConfig
	b2, _ := os.ReadFile(cfgPath)
	if err := yaml.Unmarshal(b2, &saved); err != nil || saved.Current != "a" || len(saved.Contexts) != 2 || saved.Contexts[0].Server != a.url || saved.Contexts[0].Token == "" {
		t.Fatalf("config %+v %v:\n%s", saved, err, b2)
	}
}

// TestRemoteLoginTLS logs in to an HTTPS node by pinning its
// certificate's fingerprint, which the refused first attempt names.
func TestRemoteLoginTLS(t *testing.T) {
	isolate(t)
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"devices":[{"id":"tls-1"}],"next":""}`)
	}))
	ts.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake
	ts.StartTLS()
	defer ts.Close()
	fp := apiclient.Fingerprint(ts.Certificate())
	fails(t, "fingerprint "+fp, "login", "--server", ts.URL, "--token", "tok")
	must(t, "login", "--server", ts.URL, "--token", "tok", "--fingerprint", fp)
	if ids := deviceIDs(t, must(t, "devices", "ls", "-o", "json")); len(ids) != 1 || ids[0] != "tls-1" {
		t.Fatalf("devices through the pinned context: %v", ids)
	}
	if out := must(t, "context", "ls"); !strings.Contains(out, fp) {
		t.Fatalf("context ls:\n%s", out)
	}
	fails(t, "not the pinned", "devices", "ls", "--fingerprint", "sha256:"+strings.Repeat("00", 32))
}

func TestRemoteDevicesLsPages(t *testing.T) {
	isolate(t)
	n := newTestNode(t)
	n.addDevices(t, 250)
	t.Setenv(serverEnv, n.url)
	t.Setenv(tokenEnv, n.token(t, certs.RoleViewer))

	ids := deviceIDs(t, must(t, "devices", "ls", "--page-size", "100", "-o", "json"))
	if len(ids) != 250 || ids[0] != "dev-000" || ids[249] != "dev-249" || n.deviceLists.Load() != 3 {
		t.Fatalf("%d devices in %d requests, want 250 in 3", len(ids), n.deviceLists.Load())
	}
	n.deviceLists.Store(0)
	ids = deviceIDs(t, must(t, "devices", "ls", "--page-size", "100", "--limit", "120", "-o", "json"))
	if len(ids) != 120 || ids[119] != "dev-119" || n.deviceLists.Load() != 2 {
		t.Fatalf("--limit 120: %d devices in %d requests", len(ids), n.deviceLists.Load())
	}
	if ids := deviceIDs(t, must(t, "devices", "ls", "--class", "chiller", "--prefix", "dev-0", "-o", "json")); len(ids) != 34 {
		t.Fatalf("chillers dev-0..: %d", len(ids))
	}
	if ids := deviceIDs(t, must(t, "devices", "ls", "--in-sync", "--edge", "truck-7", "--site", "yard", "-o", "json")); len(ids) != 250 {
		t.Fatalf("in sync: %d", len(ids))
	}
	if ids := deviceIDs(t, must(t, "devices", "ls", "--in-sync=false", "--connected=false", "--anomaly", "-o", "json")); len(ids) != 0 {
		t.Fatalf("out of sync anomalous: %v", ids)
	}
	fails(t, "400 Bad request", "devices", "ls", "--anomaly=lots")

	// The shell completes device ids from the node.
	comp := must(t, "__complete", "devices", "get", "dev-24")
	if !strings.HasPrefix(comp, "dev-240\ndev-241\n") || !strings.Contains(comp, "dev-249\n:4\n") {
		t.Fatalf("completion of dev-24:\n%s", comp)
	}

	// Table output: aligned columns under a heading.
	lines := strings.Split(strings.TrimSuffix(must(t, "devices", "ls", "--limit", "2"), "\n"), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "ID       CLASS    EDGE     SITE  CONNECTED") ||
		!strings.HasPrefix(lines[1], "dev-000  chiller  truck-7  yard  false") || strings.Index(lines[2], "truck-7") != strings.Index(lines[0], "EDGE") {
		t.Fatalf("table:\n%s", strings.Join(lines, "\n"))
	}
}

// TestRemoteOutputRoundTrip checks that -o json and -o yaml print the
// same values, those the API answers.
func TestRemoteOutputRoundTrip(t *testing.T) {
	isolate(t)
	n := newTestNode(t)
	n.addDevices(t, 3)
	t.Setenv(serverEnv, n.url)
	t.Setenv(tokenEnv, n.token(t, certs.RoleViewer))
	var fromAPI struct {
		Devices []any `json:"devices"`
	}
	resp := getJSON(t, n, "/api/v1/devices", &fromAPI)
	_ = resp
	for _, args := range [][]string{{"devices", "ls"}, {"devices", "get", "dev-001"}, {"edges", "ls"}, {"anomalies", "ls"}} {
		var j, y any
		if err := json.Unmarshal([]byte(must(t, append(args, "-o", "json")...)), &j); err != nil {
			t.Fatalf("%v -o json: %v", args, err)
		}
		if err := yaml.Unmarshal([]byte(must(t, append(args, "-o", "yaml")...)), &y); err != nil {
			t.Fatalf("%v -o yaml: %v", args, err)
		}
		if !reflect.DeepEqual(normalize(t, j), normalize(t, y)) {
			t.Errorf("%v: json %v\nyaml %v", args, j, y)
		}
		if args[1] == "ls" && args[0] == "devices" && !reflect.DeepEqual(normalize(t, j), normalize(t, fromAPI.Devices)) {
			t.Errorf("devices ls -o json %v\nAPI %v", j, fromAPI.Devices)
		}
	}
	if out := must(t, "anomalies", "ls", "-o", "json"); out != "[]\n" {
		t.Errorf("no anomalies: %q", out)
	}
	if out := must(t, "edges", "ls"); !strings.Contains(out, "truck-7  3        0") {
		t.Errorf("edges ls:\n%s", out)
	}
}

// normalize passes a decoded value through JSON, so that YAML's and
// JSON's numbers compare equal.
func normalize(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func getJSON(t *testing.T, n *testNode, path string, v any) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("GET", n.url+path, nil)
	req.Header.Set("Authorization", "Bearer "+n.token(t, certs.RoleViewer))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
	return resp
}

var assignmentTests = []struct {
	args []string
	want string // the patch as JSON, or the error's start after "error: "
}{
	{[]string{"setpoint=7"}, `{"setpoint":7}`},
	{[]string{"setpoint=7.5", "on=true", "off=false"}, `{"off":false,"on":true,"setpoint":7.5}`},
	{[]string{"mode=eco"}, `{"mode":"eco"}`},
	{[]string{`code="7"`}, `{"code":"7"}`},
	{[]string{"gone=null"}, `{"gone":null}`},
	{[]string{"empty="}, `{"empty":""}`},
	{[]string{"eq=a=b"}, `{"eq":"a=b"}`},
	{[]string{`tags=["a","b"]`, `obj={"x":1}`}, `{"obj":{"x":1},"tags":["a","b"]}`},
	{[]string{"cfg.mode=eco", "cfg.level=2", "cfg.deep.x=1"}, `{"cfg":{"deep":{"x":1},"level":2,"mode":"eco"}}`},
	{[]string{"big=12345678901234567890"}, `{"big":12345678901234567890}`},
	{[]string{"text={not json"}, `{"text":"{not json"}`},
	{[]string{"setpoint"}, `error: "setpoint": want KEY=VALUE`},
	{[]string{"=7"}, `error: "=7": the key has an empty part`},
	{[]string{"cfg..mode=1"}, `error: "cfg..mode=1": the key has an empty part`},
	{[]string{"a=1", "a=2"}, `error: "a=2": a is set twice`},
	{[]string{"a=1", "a.b=2"}, `error: "a.b=2": a is set to a value and to fields`},
	{[]string{"a.b=2", "a=1"}, `error: "a=1": a is set to a value and to fields`},
	{[]string{`a={"b":1}`, "a.c=2"}, `error: "a.c=2": a is set to a value and to fields`},
}

func TestParseAssignments(t *testing.T) {
	for _, tt := range assignmentTests {
		got, err := parseAssignments(tt.args)
		if err != nil {
			if !strings.HasPrefix("error: "+err.Error(), tt.want) {
				t.Errorf("%q: error %v, want %s", tt.args, err, tt.want)
			}
			continue
		}
		b, _ := json.Marshal(got)
		if string(b) != tt.want {
			t.Errorf("%q: %s, want %s", tt.args, b, tt.want)
		}
	}
}

func FuzzParseAssignments(f *testing.F) {
	for _, tt := range assignmentTests {
		f.Add(strings.Join(tt.args, "\n"))
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := parseAssignments(strings.Split(s, "\n"))
		if err != nil {
			return
		}
		if _, err := json.Marshal(m); err != nil {
			t.Fatalf("%q: the patch does not encode: %v", s, err)
		}
	})
}

func TestRemoteDesiredAndErrors(t *testing.T) {
	isolate(t)
	n := newTestNode(t)
	n.addDevices(t, 2)
	t.Setenv(serverEnv, n.url)
	t.Setenv(tokenEnv, n.token(t, certs.RoleOperator))

	out := must(t, "devices", "desired", "dev-001", "setpoint=7", "cfg.mode=eco", "-o", "json")
	var doc struct {
		Version uint64         `json:"version"`
		Desired map[string]any `json:"desired"`
		Delta   map[string]any `json:"delta"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	if want := map[string]any{"setpoint": 7.0, "cfg": map[string]any{"mode": "eco"}}; !reflect.DeepEqual(doc.Desired, want) {
		t.Fatalf("desired %v, want %v", doc.Desired, want)
	}
	must(t, "devices", "desired", "dev-001", "--patch", `{"cfg": null}`, "--if-version", fmt.Sprint(doc.Version))
	fails(t, "412 Precondition failed", "devices", "desired", "dev-001", "setpoint=8", "--if-version", fmt.Sprint(doc.Version))
	got := must(t, "devices", "get", "dev-001")
	if !strings.Contains(got, "\ndesired:  {\"setpoint\":7}\n") || !strings.HasPrefix(got, "ID ") {
		t.Fatalf("get:\n%s", got)
	}
	fails(t, "nothing to set", "devices", "desired", "dev-001")
	fails(t, "not both", "devices", "desired", "dev-001", "a=1", "--patch", "{}")
	fails(t, "not valid JSON", "devices", "desired", "dev-001", "--patch", "{a:1}")

	// Errors of the API: one line with the status, title and detail.
	t.Setenv(tokenEnv, n.token(t, certs.RoleViewer))
	fails(t, "weft: 403 Forbidden: ", "devices", "desired", "dev-001", "setpoint=1")
	fails(t, "weft: 404 Not found", "devices", "get", "nope")
	fails(t, "weft: 403 Forbidden: ", "audit", "ls")
	t.Setenv(tokenEnv, n.token(t, certs.RoleOperator))
	fails(t, "weft: 409 Device not connected: ", "devices", "call", "dev-001", "ping")
	t.Setenv(tokenEnv, "")
	fails(t, "weft: 401 Missing token", "devices", "ls")

	// The change is audited; audit ls reads it with an admin token.
	t.Setenv(tokenEnv, n.token(t, certs.RoleAdmin))
	audit := must(t, "audit", "ls", "--object", "/shadows", "--since", "1h", "-o", "json")
	var recs []map[string]any
	if err := json.Unmarshal([]byte(audit), &recs); err != nil || len(recs) != 3 || recs[0]["action"] != "shadow.desired" || recs[0]["subject"] != "alice@operator" || recs[2]["action"] != "device.command.refused" {
		t.Fatalf("audit ls: %v %s", err, audit)
	}
	if out := must(t, "audit", "ls", "--since", "1h", "--limit", "1", "-o", "json"); len(decodeList(t, out)) != 1 {
		t.Fatalf("audit ls --limit 1: %s", out)
	}
}

func decodeList(t *testing.T, s string) []any {
	t.Helper()
	var v []any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("%v: %s", err, s)
	}
	return v
}

// TestRemoteCall calls a command against a stand-in for the node, which
// answers as the API does.
func TestRemoteCall(t *testing.T) {
	isolate(t)
	var got map[string]any
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.EscapedPath() != "/api/v1/devices/pump%2F7/commands" || r.Header.Get("Authorization") != "Bearer tok" {
			http.Error(w, "unexpected "+r.Method+" "+r.URL.EscapedPath(), http.StatusTeapot)
			return
		}
		got = nil
		if err := json.NewDecoder(r.Body).Decode(&got); err != nil {
			t.Error(err)
		}
		if got["name"] == "slow" {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusGatewayTimeout)
			io.WriteString(w, `{"title":"Command timed out","status":504,"detail":"pump/7 did not answer slow within 1s"}`)
			return
		}
		io.WriteString(w, `{"id":"N7ZQ3V6B2KXDF4YH5T2WJQAMRE","name":"ping","response":{"pong":true},"latency_ms":41.3}`)
	}))
	defer ts.Close()
	t.Setenv(serverEnv, ts.URL)
	t.Setenv(tokenEnv, "tok")

	out := must(t, "devices", "call", "pump/7", "ping", "--data", `{"verbose": true}`, "--timeout", "30s", "--queue", "-o", "json")
	want := map[string]any{"name": "ping", "payload": map[string]any{"verbose": true}, "timeout": "30s", "queue": true}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("body %v, want %v", got, want)
	}
	var answer map[string]any
	if err := json.Unmarshal([]byte(out), &answer); err != nil || answer["latency_ms"] != 41.3 {
		t.Fatalf("answer %v: %s", err, out)
	}
	out = must(t, "devices", "call", "pump/7", "ping")
	if want := map[string]any{"name": "ping", "timeout": "10s"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("body %v, want %v", got, want)
	}
	if !strings.Contains(out, `N7ZQ3V6B2KXDF4YH5T2WJQAMRE  ping  41.3        {"pong":true}`) {
		t.Fatalf("table:\n%s", out)
	}
	fails(t, "weft: 504 Command timed out: pump/7 did not answer slow within 1s", "devices", "call", "pump/7", "slow")
	fails(t, "not valid JSON", "devices", "call", "pump/7", "ping", "--data", "{")
}

func TestRemoteHistory(t *testing.T) {
	isolate(t)
	n := newTestNode(t)
	t.Setenv(serverEnv, n.url)
	t.Setenv(tokenEnv, n.token(t, certs.RoleViewer))
	ctx := context.Background()
	for i := range 5 {
		if _, err := n.st.Stream(store.ByDeviceStream).Append(ctx, "dev-001", store.Message{
			Value: fmt.Appendf(nil, `{"t":%d}`, i), Headers: map[string]string{"mqtt_topic": "devices/dev-001/telemetry"},
		}); err != nil {
			t.Fatal(err)
		}
	}
	var msgs []map[string]any
	out := must(t, "devices", "history", "dev-001", "--since", "1h", "-o", "json")
	if err := json.Unmarshal([]byte(out), &msgs); err != nil || len(msgs) != 5 || msgs[4]["value"] != `{"t":4}` {
		t.Fatalf("history: %v %s", err, out)
	}
	// Pages of 2 from --since: every message once, in order.
	out = must(t, "devices", "history", "dev-001", "--from", time.Now().Add(-time.Hour).Format(time.RFC3339), "--limit", "0", "-o", "yaml")
	if err := yaml.Unmarshal([]byte(out), &msgs); err != nil || len(msgs) != 5 {
		t.Fatalf("history --limit 0: %v %s", err, out)
	}
	out = must(t, "devices", "history", "dev-001", "--limit", "2")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 3 || !strings.Contains(lines[2], `4       devices/dev-001/telemetry  {"t":4}`) {
		t.Fatalf("history table:\n%s", out)
	}
	fails(t, "--limit 0", "devices", "history", "dev-001", "--limit", "0")
	fails(t, "--limit 20000: want 1 to 10000", "devices", "history", "dev-001", "--limit", "20000")
	fails(t, "RFC 3339", "devices", "history", "dev-001", "--from", "yesterday")
}

// lineWaiter is a writer that lets a test wait until n lines are written.
type lineWaiter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	wrote chan struct{}
}

func newLineWaiter() *lineWaiter { return &lineWaiter{wrote: make(chan struct{}, 1)} }

func (w *lineWaiter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	select {
	case w.wrote <- struct{}{}:
	default:
	}
	return len(p), nil
}

// wait returns the output once it has n lines, failing the test if it
// does not within a generous deadline.
func (w *lineWaiter) wait(t *testing.T, n int) string {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		w.mu.Lock()
		s := w.buf.String()
		w.mu.Unlock()
		if strings.Count(s, "\n") >= n {
			return s
		}
		select {
		case <-w.wrote:
		case <-deadline:
			t.Fatalf("waited for %d lines, have:\n%s", n, s)
		}
	}
}

func TestRemoteStreamTail(t *testing.T) {
	isolate(t)
	n := newTestNode(t)
	t.Setenv(serverEnv, n.url)
	t.Setenv(tokenEnv, n.token(t, certs.RoleViewer))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := n.st.Stream(store.EventsStream)
	for _, v := range []string{"a", "b\tc"} {
		if _, err := events.Append(ctx, "t1", store.Message{Value: []byte(v)}); err != nil {
			t.Fatal(err)
		}
	}
	w := newLineWaiter()
	done := make(chan string)
	go func() {
		_, errLine := weftCtx(t, ctx, w, "stream", "tail", "/telemetry/events", "--topic", "t1", "--from", "0")
		done <- errLine
	}()
	w.wait(t, 2)
	if _, err := events.Append(ctx, "t1", store.Message{Key: []byte("k"), Value: []byte("d")}); err != nil {
		t.Fatal(err)
	}
	if got, want := w.wait(t, 3), "0\t-\ta\n1\t-\t\"b\\tc\"\n2\tk\td\n"; got != want {
		t.Fatalf("tail:\n%q\nwant\n%q", got, want)
	}
	cancel() // Ctrl-C
	if errLine := <-done; errLine != "" {
		t.Fatalf("tail ended with %s", errLine)
	}
	fails(t, "want /volume/stream", "stream", "tail", "/telemetry", "--topic", "t1")
	fails(t, "404 Not found", "stream", "tail", "/telemetry/nope", "--topic", "t1")
	fails(t, `required flag(s) "topic" not set`, "stream", "tail", "/telemetry/events")
}

func TestRemoteAuditTail(t *testing.T) {
	isolate(t)
	n := newTestNode(t)
	n.addDevices(t, 1)
	t.Setenv(serverEnv, n.url)
	t.Setenv(tokenEnv, n.token(t, certs.RoleOperator))
	must(t, "devices", "desired", "dev-000", "setpoint=1")
	admin := n.token(t, certs.RoleAdmin)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := newLineWaiter()
	done := make(chan string)
	go func() {
		_, errLine := weftCtx(t, ctx, w, "audit", "tail", "-f", "--interval", "10ms", "--subject", "alice@operator", "--token", admin, "-o", "json")
		done <- errLine
	}()
	w.wait(t, 1)
	must(t, "devices", "desired", "dev-000", "setpoint=2")
	must(t, "devices", "desired", "dev-000", "setpoint=3")
	out := w.wait(t, 3)
	cancel()
	if errLine := <-done; errLine != "" {
		t.Fatalf("tail ended with %s", errLine)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for i, want := range []string{`{"setpoint":1}`, `{"setpoint":2}`, `{"setpoint":3}`} {
		if i >= len(lines) || !strings.Contains(lines[i], want) {
			t.Fatalf("tail -f:\n%s\nline %d should hold %s", out, i, want)
		}
	}
	if len(lines) != 3 {
		t.Fatalf("tail -f printed a record twice:\n%s", out)
	}
}

func TestCompletion(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish"} {
		if out := must(t, "completion", shell); !strings.Contains(out, "weft") || len(out) < 1000 {
			t.Errorf("completion %s: %q", shell, out)
		}
	}
}
