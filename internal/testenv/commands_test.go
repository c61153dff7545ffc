package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/weft-io/weft/api"
	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/core"
	"github.com/weft-io/weft/device"
	"github.com/weft-io/weft/edge"
	"github.com/weft-io/weft/gateway"
	"github.com/weft-io/weft/shadow"
	"github.com/weft-io/weft/store"
)

// postCommand posts a command to device id through the API at addr and
// returns the status and body of the answer.
func postCommand(tb testing.TB, addr, token, id, body string) (int, []byte) {
	tb.Helper()
	req, err := http.NewRequest("POST", "http://"+addr+"/api/v1/devices/"+id+"/commands", bytes.NewReader([]byte(body)))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return resp.StatusCode, b
}

// startSim runs a simulated fleet of one pump on the edge at mqttAddr and
// returns its device id; it stops with the test.
func startSim(tb testing.TB, f *Fabric, mqttAddr, prefix string) string {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	fl, err := device.StartFleet(ctx, device.SimConfig{Dial: device.DialConfig{Addr: mqttAddr}, CertsDir: f.Certs,
		Count: 1, IDPrefix: prefix, Interval: time.Hour, RebootPause: 50 * time.Millisecond, Logger: f.Logger})
	if err != nil {
		cancel()
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cancel(); <-fl.Done() })
	return fl.IDs()[0]
}

// waitConnected waits until the shadow of id in st says it is connected.
func waitConnected(tb testing.TB, st *store.Store, id string) {
	tb.Helper()
	WaitFor(tb, 30*time.Second, id+" connected in "+st.Name()+"'s shadow", func() bool {
		d, err := shadow.Get(context.Background(), st, id)
		return err == nil && d.Connected
	})
}

// waitReady waits until the shadow of simulated device id in st holds a
// report while it is connected: the simulator reports once it has
// subscribed to its commands, so a command sent now reaches it.
func waitReady(tb testing.TB, st *store.Store, id string) {
	tb.Helper()
	WaitFor(tb, 30*time.Second, id+" subscribed and reporting in "+st.Name()+"'s shadow", func() bool {
		d, err := shadow.Get(context.Background(), st, id)
		return err == nil && d.Connected && len(d.Reported) > 0
	})
}

// commandFabric is a core and an edge with its default streams: the
// devices' history stays at the edge, and the core finds their answers in
// the edge's uplink.
func commandFabric(tb testing.TB) (*Fabric, *core.Node, *edge.Node) {
	f := New(tb)
	c := f.StartCore("core1", core.Config{})
	e := f.StartEdge("edge1", edge.Config{Core: c.SyncAddr().String()})
	return f, c, e
}

// TestCommandThroughCore: a ping posted to the core reaches a simulated
// device behind an edge and its answer comes back; a device that never
// answers times out; a reboot is answered and the device comes back.
func TestCommandThroughCore(t *testing.T) {
	f, c, e := commandFabric(t)
	id := startSim(t, f, e.MQTTAddr().String(), "cmd")
	waitReady(t, c.Store(), id)
	operator := f.token(certs.RoleOperator)

	status, b := postCommand(t, c.HTTPAddr().String(), operator, id, `{"name":"ping","timeout":"30s"}`)
	var res api.CommandResult
	if status != 200 || json.Unmarshal(b, &res) != nil {
		t.Fatalf("ping: %d %s", status, b)
	}
	var pong struct {
		Pong bool      `json:"pong"`
		At   time.Time `json:"at"`
	}
	if err := json.Unmarshal(res.Response, &pong); err != nil || !pong.Pong || pong.At.IsZero() || res.Name != "ping" || res.ID == "" {
		t.Fatalf("ping answered %s", b)
	}

	// A reboot is answered; the device goes and comes back.
	status, b = postCommand(t, c.HTTPAddr().String(), operator, id, `{"name":"reboot","timeout":"30s"}`)
	if status != 200 || !bytes.Contains(b, []byte(`"response":{"rebooting":true}`)) {
		t.Fatalf("reboot: %d %s", status, b)
	}
	WaitFor(t, 30*time.Second, "a ping answered after the reboot", func() bool {
		status, _ := postCommand(t, c.HTTPAddr().String(), operator, id, `{"name":"ping","timeout":"5s","queue":true}`)
		return status == 200
	})

	// A device that takes its commands and never answers.
	creds, pool, err := device.Credentials(f.Certs, []string{"mute-1"}, "pump")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	mute, err := device.Connect(ctx, device.DialConfig{Addr: e.MQTTAddr().String(), Roots: pool}, "mute-1", creds[0], true, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer mute.Disconnect(&paho.Disconnect{})
	if _, err := mute.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "updates/device/mute-1/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	waitConnected(t, c.Store(), "mute-1")
	status, b = postCommand(t, c.HTTPAddr().String(), operator, "mute-1", `{"name":"ping","timeout":"1s"}`)
	var p api.ProblemDetails
	if status != 504 || json.Unmarshal(b, &p) != nil || p.Title != "Command timed out" {
		t.Fatalf("mute device: %d %s", status, b)
	}

	// The core audited each command and its outcome.
	var audit api.AuditResponse
	req, _ := http.NewRequest("GET", "http://"+c.HTTPAddr().String()+"/api/v1/audit?subject=test&limit=1000", nil)
	req.Header.Set("Authorization", "Bearer "+f.token(certs.RoleAdmin))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&audit)
	resp.Body.Close()
	var actions []string
	for _, r := range audit.Records {
		actions = append(actions, r.Action)
	}
	for _, want := range []string{"device.command", "device.command.answered", "device.command.timed_out"} {
		if !slices.Contains(actions, want) {
			t.Errorf("audit lacks %s: %v", want, actions)
		}
	}
}

