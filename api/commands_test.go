package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/store"
)

// commandBodies feeds TestParseCommand and seeds FuzzParseCommand: a body
// and the error it gets ("" when accepted).
var commandBodies = []struct {
	body, err string
}{
	{`{"name":"ping"}`, ""},
	{`{"name":"ping","payload":{"a": [1, 2]},"timeout":"2s"}`, ""},
	{`{"name":"reboot","timeout":"1m","queue":true}`, ""},
	{`{"name":"set.mode_2-b","payload":"text"}`, ""},
	{`{"name":"ping","payload":null}`, ""},
	{``, "empty body"},
	{`{}`, "name"},
	{`{"name":""}`, "name"},
	{`{"name":"a/b"}`, "name"},
	{`{"name":"+"}`, "name"},
	{`{"name":"#"}`, "name"},
	{`{"name":".."}`, "name"},
	{`{"name":"` + strings.Repeat("x", 65) + `"}`, "name"},
	{`{"name":"ping","timeout":"61s"}`, "timeout"},
	{`{"name":"ping","timeout":"0s"}`, "timeout"},
	{`{"name":"ping","timeout":"-1s"}`, "timeout"},
	{`{"name":"ping","timeout":"soon"}`, "timeout"},
	{`{"name":"ping","timeout":10}`, "body"},
	{`{"name":"ping","payload":{"a":}`, "body"},
	{`{"name":"ping","colour":"red"}`, "body"},
	{`{"name":"ping"} {}`, "data after"},
	{`[{"name":"ping"}]`, "body"},
	{`{"name":"ping","payload":"` + strings.Repeat("x", MaxCommandPayload) + `"}`, "payload"},
}

func TestParseCommand(t *testing.T) {
	for _, tt := range commandBodies {
		_, err := ParseCommand(strings.NewReader(tt.body))
		switch {
		case tt.err == "" && err != nil:
			t.Errorf("%.60s: %v", tt.body, err)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("%.60s: error %v, want one about %q", tt.body, err, tt.err)
		}
	}
	cmd, err := ParseCommand(strings.NewReader(`{"name":"ping"}`))
	if err != nil || cmd.Timeout != DefaultCommandTimeout || string(cmd.Payload) != `{}` || cmd.Queue {
		t.Fatalf("defaults: %+v, %v", cmd, err)
	}
	cmd, err = ParseCommand(strings.NewReader(`{"name":"set","payload":{ "a" : [1, 2] },"timeout":"1500ms","queue":true}`))
	if err != nil || cmd.Timeout != 1500*time.Millisecond || string(cmd.Payload) != `{"a":[1,2]}` || !cmd.Queue {
		t.Fatalf("explicit: %+v %s, %v", cmd, cmd.Payload, err)
	}
}

// FuzzParseCommand checks that any body is either refused or gives a
// command the gateway can deliver.
func FuzzParseCommand(f *testing.F) {
	for _, tt := range commandBodies {
		f.Add(tt.body)
	}
	f.Fuzz(func(t *testing.T, body string) {
		cmd, err := ParseCommand(strings.NewReader(body))
		if err != nil {
			return
		}
		if !validCommandName(cmd.Name) || strings.ContainsAny(cmd.Name, "/+#$\x00") {
			t.Fatalf("name %q accepted", cmd.Name)
		}
		if cmd.Timeout <= 0 || cmd.Timeout > MaxCommandTimeout {
			t.Fatalf("timeout %s accepted", cmd.Timeout)
		}
		if !json.Valid(cmd.Payload) || len(cmd.Payload) > MaxCommandPayload {
			t.Fatalf("payload %q accepted", cmd.Payload)
		}
	})
}

// command posts a command to device id with token and returns the
// response.
func (e *env) command(id, token, body string) (*http.Response, []byte) {
	e.t.Helper()
	return e.do("POST", "/api/v1/devices/"+id+"/commands", token, body)
}

// answer plays device id: it takes the next command sent on topic of
// /updates/down from offset from and answers it with reply on the
// command's response topic, as the gateway stores a device's publish. It
// returns the command message.
func answer(ctx context.Context, st *store.Store, topic, id string, from uint64, reply string) (store.Message, error) {
	msgs, err := st.Stream(store.UpdatesStream).ReadWait(ctx, topic, 0, from, store.ReadOptions{Limit: 1})
	if err != nil {
		return store.Message{}, err
	}
	m := msgs[0]
	_, err = st.Stream(store.ByDeviceStream).Append(ctx, id, store.Message{Value: []byte(reply), Headers: map[string]string{
		"device": id, headerMQTTTopic: m.Headers[HeaderResponseTopic]}})
	return m, err
}

