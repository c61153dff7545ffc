package edge

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/weft-io/weft/anomaly"
	"github.com/weft-io/weft/device"
	"github.com/weft-io/weft/shadow"
	"github.com/weft-io/weft/store"
)

// TestAnomalyScores publishes a device's ordinary readings and then one far
// off: the device's shadow gets a score past the threshold, the detection
// goes to /uplink/events naming the device and channel, and the ordinary
// readings before it raised nothing.
func TestAnomalyScores(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, certsDir := startTestEdge(t, ctx, func(c *Config) { c.Anomaly = anomaly.Config{Epoch: 60} })
	creds, pool, err := device.Credentials(certsDir, []string{"pump-7"}, "pump")
	if err != nil {
		t.Fatal(err)
	}
	c, err := device.Connect(ctx, device.DialConfig{Addr: n.MQTTAddr().String(), Roots: pool}, "pump-7", creds[0], true, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(&paho.Disconnect{})
	publish := func(i int, pressure float64) {
		t.Helper()
		b := fmt.Appendf(nil, `{"pressure_bar":%g,"flow_lpm":%g,"ts":"x"}`, pressure, 40+float64(i%7))
		if _, err := c.Publish(ctx, &paho.Publish{Topic: "devices/pump-7/telemetry", QoS: 1, Payload: b}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 200 {
		publish(i, 3+0.2*math.Sin(float64(i)/10))
	}
	uplink := n.Store().Stream(store.UplinkStream)
	score := func() float64 {
		d, err := shadow.Get(ctx, n.Store(), "pump-7")
		if err != nil || d.Score == nil {
			return -1
		}
		return *d.Score
	}
	waitUntil(t, "the ordinary readings scored", func() bool {
		at, _, _ := n.Store().Stream(store.EventsStream).Cursor(ctx, scoreGroup, "edge1", 0)
		return at >= 200
	})
	if s := score(); s >= shadow.DefaultAnomalyThreshold {
		t.Fatalf("ordinary readings scored %.2f", s)
	}
	if _, next, _ := uplink.Bounds(ctx, "edge1", 0); next != 0 {
		t.Fatalf("ordinary readings sent %d detections up", next)
	}
	publish(200, 9)
	waitUntil(t, "the score of the spike", func() bool { return score() >= shadow.DefaultAnomalyThreshold })
	msgs, err := uplink.Read(ctx, "edge1", 0, 0, store.ReadOptions{})
	if err != nil || len(msgs) != 1 {
		t.Fatalf("uplink holds %d detections, %v; want 1", len(msgs), err)
	}
	var d Detection
	if err := json.Unmarshal(msgs[0].Value, &d); err != nil || d.Device != "pump-7" || d.Channel != "pressure_bar" || d.Detector != anomaly.Level || d.Value != 9 || d.Class != "pump" {
		t.Fatalf("detection %s (%v)", msgs[0].Value, err)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
