package testenv

import (
	"context"
	"maps"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/weft-io/weft/core"
	"github.com/weft-io/weft/device"
	"github.com/weft-io/weft/edge"
	"github.com/weft-io/weft/shadow"
)

// TestShadowTimesAtTheCore: a device reports field a, then field b a
// little later; the core shows each field's time as the edge stamped it,
// through the link, after a link loss, after a reconcile and after a core
// restart. The core never restamps the edge's side.
func TestShadowTimesAtTheCore(t *testing.T) {
	f := New(t)
	c := f.StartCore("core1", core.Config{})
	syncAddr, httpAddr := c.SyncAddr().String(), c.HTTPAddr().String()
	e := f.StartEdge("edge1", edge.Config{Core: syncAddr})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	creds, pool, err := device.Credentials(f.Certs, []string{"pump-1"}, "pump")
	if err != nil {
		t.Fatal(err)
	}
	dev, err := device.Connect(ctx, device.DialConfig{Addr: e.MQTTAddr().String(), Roots: pool}, "pump-1", creds[0], true, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Disconnect(&paho.Disconnect{})
	report := func(payload string) {
		t.Helper()
		if _, err := dev.Publish(ctx, &paho.Publish{Topic: "devices/pump-1/shadow/reported", QoS: 1, Payload: []byte(payload)}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond) // so that the next report's time differs
	}
	edgeTimes := func() map[string]time.Time {
		t.Helper()
		d, err := shadow.Get(ctx, e.Store(), "pump-1")
		if err != nil {
			t.Fatal(err)
		}
		return d.ReportedTS
	}
	// sameAtCore waits until the core's shadow has the edge's values and
	// times, and checks that a and b were stamped apart.
	sameAtCore := func(cn *core.Node, a, b int, what string) {
		t.Helper()
		want := edgeTimes()
		if !want["a"].Before(want["b"]) {
			t.Fatalf("%s: the edge stamped a at %v and b at %v", what, want["a"], want["b"])
		}
		var got shadow.Doc
		WaitFor(t, 30*time.Second, "the edge's report at the core "+what, func() bool {
			got, err = shadow.Get(ctx, cn.Store(), "pump-1")
			return err == nil && shadow.Equal(got.Reported["a"], a) && shadow.Equal(got.Reported["b"], b)
		})
		if !maps.EqualFunc(got.ReportedTS, want, time.Time.Equal) {
			t.Fatalf("%s: the core shows reported_ts %v, the edge stamped %v", what, got.ReportedTS, want)
		}
	}

	report(`{"a":1}`)
	report(`{"b":1}`)
	sameAtCore(c, 1, 1, "through the link")

	// The link is lost; a changes, then b; the link returns.
	if err := c.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	report(`{"a":2}`)
	report(`{"b":2}`)
	c = f.StartCore("core1", core.Config{Listen: syncAddr, HTTPAddr: httpAddr})
	sameAtCore(c, 2, 2, "after a link loss")

	// A reconcile at the core changes no time.
	if _, err := shadow.Reconcile(ctx, c.Store(), "pump-1"); err != nil {
		t.Fatal(err)
	}
	sameAtCore(c, 2, 2, "after a reconcile")

	// Nor does a restart of the core.
	if err := c.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	c = f.StartCore("core1", core.Config{Listen: syncAddr, HTTPAddr: httpAddr})
	sameAtCore(c, 2, 2, "after a core restart")
}