// auditActions returns the actions of the audit records about device id.
func (e *env) auditActions(id string) []string {
	e.t.Helper()
	var audit AuditResponse
	e.get("/api/v1/audit?object=/shadows/devices/"+id, certs.RoleAdmin, 200, &audit)
	var out []string
	for _, r := range audit.Records {
		out = append(out, r.Action)
	}
	return out
}

func TestCommandAnswered(t *testing.T) {
	e := newEnv(t)
	fillShadows(t, e.st, 4) // dev-000001 is connected
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Some history of the device before the command: not an answer.
	if _, err := e.st.Stream(store.ByDeviceStream).Append(ctx, "dev-000001", store.Message{Value: []byte(`{"t":1}`),
		Headers: map[string]string{headerMQTTTopic: "devices/dev-000001/telemetry"}}); err != nil {
		t.Fatal(err)
	}
	got := make(chan store.Message, 1)
	go func() {
		defer close(got)
		// The device: telemetry after the command, then the answer.
		msgs, err := e.st.Stream(store.UpdatesStream).ReadWait(ctx, "device/dev-000001", 0, 0, store.ReadOptions{Limit: 1})
		if err != nil {
			t.Error(err)
			return
		}
		m := msgs[0]
		hist := e.st.Stream(store.ByDeviceStream)
		if _, err := hist.Append(ctx, "dev-000001", store.Message{Value: []byte(`{"t":2}`), Headers: map[string]string{headerMQTTTopic: "devices/dev-000001/telemetry"}},
			store.Message{Value: []byte(`{"pong":true}`), Headers: map[string]string{headerMQTTTopic: m.Headers[HeaderResponseTopic]}}); err != nil {
			t.Error(err)
		}
		got <- m
	}()
	resp, b := e.command("dev-000001", e.token(certs.RoleOperator), `{"name":"ping","payload":{"n":1},"timeout":"30s"}`)
	if resp.StatusCode != 200 {
		t.Fatalf("POST: %d %s", resp.StatusCode, b)
	}
	var res CommandResult
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	m := <-got
	// The command as sent.
	rid := res.ID
	wantHeaders := map[string]string{
		"subtopic":         "commands/ping/" + rid,
		"retain":           "false",
		"response_topic":   "devices/dev-000001/commands/" + rid + "/response",
		"correlation_data": base64.StdEncoding.EncodeToString([]byte(rid)),
	}
	for k, v := range wantHeaders {
		if m.Headers[k] != v {
			t.Errorf("header %s = %q, want %q", k, m.Headers[k], v)
		}
	}
	if string(m.Value) != `{"n":1}` {
		t.Errorf("payload %s", m.Value)
	}
	// The answer: the device's message on the response topic.
	if res.Name != "ping" || string(res.Response) != `{"pong":true}` || res.LatencyMS < 0 || len(rid) != 26 {
		t.Fatalf("result %s", b)
	}
	if acts := e.auditActions("dev-000001"); strings.Join(acts, ",") != "device.command,device.command.answered" {
		t.Fatalf("audit actions %v", acts)
	}
}

func TestCommandAnswerNotJSON(t *testing.T) {
	e := newEnv(t)
	fillShadows(t, e.st, 4)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	go answer(ctx, e.st, "device/dev-000002", "dev-000002", 0, "ok\n")
	resp, b := e.command("dev-000002", e.token(certs.RoleOperator), `{"name":"ping","timeout":"30s"}`)
	var res CommandResult
	if resp.StatusCode != 200 || json.Unmarshal(b, &res) != nil || string(res.Response) != `"ok\n"` {
		t.Fatalf("POST: %d %s", resp.StatusCode, b)
	}
}

func TestCommandTimeout(t *testing.T) {
	e := newEnv(t)
	fillShadows(t, e.st, 4)
	resp, b := e.command("dev-000001", e.token(certs.RoleOperator), `{"name":"ping","timeout":"20ms"}`)
	if p := problem(t, resp, b, 504); p.Title != "Command timed out" || !strings.Contains(p.Detail, "dev-000001") {
		t.Fatalf("problem %+v", p)
	}
	// The command was sent all the same, never to be retained.
	msgs, err := e.st.Stream(store.UpdatesStream).Read(context.Background(), "device/dev-000001", 0, 0, store.ReadOptions{})
	if err != nil || len(msgs) != 1 || msgs[0].Headers["retain"] != "false" {
		t.Fatalf("sent %v, %v", msgs, err)
	}
	if acts := e.auditActions("dev-000001"); strings.Join(acts, ",") != "device.command,device.command.timed_out" {
		t.Fatalf("audit actions %v", acts)
	}
}

