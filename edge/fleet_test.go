package edge

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/device"
	"github.com/weft-io/weft/gateway"
	"github.com/weft-io/weft/store"
)

// startTestEdge runs an edge node with fresh certificates in t.TempDir().
func startTestEdge(t *testing.T, ctx context.Context, mod ...func(*Config)) (*Node, string) {
	t.Helper()
	dir := t.TempDir()
	certsDir := filepath.Join(dir, "certs")
	if err := certs.Init(certsDir, false); err != nil {
		t.Fatal(err)
	}
	auth, err := certs.Load(certsDir)
	if err != nil {
		t.Fatal(err)
	}
	iss, err := auth.IssueGateway("edge1", []string{"127.0.0.1"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := auth.Save(iss); err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		DataDir: filepath.Join(dir, "data"), CertsDir: certsDir, Name: "edge1",
		MQTTAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		Store: store.Config{MinFreeBytes: -1},
	}
	for _, m := range mod {
		m(&cfg)
	}
	n, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Shutdown(context.Background()) })
	return n, certsDir
}

// TestFleetAppliesDesiredState runs the simulated fleet against an edge:
// every device reports its state and telemetry, applies a desired
// setpoint sent down as a shadow delta, and reports an error for a value
// it rejects.
func TestFleetAppliesDesiredState(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, certsDir := startTestEdge(t, ctx)
	fleet, err := device.StartFleet(ctx, device.SimConfig{
		Dial: device.DialConfig{Addr: n.MQTTAddr().String()}, CertsDir: certsDir,
		Count: 3, Interval: 50 * time.Millisecond, ApplyDelay: 10 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	st := n.Store()
	reported := func(id string) map[string]any {
		d, err := st.Table(store.ShadowsTable).Get(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			t.Fatal(err)
		}
		var doc struct{ Reported map[string]any }
		json.Unmarshal(d.Value, &doc)
		return doc.Reported
	}
	poll := func(what string, ok func() bool) {
		t.Helper()
		for !ok() {
			select {
			case <-ctx.Done():
				t.Fatalf("timed out waiting for %s", what)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	for _, id := range fleet.IDs() {
		poll(id+" to report its state", func() bool { return reported(id) != nil })
		poll(id+" to send telemetry", func() bool {
			_, next, err := st.Stream(store.ByDeviceStream).Bounds(ctx, id, 0)
			return err == nil && next >= 3
		})
	}
	pump := fleet.IDs()[0] // class pump: setpoint 1..10
	down := func(delta string) {
		_, err := st.Stream(store.UpdatesStream).Append(ctx, "device/"+pump, store.Message{
			Value: []byte(delta), Headers: map[string]string{gateway.HeaderSubtopic: "shadow/delta"},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	down(`{"setpoint": 7}`)
	poll("the setpoint to be applied", func() bool { r := reported(pump); return r["setpoint"] == 7.0 && r["error"] == nil })
	down(`{"setpoint": 99}`)
	poll("the bad setpoint to be refused", func() bool {
		r := reported(pump)
		e, _ := r["error"].(map[string]any)
		return r["setpoint"] == 7.0 && e["setpoint"] != nil
	})
	if fleet.Online() != 3 {
		t.Fatalf("%d devices online, want 3", fleet.Online())
	}
}
