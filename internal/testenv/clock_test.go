package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/weft-io/weft/device"
	"github.com/weft-io/weft/edge"
	"github.com/weft-io/weft/store"
)

// TestEdgeWithClockBehindItsCertificates: an edge whose clock reset at
// power-up (2 hours behind its certificates' start) still starts, takes
// its devices' messages and stamps them no earlier than its certificates.
func TestEdgeWithClockBehindItsCertificates(t *testing.T) {
	f := New(t)
	sc := storeConfig()
	sc.Now = func() time.Time { return time.Now().Add(-2 * time.Hour) }
	e := f.StartEdge("edge1", edge.Config{Store: sc})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	creds, pool, err := device.Credentials(f.Certs, []string{"pump-1"}, "pump")
	if err != nil {
		t.Fatal(err)
	}
	dev, err := device.Connect(ctx, device.DialConfig{Addr: e.MQTTAddr().String(), Roots: pool}, "pump-1", creds[0], true, nil)
	if err != nil {
		t.Fatalf("a device could not connect to an edge with a clock behind: %v", err)
	}
	defer dev.Disconnect(&paho.Disconnect{})
	if _, err := dev.Publish(ctx, &paho.Publish{Topic: "devices/pump-1/telemetry", QoS: 1, Payload: []byte(`{"t":1}`)}); err != nil {
		t.Fatal(err)
	}
	msgs, err := e.Store().Stream(store.ByDeviceStream).Read(ctx, "pump-1", 0, 0, store.ReadOptions{})
	if err != nil || len(msgs) != 1 {
		t.Fatalf("stored: %d %v", len(msgs), err)
	}
	if behind := time.Since(msgs[0].Timestamp); behind > time.Hour {
		t.Fatalf("stamped %s, %s behind: the system clock, not the floor", msgs[0].Timestamp, behind.Round(time.Minute))
	}
}