func TestCommandNotConnected(t *testing.T) {
	e := newEnv(t)
	fillShadows(t, e.st, 4) // dev-000000 is not connected
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	operator := e.token(certs.RoleOperator)
	resp, b := e.command("dev-000000", operator, `{"name":"ping"}`)
	if p := problem(t, resp, b, 409); p.Title != "Device not connected" {
		t.Fatalf("problem %+v", p)
	}
	if _, next, _ := e.st.Stream(store.UpdatesStream).Bounds(ctx, "device/dev-000000", 0); next != 0 {
		t.Fatalf("a refused command was sent")
	}
	if acts := e.auditActions("dev-000000"); strings.Join(acts, ",") != "device.command.refused" {
		t.Fatalf("audit actions %v", acts)
	}

	// Queued: sent, and answered when the device comes back.
	go answer(ctx, e.st, "device/dev-000000", "dev-000000", 0, `{"rebooting":true}`)
	resp, b = e.command("dev-000000", operator, `{"name":"reboot","queue":true,"timeout":"30s"}`)
	var res CommandResult
	if resp.StatusCode != 200 || json.Unmarshal(b, &res) != nil || string(res.Response) != `{"rebooting":true}` {
		t.Fatalf("queued: %d %s", resp.StatusCode, b)
	}
}

func TestCommandRefused(t *testing.T) {
	e := newEnv(t)
	fillShadows(t, e.st, 4)
	operator := e.token(certs.RoleOperator)
	for _, tt := range []struct {
		name, id, token, body string
		status                int
		reason                string
	}{
		{"viewer", "dev-000001", e.token(certs.RoleViewer), `{"name":"ping"}`, 403, "role"},
		{"no token", "dev-000001", "", `{"name":"ping"}`, 401, "missing"},
		{"unknown device", "dev-999999", operator, `{"name":"ping"}`, 404, ""},
		{"out of scope", "dev-000001", e.scoped(certs.RoleOperator, map[string]string{"class": "pump"}), `{"name":"ping"}`, 404, ""},
		{"bad name", "dev-000001", operator, `{"name":"a/b"}`, 400, ""},
		{"bad timeout", "dev-000001", operator, `{"name":"ping","timeout":"2m"}`, 400, ""},
		{"not JSON", "dev-000001", operator, `{"name":`, 400, ""},
		{"unknown member", "dev-000001", operator, `{"name":"ping","retain":true}`, 400, ""},
		{"empty", "dev-000001", operator, ``, 400, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, b := e.command(tt.id, tt.token, tt.body)
			if p := problem(t, resp, b, tt.status); p.Reason != tt.reason {
				t.Fatalf("problem %+v, want reason %q", p, tt.reason)
			}
		})
	}
	if _, next, _ := e.st.Stream(store.UpdatesStream).Bounds(context.Background(), "device/dev-000001", 0); next != 0 {
		t.Fatalf("refused commands were sent")
	}
	// A scoped token sends to the devices in its scope.
	chillers := e.scoped(certs.RoleOperator, map[string]string{"class": "chiller"})
	resp, b := e.command("dev-000001", chillers, `{"name":"ping","timeout":"1ms"}`)
	problem(t, resp, b, 504)

	// A body over the node's limit.
	small := newEnv(t, func(c *Config) { c.MaxBodyBytes = 64 })
	fillShadows(t, small.st, 2)
	resp, b = small.command("dev-000001", small.token(certs.RoleOperator), `{"name":"ping","payload":"`+strings.Repeat("x", 100)+`"}`)
	problem(t, resp, b, 413)
}

// TestCommandOnLinkedEdge: an edge linked to a core sends its own
// commands on a topic of its own, never on the core's device/<id>.
func TestCommandOnLinkedEdge(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.DesiredReadOnly = true })
	fillShadows(t, e.st, 4)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	go answer(ctx, e.st, "local/device/dev-000001", "dev-000001", 0, `{"pong":true}`)
	resp, b := e.command("dev-000001", e.token(certs.RoleOperator), `{"name":"ping","timeout":"30s"}`)
	if resp.StatusCode != 200 {
		t.Fatalf("POST: %d %s", resp.StatusCode, b)
	}
	if _, next, _ := e.st.Stream(store.UpdatesStream).Bounds(ctx, "device/dev-000001", 0); next != 0 {
		t.Fatalf("the edge wrote the core's topic")
	}
}

// TestSendCommandRole: callers other than the route (the console) are
// held to the operator role too.
func TestSendCommandRole(t *testing.T) {
	e := newEnv(t)
	fillShadows(t, e.st, 2)
	for _, c := range []*certs.TokenClaims{nil, {Subject: "v", Role: certs.RoleViewer}} {
		if _, err := e.srv.SendCommand(context.Background(), c, "dev-000001", Command{Name: "ping", Timeout: time.Millisecond}); !errors.Is(err, errNoRole) {
			t.Fatalf("%+v: %v", c, err)
		}
	}
}
