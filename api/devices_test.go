package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/shadow"
	"github.com/weft-io/weft/store"
)

// fillShadows puts n shadows: ids dev-000000.., classes pump, chiller and
// meter in turn, edges edge-a and edge-b in turn, every fourth
// disconnected, every fifth out of sync (desired setpoint 5, reported 4),
// every hundredth anomalous.
func fillShadows(tb testing.TB, st *store.Store, n int) {
	tb.Helper()
	classes := []string{"pump", "chiller", "meter"}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	const workers = 64
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				desired, score := 4, 0.1
				if i%5 == 0 {
					desired = 5
				}
				if i%100 == 0 {
					score = 0.95
				}
				doc := fmt.Sprintf(`{"reported":{"setpoint":4,"sample_interval_s":5,"firmware":"1.0.0"},"desired":{"setpoint":%d},"class":%q,"edge":"edge-%c","site":%q,"connected":%v,"score":%g,"last_seen":"2026-03-01T11:00:00Z","firmware":"1.0.0"}`,
					desired, classes[i%3], 'a'+i%2, []string{"north", "south"}[i%2], i%4 != 0, score)
				if _, err := st.Table(store.ShadowsTable).Put(context.Background(), fmt.Sprintf("dev-%06d", i), json.RawMessage(doc)); err != nil {
					mu.Lock()
					first = err
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	if first != nil {
		tb.Fatal(first)
	}
}

// scoped returns a token with role and scope.
func (e *env) scoped(role certs.Role, scope map[string]string) string {
	e.t.Helper()
	tok, err := certs.IssueToken(e.priv, certs.TokenClaims{Subject: "scoped@" + string(role), Role: role, Scope: scope}, time.Hour)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// getAs sends a GET with token expecting want, decoding into v.
func (e *env) getAs(path, token string, want int, v any) {
	e.t.Helper()
	resp, b := e.do("GET", path, token, "")
	if resp.StatusCode != want {
		e.t.Fatalf("GET %s: status %d, want %d: %s", path, resp.StatusCode, want, b)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			e.t.Fatalf("GET %s: %v: %s", path, err, b)
		}
	}
}

// listAll pages through a device list and returns the ids.
func (e *env) listAll(query, token string) []string {
	e.t.Helper()
	var ids []string
	after := ""
	for range 10000 {
		var page DevicesResponse
		e.getAs("/api/v1/devices?"+query+"&after="+after, token, 200, &page)
		for _, d := range page.Devices {
			ids = append(ids, d.ID)
		}
		if page.Next == "" {
			return ids
		}
		after = page.Next
	}
	e.t.Fatal("paging does not end")
	return nil
}

func ids(n int, keep func(int) bool) []string {
	var out []string
	for i := range n {
		if keep(i) {
			out = append(out, fmt.Sprintf("dev-%06d", i))
		}
	}
	return out
}

func TestDeviceList(t *testing.T) {
	e := newEnv(t)
	const n = 600
	fillShadows(t, e.st, n)
	viewer := e.token(certs.RoleViewer)

	var page DevicesResponse
	e.getAs("/api/v1/devices?limit=2", viewer, 200, &page)
	if len(page.Devices) != 2 || page.Next != "dev-000001" {
		t.Fatalf("first page %+v", page)
	}
	d := page.Devices[0]
	if d.ID != "dev-000000" || d.Class != "pump" || d.Edge != "edge-a" || d.Connected || d.InSync || !d.Anomalous ||
		d.Score == nil || d.Firmware != "1.0.0" || d.Version != 1 || d.LastSeen.IsZero() {
		t.Fatalf("device %+v", d)
	}
	for _, tt := range []struct {
		query string
		want  func(int) bool
	}{
		{"limit=50", func(int) bool { return true }},
		{"class=meter&limit=33", func(i int) bool { return i%3 == 2 }},
		{"edge=edge-b&connected=false", func(i int) bool { return i%2 == 1 && i%4 == 0 }},
		{"in_sync=false&limit=7", func(i int) bool { return i%5 == 0 }},
		{"in-sync=true&class=pump", func(i int) bool { return i%5 != 0 && i%3 == 0 }},
		{"anomaly=true", func(i int) bool { return i%100 == 0 }},
		{"anomaly=false&limit=1000", func(i int) bool { return i%100 != 0 }},
		{"anomaly=0.05", func(int) bool { return true }},
		{"prefix=dev-0001", func(i int) bool { return i >= 100 && i < 200 }},
	} {
		if got, want := e.listAll(tt.query, viewer), ids(n, tt.want); !slices.Equal(got, want) {
			t.Errorf("%s: %d devices, want %d", tt.query, len(got), len(want))
		}
	}

	// Scoped tokens see their part of the fleet only.
	pumps := e.scoped(certs.RoleViewer, map[string]string{"class": "pump"})
	if got, want := e.listAll("limit=100", pumps), ids(n, func(i int) bool { return i%3 == 0 }); !slices.Equal(got, want) {
		t.Errorf("class scope: %d devices, want %d", len(got), len(want))
	}
	if got := e.listAll("class=meter", pumps); len(got) != 0 {
		t.Errorf("class scope asking for another class: %d devices", len(got))
	}
	pumpsOfB := e.scoped(certs.RoleViewer, map[string]string{"class": "pump", "edge": "edge-b"})
	if got, want := e.listAll("", pumpsOfB), ids(n, func(i int) bool { return i%3 == 0 && i%2 == 1 }); !slices.Equal(got, want) {
		t.Errorf("class and edge scope: %d devices, want %d", len(got), len(want))
	}
	one := e.scoped(certs.RoleViewer, map[string]string{"device": "dev-000007"})
	if got := e.listAll("", one); !slices.Equal(got, []string{"dev-000007"}) {
		t.Errorf("device scope: %v", got)
	}
	north := e.scoped(certs.RoleViewer, map[string]string{"site": "north"})
	if got, want := e.listAll("", north), ids(n, func(i int) bool { return i%2 == 0 }); !slices.Equal(got, want) {
		t.Errorf("site scope: %d devices, want %d", len(got), len(want))
	}
	if got := e.listAll("site=south", north); len(got) != 0 {
		t.Errorf("site scope asking for another site: %d devices", len(got))
	}
	var south DevicesResponse
	e.getAs("/api/v1/devices?site=south&limit=5", viewer, 200, &south)
	if len(south.Devices) != 5 || south.Devices[0].Site != "south" {
		t.Errorf("site filter: %+v", south.Devices)
	}

	for _, bad := range []string{"limit=0", "limit=1001", "connected=maybe", "in_sync=2", "anomaly=high", "anomaly=-1"} {
		resp, b := e.do("GET", "/api/v1/devices?"+bad, viewer, "")
		problem(t, resp, b, 400)
	}
	resp, b := e.do("GET", "/api/v1/devices", "", "")
	problem(t, resp, b, 401)

	// Fleet counts and edges.
	var sum shadow.Summary
	e.getAs("/api/v1/fleet", viewer, 200, &sum)
	if sum.Devices != n || sum.Connected != 450 || sum.InSync != 480 || sum.Anomalous != 6 || len(sum.Classes) != 3 {
		t.Errorf("fleet %+v", sum)
	}
	e.getAs("/api/v1/fleet", pumps, 200, &sum)
	if sum.Devices != 200 {
		t.Errorf("scoped fleet: %d devices", sum.Devices)
	}
	var edges EdgesResponse
	e.getAs("/api/v1/edges", viewer, 200, &edges)
	if len(edges.Edges) != 2 || edges.Edges[0].Name != "edge-a" || edges.Edges[0].Devices != 300 || edges.Edges[0].Link != nil {
		t.Errorf("edges %+v", edges)
	}
}

// fakeLinks reports one link.
type fakeLinks struct{}

func (fakeLinks) Links(context.Context) []LinkStatus {
	return []LinkStatus{
		{Peer: "edge-a", State: "up", Backlog: 3, LagSeconds: 0.5},
		{Peer: "edge-z", State: "down"},
	}
}

func TestEdgesWithLinks(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Links = fakeLinks{} })
	fillShadows(t, e.st, 10)
	var edges EdgesResponse
	e.getAs("/api/v1/edges", e.token(certs.RoleViewer), 200, &edges)
	if len(edges.Edges) != 3 {
		t.Fatalf("edges %+v", edges)
	}
	if a := edges.Edges[0]; a.Name != "edge-a" || a.Devices != 5 || a.Link == nil || a.Link.Backlog != 3 {
		t.Errorf("edge-a %+v", a)
	}
	if z := edges.Edges[2]; z.Name != "edge-z" || z.Devices != 0 || z.Link == nil || z.Link.State != "down" {
		t.Errorf("edge-z %+v", z)
	}
	// A scoped token does not see links to edges outside its devices.
	e.getAs("/api/v1/edges", e.scoped(certs.RoleViewer, map[string]string{"edge": "edge-b"}), 200, &edges)
	if len(edges.Edges) != 1 || edges.Edges[0].Name != "edge-b" {
		t.Errorf("scoped edges %+v", edges)
	}
}