// TestCommandThroughEdge: an edge answers commands to its own devices
// through its own API, from its own shadows and history.
func TestCommandThroughEdge(t *testing.T) {
	t.Run("alone", func(t *testing.T) {
		f := New(t)
		e := f.StartEdge("edge1", edge.Config{})
		id := startSim(t, f, e.MQTTAddr().String(), "solo")
		waitReady(t, e.Store(), id)
		status, b := postCommand(t, e.HTTPAddr().String(), f.token(certs.RoleOperator), id, `{"name":"ping","timeout":"30s"}`)
		if status != 200 || !bytes.Contains(b, []byte(`"pong":true`)) {
			t.Fatalf("ping: %d %s", status, b)
		}
	})
	t.Run("linked", func(t *testing.T) {
		// A linked edge sends its commands on local/device/<id>, the
		// core having device/<id> (one writer per topic).
		if _, ok := gateway.DownlinkTopic(api.LocalCommandPrefix+shadow.DeviceTopic("x"), "commands/ping/r"); !ok {
			t.Fatal("the gateway does not deliver local/device/<id>")
		}
		f, c, e := commandFabric(t)
		id := startSim(t, f, e.MQTTAddr().String(), "cmd")
		waitReady(t, e.Store(), id)
		status, b := postCommand(t, e.HTTPAddr().String(), f.token(certs.RoleOperator), id, `{"name":"ping","timeout":"30s"}`)
		if status != 200 || !bytes.Contains(b, []byte(`"pong":true`)) {
			t.Fatalf("ping: %d %s", status, b)
		}
		// The core's updates of the device still reach the edge whole.
		if _, err := shadow.SetDesired(context.Background(), c.Store(), id, json.RawMessage(`{"setpoint":5}`), shadow.SetOptions{}); err != nil {
			t.Fatal(err)
		}
		WaitEqual(t, c.Store(), e.Store(), 30*time.Second, store.UpdatesStream)
	})
}

// BenchmarkCommandRoundTrip measures a ping posted to the core: core ->
// edge -> simulated device -> edge -> core, answered over HTTP. It
// reports the percentiles of the whole request as the client sees it.
//
//	go test ./internal/testenv -run '^$' -bench CommandRoundTrip -benchtime 200x
func BenchmarkCommandRoundTrip(b *testing.B) {
	f, c, e := commandFabric(b)
	id := startSim(b, f, e.MQTTAddr().String(), "bench")
	waitReady(b, c.Store(), id)
	operator := f.token(certs.RoleOperator)
	addr := c.HTTPAddr().String()
	lat := make([]time.Duration, 0, b.N)
	var served []float64
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		status, body := postCommand(b, addr, operator, id, `{"name":"ping","timeout":"30s"}`)
		lat = append(lat, time.Since(start))
		var res api.CommandResult
		if status != 200 || json.Unmarshal(body, &res) != nil {
			b.Fatalf("ping: %d %s", status, body)
		}
		served = append(served, res.LatencyMS)
	}
	b.StopTimer()
	slices.Sort(lat)
	slices.Sort(served)
	pct := func(q float64) int { return min(len(lat)-1, int(q*float64(len(lat)))) }
	b.ReportMetric(float64(lat[pct(0.50)].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[pct(0.99)].Microseconds())/1000, "p99-ms")
	b.ReportMetric(served[pct(0.50)], "p50-core-ms")
	b.ReportMetric(served[pct(0.99)], "p99-core-ms")
}
