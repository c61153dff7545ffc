package edge

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/weft-io/weft/anomaly"
	"github.com/weft-io/weft/device"
	"github.com/weft-io/weft/gateway"
	"github.com/weft-io/weft/internal/testenv/wait"
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
	if early, _ := uplink.Read(ctx, "edge1", 0, 0, store.ReadOptions{}); len(early) != 0 {
		t.Fatalf("ordinary readings sent %d records up, the first %s", len(early), early[0].Value)
	}
	publish(200, 9)
	waitUntil(t, "the score of the spike", func() bool { return score() >= shadow.DefaultAnomalyThreshold })
	for i := 201; i < 215; i++ {
		publish(i, 3+0.2*math.Sin(float64(i)/10))
	}
	waitUntil(t, "the readings after the spike", func() bool {
		at, _, _ := n.Store().Stream(store.EventsStream).Cursor(ctx, scoreGroup, "edge1", 0)
		return at >= 215
	})
	// Up went the detection (of the pressure alone, and perhaps of the
	// channels together), the ten readings before it, it, and the ten
	// after it; nothing else (summaries are every fifteen minutes).
	msgs, err := uplink.Read(ctx, "edge1", 0, 0, store.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	level := 0
	var readings []anomaly.Reading
	for _, m := range msgs {
		kinds[m.Headers["type"]]++
		switch m.Headers["type"] {
		case "anomaly":
			var d anomaly.Detection
			if err := json.Unmarshal(m.Value, &d); err != nil || d.Device != "pump-7" || d.Class != "pump" {
				t.Fatalf("detection %s (%v)", m.Value, err)
			}
			switch d.Detector {
			case anomaly.Level:
				if d.Channel != "pressure_bar" || d.Value != 9 {
					t.Fatalf("level detection %s", m.Value)
				}
				level++
			case anomaly.Cluster:
				// The channels together may see it too.
				if d.Channel != "flow_lpm+pressure_bar" || d.Values["pressure_bar"] != 9 {
					t.Fatalf("cluster detection %s", m.Value)
				}
			default:
				t.Fatalf("detection %s", m.Value)
			}
		case "reading":
			var r anomaly.Reading
			if err := json.Unmarshal(m.Value, &r); err != nil || r.Device != "pump-7" || r.Topic != "devices/pump-7/telemetry" {
				t.Fatalf("reading %s (%v)", m.Value, err)
			}
			readings = append(readings, r)
		}
	}
	if level != 1 || kinds["anomaly"] > 2 || kinds["reading"] != 21 || len(msgs) != 21+kinds["anomaly"] {
		t.Fatalf("uplink holds %v, %d of them level detections", kinds, level)
	}
	var spike struct {
		Pressure float64 `json:"pressure_bar"`
	}
	if json.Unmarshal(readings[10].Payload, &spike); spike.Pressure != 9 {
		t.Fatalf("the eleventh reading sent up is %s, want the spike", readings[10].Payload)
	}
}

// BenchmarkUplinkFilter scores two hours of telemetry of 200 devices (a
// reading of three channels every 5 s, a daily curve with noise, now and
// then an anomaly) and reports how much smaller what goes up is than the
// raw readings, and the readings scored a second, with summaries every 15
// minutes and every hour.
func BenchmarkUplinkFilter(b *testing.B) {
	for _, every := range []time.Duration{15 * time.Minute, time.Hour} {
		b.Run("summary="+every.String(), func(b *testing.B) { benchUplinkFilter(b, every) })
	}
}