func TestDeviceGet(t *testing.T) {
	e := newEnv(t)
	fillShadows(t, e.st, 10)
	viewer := e.token(certs.RoleViewer)
	var d shadow.Doc
	resp := e.get("/api/v1/devices/dev-000005", certs.RoleViewer, 200, &d)
	if d.ID != "dev-000005" || d.InSync || !shadow.Equal(d.Delta, map[string]any{"setpoint": 5.0}) || d.Reported["setpoint"] != 4.0 {
		t.Fatalf("device %+v", d)
	}
	if etag := resp.Header.Get("ETag"); etag != `"1"` {
		t.Fatalf("ETag %q", etag)
	}
	req := e.request("GET", "/api/v1/devices/dev-000005", certs.RoleViewer)
	req.Header.Set("If-None-Match", `"1"`)
	if resp, _ := doReq(t, req); resp.StatusCode != 304 {
		t.Fatalf("If-None-Match: %d", resp.StatusCode)
	}
	r, b := e.do("GET", "/api/v1/devices/nope", viewer, "")
	problem(t, r, b, 404)
	// Out of scope is not found, not forbidden: a scoped token does not
	// learn which devices exist elsewhere.
	r, b = e.do("GET", "/api/v1/devices/dev-000005", e.scoped(certs.RoleViewer, map[string]string{"class": "pump"}), "")
	problem(t, r, b, 404)
	e.getAs("/api/v1/devices/dev-000006", e.scoped(certs.RoleViewer, map[string]string{"class": "pump"}), 200, &d)
}

