package gateway

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/weft-io/weft/shadow"
)

func TestConvergeDecision(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	desired := map[string]any{"setpoint": 7.0, "mode": "eco"}
	for _, c := range []struct {
		name     string
		reported map[string]any
		last     sentDelta
		now      time.Time
		want     string
	}{
		{"in sync: nothing", map[string]any{"setpoint": 7.0, "mode": "eco", "temp": 21.0}, sentDelta{}, t0, ""},
		{"stale value: the delta", map[string]any{"setpoint": 5.0, "mode": "eco"}, sentDelta{}, t0, `{"setpoint":7}`},
		{"the same delta just sent: not again", map[string]any{"setpoint": 5.0, "mode": "eco"}, sentDelta{"3", `{"setpoint":7}`, t0}, t0.Add(time.Second), ""},
		{"the same delta a while ago: again", map[string]any{"setpoint": 5.0, "mode": "eco"}, sentDelta{"3", `{"setpoint":7}`, t0}, t0.Add(resendEvery), `{"setpoint":7}`},
		{"another version: again", map[string]any{"setpoint": 5.0, "mode": "eco"}, sentDelta{"2", `{"setpoint":7}`, t0}, t0, `{"setpoint":7}`},
		{"another delta: again", map[string]any{"setpoint": 7.0}, sentDelta{"3", `{"setpoint":7}`, t0}, t0, `{"mode":"eco"}`},
	} {
		got, send := convergeDecision(desired, c.reported, "3", c.last, c.now)
		if string(got) != c.want || send != (c.want != "") {
			t.Errorf("%s: %s %v, want %s", c.name, got, send, c.want)
		}
	}
}

// TestConverge: a device that reports a value other than the desired one
// is sent the current delta again, with its version; once in sync, or
// refusing the same value again at once, it is sent nothing more.
func TestConverge(t *testing.T) {
	e := newEnv(t, nil)
	d := e.device(t, "pump-1", "pump")
	c := e.mustPaho(t, d, nil)
	c.subscribe(t, 1, "updates/device/pump-1/#")
	if _, err := shadow.SetDesired(context.Background(), e.st, "pump-1", json.RawMessage(`{"setpoint":7}`), shadow.SetOptions{}); err != nil {
		t.Fatal(err)
	}
	if m := c.next(t); string(m.Payload) != `{"setpoint":7}` {
		t.Fatalf("first delta %s %s", m.Topic, m.Payload)
	}
	// The device ends on an old value (it applied an older delta last).
	c.publish(t, "devices/pump-1/shadow/reported", 1, []byte(`{"setpoint":5}`))
	m := c.next(t)
	if m.Topic != "updates/device/pump-1/shadow/delta" || string(m.Payload) != `{"setpoint":7}` || m.Retain {
		t.Fatalf("sent again: %s %s retain %v", m.Topic, m.Payload, m.Retain)
	}
	if m.Properties == nil || m.Properties.User.Get(PropertyVersion) == "" || m.Properties.User.Get(HeaderDesired) != "" {
		t.Fatalf("properties of the delta sent again: %+v", m.Properties)
	}
	// It reports the old value again at once (it refuses the new one):
	// not sent again; in sync: nothing to send.
	c.publish(t, "devices/pump-1/shadow/reported", 1, []byte(`{"setpoint":5}`))
	c.publish(t, "devices/pump-1/shadow/reported", 1, []byte(`{"setpoint":7}`))
	if n := e.srv.Metrics().DeltasResent(); n != 1 {
		t.Fatalf("deltas sent again: %d, want 1", n)
	}
}