func benchUplinkFilter(b *testing.B, every time.Duration) {
	ctx := context.Background()
	const devices, readings = 200, 1440
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for range b.N {
		b.StopTimer()
		st, err := store.Open(store.Config{Dir: b.TempDir(), Name: "edge1", MinFreeBytes: -1, RetentionInterval: -1})
		if err != nil {
			b.Fatal(err)
		}
		r := rand.New(rand.NewPCG(1, 2))
		var raw int64
		anomalies := 0
		for i := range readings {
			at := base.Add(time.Duration(i) * 5 * time.Second)
			day := 2 * math.Pi * float64(i) / 17280
			var msgs []store.Message
			for d := range devices {
				dev := fmt.Sprintf("pump-%03d", d)
				p, f, t := 3+0.5*math.Sin(day)+r.NormFloat64()*0.05, 40+5*math.Sin(day)+r.NormFloat64()*0.5, 20+r.NormFloat64()*0.2
				if r.Float64() < 0.0005 {
					p += 4
					anomalies++
				}
				v := fmt.Appendf(nil, `{"ts":%q,"pressure_bar":%.3f,"flow_lpm":%.3f,"temp_c":%.3f}`, at.Format(time.RFC3339Nano), p, f, t)
				raw += int64(len(v))
				msgs = append(msgs, store.Message{Key: []byte(dev), Value: v, Timestamp: at, Headers: map[string]string{
					gateway.HeaderDevice: dev, gateway.HeaderClass: "pump", gateway.HeaderTopic: "devices/" + dev + "/telemetry"}})
			}
			if _, err := st.Stream(store.EventsStream).Append(ctx, "edge1", msgs...); err != nil {
				b.Fatal(err)
			}
		}
		for d := range devices {
			st.Table(store.ShadowsTable).Put(ctx, fmt.Sprintf("pump-%03d", d), []byte(`{}`))
		}
		s := newScorer(st, "edge1", anomaly.Config{Epoch: 120}, UplinkFilter{Summary: every}, slog.New(slog.DiscardHandler))
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		b.StartTimer()
		start := time.Now()
		go func() { done <- s.run(rctx) }()
		for {
			at, _, _ := st.Stream(store.EventsStream).Cursor(ctx, scoreGroup, "edge1", 0)
			if at >= devices*readings {
				break
			}
			time.Sleep(time.Millisecond)
		}
		el := time.Since(start)
		b.StopTimer()
		cancel()
		<-done
		msgs, err := st.Stream(store.UplinkStream).Read(ctx, "edge1", 0, 0, store.ReadOptions{Limit: 1 << 20, MaxBytes: 1 << 30})
		if err != nil {
			b.Fatal(err)
		}
		var up int64
		kinds := map[string]int{}
		for _, m := range msgs {
			up += int64(len(m.Value))
			kinds[m.Headers["type"]]++
		}
		st.Close()
		b.ReportMetric(float64(raw)/float64(up), "raw/uplink")
		b.ReportMetric(float64(devices*readings)/el.Seconds(), "readings/s")
		b.ReportMetric(float64(kinds["anomaly"]), "detections")
		b.ReportMetric(float64(anomalies), "injected")
		b.Logf("raw %d bytes, uplink %d bytes: %v", raw, up, kinds)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	wait.For(t, 0, what, cond)
}

// TestScoresSurviveRestart: after a restart the edge learns again from the
// recent events, so a spike right after it is caught without a new warmup.
func TestScoresSurviveRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	data := t.TempDir()
	cfg := func(c *Config) { c.DataDir, c.Anomaly = data, anomaly.Config{Epoch: 60} }
	n, certsDir := startTestEdge(t, ctx, cfg)
	creds, pool, err := device.Credentials(certsDir, []string{"pump-8"}, "pump")
	if err != nil {
		t.Fatal(err)
	}
	send := func(n *Node, from, to int, spike bool) {
		t.Helper()
		c, err := device.Connect(ctx, device.DialConfig{Addr: n.MQTTAddr().String(), Roots: pool}, "pump-8", creds[0], true, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Disconnect(&paho.Disconnect{})
		for i := from; i < to; i++ {
			p := 3 + 0.2*math.Sin(float64(i)/10)
			if spike && i == to-1 {
				p = 9
			}
			if _, err := c.Publish(ctx, &paho.Publish{Topic: "devices/pump-8/telemetry", QoS: 1, Payload: fmt.Appendf(nil, `{"pressure_bar":%g}`, p)}); err != nil {
				t.Fatal(err)
			}
		}
		waitUntil(t, "the readings scored", func() bool {
			at, _, _ := n.Store().Stream(store.EventsStream).Cursor(ctx, scoreGroup, "edge1", 0)
			return at >= uint64(to)
		})
	}
	send(n, 0, 200, false)
	if err := n.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	n2, err := Start(ctx, Config{DataDir: data, CertsDir: certsDir, Name: "edge1", MQTTAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		Store: store.Config{MinFreeBytes: -1}, Anomaly: anomaly.Config{Epoch: 60}})
	if err != nil {
		t.Fatal(err)
	}
	defer n2.Shutdown(context.Background())
	send(n2, 200, 203, true) // two ordinary readings, then the spike
	msgs, err := n2.Store().Stream(store.UplinkStream).Read(ctx, "edge1", 0, 0, store.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if m.Headers["type"] == "anomaly" {
			return
		}
	}
	t.Fatalf("the spike right after the restart was not detected (%d records up)", len(msgs))
}

var t0 = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

// telemetryMsg is an event of dev's telemetry at at.
func telemetryMsg(dev string, at time.Time, payload string) store.Message {
	return store.Message{Key: []byte(dev), Value: []byte(payload), Timestamp: at, Headers: map[string]string{
		gateway.HeaderDevice: dev, gateway.HeaderClass: "pump", gateway.HeaderTopic: "devices/" + dev + "/telemetry"}}
}

// pumpMsgs are 215 readings of dev every 5 s, the 201st a spike.
func pumpMsgs(dev string) []store.Message {
	var msgs []store.Message
	for i := range 215 {
		p := 3 + 0.2*math.Sin(float64(i)/10)
		if i == 200 {
			p = 9
		}
		msgs = append(msgs, telemetryMsg(dev, t0.Add(time.Duration(i)*5*time.Second), fmt.Sprintf(`{"pressure_bar":%g}`, p)))
	}
	return msgs
}

func openStore(t *testing.T, cfg store.Config) *store.Store {
	t.Helper()
	cfg.Dir, cfg.Name, cfg.MinFreeBytes, cfg.RetentionInterval = t.TempDir(), "edge1", -1, -1
	st, err := store.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// runScorer runs s until the test ends.
func runScorer(t *testing.T, s *scorer) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
}

// TestScoresEveryPartition: on an events stream of three partitions the
// readings of every partition are scored, their detections sent up and
// their scores written into the shadows (made if absent, keeping the
// other fields of one that exists).
func TestScoresEveryPartition(t *testing.T) {
	ctx := context.Background()
	st := openStore(t, store.Config{Partitions: map[string]int{store.EventsStream: 3}})
	events := st.Stream(store.EventsStream)
	if _, err := st.Table(store.ShadowsTable).Put(ctx, "pump-0", []byte(`{"site":"depot","score":0.5}`)); err != nil {
		t.Fatal(err)
	}
	ends := map[int]uint64{} // partition -> its end
	devices := map[int]string{}
	for i := 0; len(devices) < 3 && i < 100; i++ {
		dev := fmt.Sprintf("pump-%d", i)
		pos, err := events.Append(ctx, "edge1", pumpMsgs(dev)...)
		if err != nil {
			t.Fatal(err)
		}
		p := pos[0].Partition
		devices[p] = dev
		ends[p] = pos[len(pos)-1].Offset + 1
	}
	if len(devices) != 3 {
		t.Fatalf("devices in partitions %v", devices)
	}
	s := newScorer(st, "edge1", anomaly.Config{Epoch: 60}, UplinkFilter{}, nil)
	s.setLimits(ScoreLimits{DeviceBudget: batchSize}) // each device's readings come at once
	runScorer(t, s)
	waitUntil(t, "every partition scored", func() bool {
		for p, end := range ends {
			if at, _, _ := events.Cursor(ctx, scoreGroup, "edge1", p); at < end {
				return false
			}
		}
		return true
	})
	msgs, err := st.Stream(store.UplinkStream).Read(ctx, "edge1", 0, 0, store.ReadOptions{Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	detected := map[string]bool{}
	for _, m := range msgs {
		if m.Headers[anomaly.RecordHeader] == anomaly.RecordAnomaly {
			detected[m.Headers[gateway.HeaderDevice]] = true
		}
	}
	for p, dev := range devices {
		if !detected[dev] {
			t.Errorf("the spike of %s in partition %d was not sent up", dev, p)
		}
		d, err := shadow.Get(ctx, st, dev)
		if err != nil || d.Score == nil {
			t.Errorf("%s in partition %d: no score in its shadow (%v)", dev, p, err)
		}
	}
	doc, err := st.Table(store.ShadowsTable).Get(ctx, "pump-0")
	if err != nil {
		t.Fatal(err)
	}
	var kept struct{ Site string }
	if json.Unmarshal(doc.Value, &kept); kept.Site != "depot" {
		t.Errorf("the shadow of pump-0 lost its other fields: %s", doc.Value)
	}
}

// TestBatchAgain: a batch that comes again (its commit failed) stages what
// it was scored into the first time, without scoring it twice; the next
// batch is scored afresh.
func TestBatchAgain(t *testing.T) {
	s := newScorer(nil, "edge1", anomaly.Config{Epoch: 60}, UplinkFilter{}, nil)
	s.setLimits(ScoreLimits{DeviceBudget: batchSize})
	msgs := pumpMsgs("pump-1")
	for i := range msgs {
		msgs[i].Offset = uint64(i)
	}
	first := store.Batch{Topic: "edge1", Messages: msgs[:205]}
	again := store.Batch{Topic: "edge1", Messages: msgs[:210]} // more came meanwhile
	if _, err := s.handle(context.Background(), first); err != nil {
		t.Fatal(err)
	}
	p1 := *s.pending[store.TopicPart{Topic: "edge1"}]
	if _, err := s.handle(context.Background(), again); err != nil {
		t.Fatal(err)
	}
	p2 := *s.pending[store.TopicPart{Topic: "edge1"}]
	if len(p1.up) == 0 || p2.next != 210 || len(p2.up) != len(p1.up)+5 || string(p2.up[0].Value) != string(p1.up[0].Value) {
		t.Fatalf("again: %d records up to %d, first %d records", len(p2.up), p2.next, len(p1.up))
	}
	if _, err := s.handle(context.Background(), store.Batch{Topic: "edge1", Messages: msgs[210:]}); err != nil {
		t.Fatal(err)
	}
	// Only the tenth reading after the spike goes up of it.
	if p3 := s.pending[store.TopicPart{Topic: "edge1"}]; p3.from != 210 || len(p3.up) != 1 {
		t.Fatalf("next batch: %d records from %d", len(p3.up), p3.from)
	}
}

// TestWarmUpWithinLimits: the warm-up at start replays the stored events
// through the filter's limits: 199 messages of 1,000 distinct numeric
// fields each leave no more channels than a device may have.
func TestWarmUpWithinLimits(t *testing.T) {
	ctx := context.Background()
	st := openStore(t, store.Config{})
	events := st.Stream(store.EventsStream)
	for i := range 199 {
		fields := map[string]int{}
		for j := range 1000 {
			fields[fmt.Sprintf("m%d_f%d", i, j)] = j
		}
		b, _ := json.Marshal(fields)
		if _, err := events.Append(ctx, "edge1", telemetryMsg("flood", t0.Add(time.Duration(i)*time.Second), string(b))); err != nil {
			t.Fatal(err)
		}
	}
	if err := events.SetCursor(ctx, scoreGroup, "edge1", 0, 199); err != nil {
		t.Fatal(err)
	}
	s := newScorer(st, "edge1", anomaly.Config{}, UplinkFilter{}, nil)
	if err := s.warm(ctx, events); err != nil {
		t.Fatal(err)
	}
	if got := s.filter.Stats(); got.Devices != 1 || got.Channels != 64 {
		t.Fatalf("warm-up: %d devices, %d channels; want 1 and 64", got.Devices, got.Channels)
	}
}

// TestScoreMetrics: the scorer exports the filter's counters.
func TestScoreMetrics(t *testing.T) {
	s := newScorer(nil, "edge1", anomaly.Config{}, UplinkFilter{}, nil)
	s.setLimits(ScoreLimits{DeviceBudget: 2})
	var msgs []store.Message
	for i := range 5 {
		m := telemetryMsg("flood", t0.Add(time.Duration(i)*time.Second), `{"x":1}`)
		m.Offset = uint64(i)
		msgs = append(msgs, m)
	}
	if _, err := s.handle(context.Background(), store.Batch{Topic: "edge1", Messages: msgs}); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(s)
	want := `
# HELP weft_anomaly_readings_skipped_total Readings not scored because their device had spent its budget in the batch (ScoreLimits.DeviceBudget).
# TYPE weft_anomaly_readings_skipped_total counter
weft_anomaly_readings_skipped_total 3
# HELP weft_anomaly_devices Devices the scorer follows.
# TYPE weft_anomaly_devices gauge
weft_anomaly_devices 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "weft_anomaly_readings_skipped_total", "weft_anomaly_devices"); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(reg, "weft_anomaly_fields_skipped_total"); err != nil || n != 3 {
		t.Fatalf("fields skipped: %d series (%v)", n, err)
	}
}