// patch sends a PATCH .../desired.
func (e *env) patch(id, token, contentType, ifMatch, body string) (*http.Response, []byte) {
	e.t.Helper()
	req, err := http.NewRequest("PATCH", e.url+"/api/v1/devices/"+id+"/desired", strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if ifMatch != "" {
		req.Header.Set("If-Match", ifMatch)
	}
	return doReq(e.t, req)
}

const mergePatch = "application/merge-patch+json"

func TestDesiredPatch(t *testing.T) {
	e := newEnv(t)
	fillShadows(t, e.st, 10)
	ctx := context.Background()
	operator := e.token(certs.RoleOperator)

	resp, b := e.patch("dev-000001", operator, mergePatch, `"1"`, `{"setpoint": 7, "sample_interval_s": 10}`)
	if resp.StatusCode != 200 {
		t.Fatalf("PATCH: %d %s", resp.StatusCode, b)
	}
	var d shadow.Doc
	json.Unmarshal(b, &d)
	if d.Version != 2 || resp.Header.Get("ETag") != `"2"` || !shadow.Equal(d.Delta, map[string]any{"setpoint": 7.0, "sample_interval_s": 10.0}) || d.DesiredTS["setpoint"].IsZero() {
		t.Fatalf("after PATCH: %s", b)
	}
	msgs, err := e.st.Stream(store.UpdatesStream).Read(ctx, "device/dev-000001", 0, 0, store.ReadOptions{})
	if err != nil || len(msgs) != 1 || msgs[0].Headers["subtopic"] != "shadow/delta" {
		t.Fatalf("delta messages %v, %v", msgs, err)
	}
	var delta map[string]any
	if json.Unmarshal(msgs[0].Value, &delta) != nil || delta["setpoint"] != 7.0 || delta["sample_interval_s"] != 10.0 {
		t.Fatalf("delta message %s", msgs[0].Value)
	}

	// The audit record names the token's subject.
	var audit AuditResponse
	e.get("/api/v1/audit?subject=alice@operator", certs.RoleAdmin, 200, &audit)
	if len(audit.Records) != 1 {
		t.Fatalf("audit %+v", audit)
	}
	rec := audit.Records[0]
	if rec.Action != "shadow.desired" || rec.Object != "/shadows/devices/dev-000001" || rec.Node != e.st.Name() || !strings.Contains(string(rec.Detail), `"version":2`) {
		t.Fatalf("audit record %+v %s", rec, rec.Detail)
	}

	for _, tt := range []struct {
		name, token, ct, ifMatch, body string
		status                         int
	}{
		{"viewer", e.token(certs.RoleViewer), mergePatch, "", `{"setpoint":1}`, 403},
		{"stale If-Match", operator, mergePatch, `"1"`, `{"setpoint":1}`, 412},
		{"bad If-Match", operator, mergePatch, `"x"`, `{"setpoint":1}`, 400},
		{"wrong media type", operator, "text/plain", "", `{"setpoint":1}`, 415},
		{"no media type", operator, "", "", `{"setpoint":1}`, 415},
		{"not an object", operator, mergePatch, "", `[1,2]`, 400},
		{"not JSON", operator, mergePatch, "", `{"setpoint":`, 400},
		{"out of scope", e.scoped(certs.RoleOperator, map[string]string{"class": "pump"}), mergePatch, "", `{"setpoint":1}`, 404},
		{"unknown device in scope", e.scoped(certs.RoleOperator, map[string]string{"class": "chiller"}), mergePatch, "", `{"setpoint":1}`, 404},
		{"another site", e.scoped(certs.RoleOperator, map[string]string{"site": "north"}), mergePatch, "", `{"setpoint":1}`, 404},
	} {
		id := "dev-000001"
		if tt.name == "unknown device in scope" {
			id = "new-device"
		}
		resp, b := e.patch(id, tt.token, tt.ct, tt.ifMatch, tt.body)
		problem(t, resp, b, tt.status)
	}
	if d, _ := shadow.Get(ctx, e.st, "dev-000001"); d.Version != 2 {
		t.Fatalf("refused patches changed the shadow to version %d", d.Version)
	}
	if _, next, _ := e.st.Stream(store.UpdatesStream).Bounds(ctx, "device/dev-000001", 0); next != 1 {
		t.Fatalf("refused patches sent %d deltas", next-1)
	}

	// In scope, with the version from a GET.
	chillers := e.scoped(certs.RoleOperator, map[string]string{"class": "chiller"})
	resp, b = e.patch("dev-000001", chillers, "application/merge-patch+json; charset=utf-8", `"2"`, `{"setpoint": null}`)
	if resp.StatusCode != 200 {
		t.Fatalf("scoped PATCH: %d %s", resp.StatusCode, b)
	}
	d = shadow.Doc{}
	json.Unmarshal(b, &d)
	if d.Desired["setpoint"] != nil || d.Version != 3 {
		t.Fatalf("after removing setpoint: %s", b)
	}
	e.get("/api/v1/audit?object=/shadows/devices/dev-000001", certs.RoleAdmin, 200, &audit)
	if len(audit.Records) != 2 || audit.Records[1].Subject != "scoped@operator" {
		t.Fatalf("audit %+v", audit)
	}
	resp, b = e.do("GET", "/api/v1/audit", e.token(certs.RoleOperator), "")
	problem(t, resp, b, 403)

	// Pre-provisioning a device that never connected, without a scope.
	resp, b = e.patch("new-device", operator, mergePatch, "", `{"setpoint": 3}`)
	if resp.StatusCode != 200 {
		t.Fatalf("new device: %d %s", resp.StatusCode, b)
	}
}

func TestDesiredReadOnly(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.DesiredReadOnly = true })
	fillShadows(t, e.st, 3)
	resp, b := e.patch("dev-000001", e.token(certs.RoleAdmin), mergePatch, "", `{"setpoint": 3}`)
	if p := problem(t, resp, b, 409); p.Title != "Desired state owned elsewhere" {
		t.Fatalf("problem %+v", p)
	}
}

func TestDesiredDeltaNotSent(t *testing.T) {
	e := newEnv(t)
	fillShadows(t, e.st, 3)
	ctx := context.Background()
	if err := e.st.SetVolume(ctx, "updates", store.VolumeOptions{Quota: 1}); err != nil {
		t.Fatal(err)
	}
	resp, b := e.patch("dev-000001", e.token(certs.RoleOperator), mergePatch, "", `{"setpoint": 3}`)
	if p := problem(t, resp, b, 503); p.Title != "Delta not sent" {
		t.Fatalf("problem %+v", p)
	}
	// The change stands, and is audited.
	if d, _ := shadow.Get(ctx, e.st, "dev-000001"); !shadow.Equal(d.Desired["setpoint"], 3.0) {
		t.Fatalf("desired %v", d.Desired)
	}
	var audit AuditResponse
	e.get("/api/v1/audit?object=/shadows/devices/dev-000001", certs.RoleAdmin, 200, &audit)
	if len(audit.Records) != 1 || !strings.Contains(string(audit.Records[0].Detail), `"delta_sent":false`) {
		t.Fatalf("audit %+v", audit)
	}
}

// appendAt appends device messages with given timestamps to by_device.
func appendAt(t *testing.T, st *store.Store, id string, topic string, times ...time.Time) {
	t.Helper()
	msgs := make([]store.Message, len(times))
	for i, ts := range times {
		msgs[i] = store.Message{Value: fmt.Appendf(nil, `{"n":%d}`, i), Timestamp: ts, Headers: map[string]string{"mqtt_topic": topic, "device": id}}
	}
	if _, err := st.Stream(store.ByDeviceStream).Append(context.Background(), id, msgs...); err != nil {
		t.Fatal(err)
	}
}

func TestDeviceHistoryAndEvents(t *testing.T) {
	e := newEnv(t)
	fillShadows(t, e.st, 3)
	t0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	var times []time.Time
	for i := range 300 {
		times = append(times, t0.Add(time.Duration(i)*time.Second))
	}
	appendAt(t, e.st, "dev-000001", "devices/dev-000001/telemetry", times...)
	appendAt(t, e.st, "dev-000001", "devices/dev-000001/events/alarm", t0.Add(400*time.Second), t0.Add(401*time.Second))
	appendAt(t, e.st, "dev-000001", "devices/dev-000001/telemetry", t0.Add(402*time.Second))
	at := func(s int) string { return t0.Add(time.Duration(s) * time.Second).Format(time.RFC3339Nano) }

	var h HistoryResponse
	e.get("/api/v1/devices/dev-000001/history?from="+at(10)+"&to="+at(20), certs.RoleViewer, 200, &h)
	if h.Source != "local" || len(h.Messages) != 10 || h.More || *h.Messages[0].Value != `{"n":10}` || *h.Messages[9].Value != `{"n":19}` {
		t.Fatalf("range 10..20: %+v", h)
	}
	e.get("/api/v1/devices/dev-000001/history?from="+at(10)+"&limit=5", certs.RoleViewer, 200, &h)
	if len(h.Messages) != 5 || !h.More || *h.Messages[4].Value != `{"n":14}` {
		t.Fatalf("from 10, limit 5: %+v", h)
	}
	// Without from: the latest before to.
	e.get("/api/v1/devices/dev-000001/history?limit=3", certs.RoleViewer, 200, &h)
	if len(h.Messages) != 3 || !h.More || *h.Messages[2].Value != `{"n":0}` || h.Messages[2].Headers["mqtt_topic"] != "devices/dev-000001/telemetry" {
		t.Fatalf("latest 3: %+v", h)
	}
	e.get("/api/v1/devices/dev-000001/history?to="+at(2), certs.RoleViewer, 200, &h)
	if len(h.Messages) != 2 || h.More {
		t.Fatalf("before 2: %+v", h)
	}
	e.get("/api/v1/devices/dev-000002/history", certs.RoleViewer, 200, &h)
	if len(h.Messages) != 0 || h.Messages == nil {
		t.Fatalf("no history: %+v", h)
	}

	var ev EventsResponse
	e.get("/api/v1/devices/dev-000001/events", certs.RoleViewer, 200, &ev)
	if len(ev.Events) != 2 || ev.Events[0].Headers["mqtt_topic"] != "devices/dev-000001/events/alarm" {
		t.Fatalf("events %+v", ev)
	}
	e.get("/api/v1/devices/dev-000001/events?limit=1", certs.RoleViewer, 200, &ev)
	if len(ev.Events) != 1 || !ev.More || !ev.Events[0].Timestamp.Equal(t0.Add(401*time.Second)) {
		t.Fatalf("latest event %+v", ev)
	}

	for _, bad := range []string{"from=yesterday", "to=x", "limit=0", "from=" + at(5) + "&to=" + at(5)} {
		resp, b := e.do("GET", "/api/v1/devices/dev-000001/history?"+bad, e.token(certs.RoleViewer), "")
		problem(t, resp, b, 400)
	}
	resp, b := e.do("GET", "/api/v1/devices/dev-000001/history", e.scoped(certs.RoleViewer, map[string]string{"class": "pump"}), "")
	problem(t, resp, b, 404)
}

// fakeRemote answers history from "the edge".
type fakeRemote struct{ asked []string }

func (f *fakeRemote) History(_ context.Context, edge, device string, q RangeQuery) ([]store.Message, bool, error) {
	f.asked = append(f.asked, edge+"/"+device)
	return []store.Message{{Value: []byte("remote"), Timestamp: q.To.Add(-time.Second)}}, false, nil
}

func TestDeviceHistoryFromEdge(t *testing.T) {
	remote := &fakeRemote{}
	e := newEnv(t, func(c *Config) { c.RemoteHistory = remote })
	fillShadows(t, e.st, 3)
	var h HistoryResponse
	e.get("/api/v1/devices/dev-000001/history", certs.RoleViewer, 200, &h)
	if h.Source != "edge" || h.Edge != "edge-b" || len(h.Messages) != 1 || *h.Messages[0].Value != "remote" {
		t.Fatalf("history %+v", h)
	}
	appendAt(t, e.st, "dev-000001", "devices/dev-000001/telemetry", time.Now().Add(-time.Minute))
	e.get("/api/v1/devices/dev-000001/history", certs.RoleViewer, 200, &h)
	if h.Source != "local" || len(remote.asked) != 1 {
		t.Fatalf("history %+v after %v", h, remote.asked)
	}
}

// sseEvent is one event read from a stream.
type sseEvent struct{ id, event, data string }

// readEvents reads events from an event stream body as they come.
func readEvents(body io.Reader) <-chan sseEvent {
	out := make(chan sseEvent, 100)
	go func() {
		defer close(out)
		buf := make([]byte, 0, 4096)
		tmp := make([]byte, 4096)
		for {
			n, err := body.Read(tmp)
			buf = append(buf, tmp[:n]...)
			for {
				i := strings.Index(string(buf), "\n\n")
				if i < 0 {
					break
				}
				var ev sseEvent
				for _, line := range strings.Split(string(buf[:i]), "\n") {
					k, v, _ := strings.Cut(line, ": ")
					switch k {
					case "id":
						ev.id = v
					case "event":
						ev.event = v
					case "data":
						ev.data += v
					}
				}
				buf = buf[i+2:]
				if ev.event != "" {
					out <- ev
				}
			}
			if err != nil {
				return
			}
		}
	}()
	return out
}

func TestTailSSE(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st := e.st.Stream(store.EventsStream)
	if _, err := st.Append(ctx, "edge1", store.Message{Value: []byte("old")}); err != nil {
		t.Fatal(err)
	}
	waiting := make(chan struct{}, 10)
	e.srv.testHookWait = func() { waiting <- struct{}{} }

	open := func(query, lastID string) (*http.Response, <-chan sseEvent) {
		req, _ := http.NewRequestWithContext(ctx, "GET", e.url+"/api/v1/streams/telemetry/events/tail?"+query, nil)
		req.Header.Set("Authorization", "Bearer "+e.token(certs.RoleViewer))
		if lastID != "" {
			req.Header.Set("Last-Event-ID", lastID)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
			t.Fatalf("tail: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		return resp, readEvents(resp.Body)
	}
	next := func(events <-chan sseEvent) sseEvent {
		t.Helper()
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("event stream ended")
			}
			return ev
		case <-ctx.Done():
			t.Fatal("timed out waiting for an event")
		}
		return sseEvent{}
	}

	resp, events := open("topic=edge1", "")
	<-waiting // the tail starts at the end: "old" is not sent
	for _, v := range []string{"a", "b"} {
		if _, err := st.Append(ctx, "edge1", store.Message{Value: []byte(v)}); err != nil {
			t.Fatal(err)
		}
	}
	for i, want := range []string{"a", "b"} {
		ev := next(events)
		var m Message
		if err := json.Unmarshal([]byte(ev.data), &m); err != nil {
			t.Fatal(err)
		}
		if ev.event != "message" || ev.id != fmt.Sprint(i+1) || *m.Value != want || m.Offset != uint64(i+1) {
			t.Fatalf("event %+v, want %s at %d", ev, want, i+1)
		}
	}
	resp.Body.Close()

	// A browser reconnecting sends the last id it saw.
	_, events = open("topic=edge1", "0")
	if ev := next(events); ev.id != "1" {
		t.Fatalf("resumed at %+v, want offset 1", ev)
	}
	_, events = open("topic=edge1&from=0", "")
	if ev := next(events); ev.id != "0" || !strings.Contains(ev.data, `"old"`) {
		t.Fatalf("from 0: %+v", ev)
	}

	for _, q := range []string{"", "topic=edge1&from=x", "topic=edge1&partition=-1"} {
		req := e.request("GET", "/api/v1/streams/telemetry/events/tail?"+q, certs.RoleViewer)
		resp, b := doReq(t, req)
		problem(t, resp, b, 400)
	}
	req := e.request("GET", "/api/v1/streams/telemetry/nope/tail?topic=x", certs.RoleViewer)
	resp, b := doReq(t, req)
	problem(t, resp, b, 404)
}

func TestSSEEventLines(t *testing.T) {
	rec := &flushRecorder{header: http.Header{}}
	ev, err := NewSSE(rec)
	if err != nil {
		t.Fatal(err)
	}
	ev.Event("7", "message", []byte("one\ntwo\r\nthree"))
	ev.Comment("keep-alive")
	want := "id: 7\nevent: message\ndata: one\ndata: two\ndata: \ndata: three\n\n: keep-alive\n\n"
	if rec.body.String() != want {
		t.Fatalf("wrote %q, want %q", rec.body.String(), want)
	}
}

type flushRecorder struct {
	header http.Header
	body   strings.Builder
}

func (f *flushRecorder) Header() http.Header         { return f.header }
func (f *flushRecorder) Write(b []byte) (int, error) { return f.body.Write(b) }
func (f *flushRecorder) WriteHeader(int)             {}
func (f *flushRecorder) Flush()                      {}

// TestDeviceProblemTypesDocumented checks that the problems of the device
// routes resolve to headings of docs/api.md.
func TestDeviceProblemTypesDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	headings := map[string]bool{}
	for line := range strings.Lines(string(doc)) {
		if h, ok := strings.CutPrefix(line, "#"); ok {
			headings[anchor(strings.TrimSpace(strings.TrimLeft(h, "#")))] = true
		}
	}
	for _, title := range []string{"Unsupported media type", "Desired state owned elsewhere", "Delta not sent"} {
		if !headings[anchor(title)] {
			t.Errorf("problem %q has no heading in docs/api.md", title)
		}
	}
}
