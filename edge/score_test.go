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

func TestSummaries(t *testing.T) {
	s := newScorer(nil, "edge1", anomaly.Config{}, UplinkFilter{Summary: time.Minute}, nil)
	base := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	d := s.device("d", base)
	tempC, rpmC := &fieldState{}, &fieldState{}
	d.channels["temp"], d.channels["rpm"] = tempC, rpmC
	var got []*anomaly.Summary
	for i := range 25 { // a reading every 5 s: 12 to a minute
		at := base.Add(time.Duration(i) * 5 * time.Second)
		if sum := s.closePeriod(d, at); sum != nil {
			got = append(got, sum)
		}
		s.summarize(d, tempC, at, float64(i), float64(i)/100)
		s.summarize(d, rpmC, at, 1000, 0)
		d.period.readings++
	}
	if len(got) != 2 {
		t.Fatalf("%d summaries of two minutes, want 2", len(got))
	}
	first, temp := got[0], got[0].Channels["temp"]
	if first.Readings != 12 || !first.From.Equal(base) || !first.To.Equal(base.Add(55*time.Second)) || len(first.Channels) != 2 {
		t.Fatalf("first summary %+v", first)
	}
	if temp.Count != 12 || temp.Min != 0 || temp.Max != 11 || temp.Mean != 5.5 || temp.MaxScore != 0.11 || temp.P50 < 4 || temp.P50 > 7 || temp.P95 < 9 {
		t.Fatalf("first summary of temp %+v", temp)
	}
	if rpm := first.Channels["rpm"]; rpm.Min != 1000 || rpm.Max != 1000 || rpm.Count != 12 {
		t.Fatalf("first summary of rpm %+v", rpm)
	}
	if second := got[1].Channels["temp"]; second.Count != 12 || second.Min != 12 || got[1].Readings != 12 {
		t.Fatalf("second summary %+v", got[1])
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
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
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

// floodMsgs are n messages of dev, each with fields distinct numeric
// fields no other message has.
func floodMsgs(dev string, n, fields int) []store.Message {
	var msgs []store.Message
	for i := range n {
		var b strings.Builder
		b.WriteByte('{')
		for j := range fields {
			if j > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `"m%d_f%d":%d`, i, j, j)
		}
		b.WriteByte('}')
		msgs = append(msgs, telemetryMsg(dev, t0.Add(time.Duration(i)*time.Second), b.String()))
	}
	return msgs
}

// anomalyChannels counts the scorer's anomaly channels (those holding a
// history) and the fields it follows.
func anomalyChannels(s *scorer) (channels, fields int) {
	for _, d := range s.devices {
		for _, c := range d.channels {
			fields++
			if c.ch != nil {
				channels++
			}
		}
	}
	return channels, fields
}

// TestFieldFlood: 199 messages of 1,000 distinct numeric fields each make
// no more channels than a device may have, scored live or replayed at
// start, and the fields past the caps are counted, not refused.
func TestFieldFlood(t *testing.T) {
	lim := ScoreLimits{}.withDefaults()
	flood := floodMsgs("flood", 199, 1000)

	s := newScorer(nil, "edge1", anomaly.Config{}, UplinkFilter{}, nil)
	for i := 0; i < len(flood); i += 50 {
		s.batch(flood[i:min(i+50, len(flood))])
	}
	channels, fields := anomalyChannels(s)
	if channels > lim.MaxChannels || fields > lim.MaxChannels || s.channels != fields {
		t.Fatalf("%d anomaly channels, %d fields followed (counted %d); cap %d", channels, fields, s.channels, lim.MaxChannels)
	}
	if v := s.devices["flood"].vector; v != nil && v.vec.Dims() > lim.MaxFields {
		t.Fatalf("vector of %d fields, cap %d", v.vec.Dims(), lim.MaxFields)
	}
	skipped := s.stats.skippedFields[skipFields].Load() + s.stats.skippedFields[skipChannels].Load()
	if skipped != 199*1000-int64(lim.MaxChannels) {
		t.Fatalf("%d fields skipped, want %d", skipped, 199*1000-lim.MaxChannels)
	}

	// The warm-up at start holds to the same caps.
	ctx := context.Background()
	st, err := store.Open(store.Config{Dir: t.TempDir(), Name: "edge1", MinFreeBytes: -1, RetentionInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	events := st.Stream(store.EventsStream)
	if _, err := events.Append(ctx, "edge1", flood...); err != nil {
		t.Fatal(err)
	}
	w := newScorer(st, "edge1", anomaly.Config{}, UplinkFilter{}, nil)
	if err := w.warm(ctx, events, uint64(len(flood))); err != nil {
		t.Fatal(err)
	}
	if channels, fields := anomalyChannels(w); channels > lim.MaxChannels || fields > lim.MaxChannels {
		t.Fatalf("warm-up: %d anomaly channels, %d fields followed; cap %d", channels, fields, lim.MaxChannels)
	}
}

// TestDevicesEvicted: a device idle past IdleAfter is forgotten, and past
// MaxDevices (or MaxTotalChannels) the one heard from least recently.
func TestDevicesEvicted(t *testing.T) {
	s := newScorer(nil, "edge1", anomaly.Config{}, UplinkFilter{}, nil)
	s.setLimits(ScoreLimits{IdleAfter: time.Hour, MaxDevices: 3})
	at := t0
	send := func(devs ...string) {
		t.Helper()
		for _, dev := range devs {
			at = at.Add(time.Second)
			s.batch([]store.Message{telemetryMsg(dev, at, `{"a":1,"b":2}`)})
		}
	}
	has := func(want ...string) {
		t.Helper()
		if len(s.devices) != len(want) || s.channels != 2*len(want) {
			t.Fatalf("%d devices, %d channels; want %v", len(s.devices), s.channels, want)
		}
		for _, dev := range want {
			if s.devices[dev] == nil {
				t.Fatalf("%s forgotten; want %v", dev, want)
			}
		}
	}
	send("a", "b", "c", "a", "d") // b is heard from least recently
	has("a", "c", "d")
	at = at.Add(2 * time.Hour) // all idle
	send("e")
	has("e")
	if n := s.stats.evicted.Load(); n != 4 {
		t.Fatalf("%d devices evicted, want 4", n)
	}

	s.setLimits(ScoreLimits{MaxChannels: 2, MaxTotalChannels: 4})
	send("f", "g")
	has("f", "g")
}

// TestCounterNotScored: a field that only grows (a sequence number, reset
// now and then) keeps no anomaly channel, raises no detection and is not
// scored with the other fields together.
func TestCounterNotScored(t *testing.T) {
	s := newScorer(nil, "edge1", anomaly.Config{Epoch: 60}, UplinkFilter{}, nil)
	var up []store.Message
	for i := range 2000 {
		seq := i % 700 // reset twice
		m := telemetryMsg("pump-1", t0.Add(time.Duration(i)*5*time.Second), fmt.Sprintf(`{"seq":%d,"uptime_s":%d,"temp":%g,"flow":%g}`, seq, i*5, 20+float64(i%3), 40+float64(i%5)))
		u, _ := s.batch([]store.Message{m})
		up = append(up, u...)
	}
	d := s.devices["pump-1"]
	for _, name := range []string{"seq", "uptime_s"} {
		if c := d.channels[name]; c == nil || c.ch != nil || c.sum != nil || c.latest != 0 {
			t.Fatalf("counter %s: %+v; want no channel, no summary digest, no score", name, c)
		}
	}
	if d.channels["temp"].ch == nil {
		t.Fatal("temp is not scored")
	}
	if d.vector == nil || d.vector.names != "flow+temp" {
		t.Fatalf("vector %+v, want flow+temp", d.vector)
	}
	for _, m := range up {
		v := string(m.Value)
		if m.Headers[anomaly.RecordHeader] == anomaly.RecordAnomaly && (strings.Contains(v, "seq") || strings.Contains(v, "uptime")) {
			t.Fatalf("detection of a counter: %s", m.Value)
		}
	}
	if s.stats.skippedFields[skipMonotonic].Load() == 0 {
		t.Fatal("no counter readings counted as skipped")
	}
}

// TestFloodDoesNotStarve: in a batch that one device floods, another
// device's reading is scored, and the flood past its budget is counted.
func TestFloodDoesNotStarve(t *testing.T) {
	s := newScorer(nil, "edge1", anomaly.Config{}, UplinkFilter{}, nil)
	lim := s.limits
	var msgs []store.Message
	for i := range batchSize - 1 {
		msgs = append(msgs, telemetryMsg("flood", t0.Add(time.Duration(i)*time.Millisecond), fmt.Sprintf(`{"x":%d,"y":1}`, i%7)))
	}
	msgs = append(msgs, telemetryMsg("quiet", t0.Add(time.Second), `{"x":1,"y":2}`))
	_, touched := s.batch(msgs)
	if q := s.devices["quiet"]; q == nil || q.period.readings != 1 || len(touched) != 2 {
		t.Fatalf("the quiet device's reading was not scored (%d devices scored)", len(touched))
	}
	if f := s.devices["flood"]; f.period.readings != lim.DeviceBudget {
		t.Fatalf("%d readings of the flood scored, budget %d", f.period.readings, lim.DeviceBudget)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(s)
	if n, err := testutil.GatherAndCount(reg, "weft_anomaly_readings_skipped_total"); err != nil || n != 1 {
		t.Fatalf("skipped readings metric: %d series (%v)", n, err)
	}
	if n := s.stats.skippedReadings.Load(); n != int64(batchSize-1-lim.DeviceBudget) {
		t.Fatalf("%d readings skipped, want %d", n, batchSize-1-lim.DeviceBudget)
	}
	// The budget is per batch: the next one scores the flood again.
	s.batch(msgs[:10])
	if f := s.devices["flood"]; f.period.readings != lim.DeviceBudget+10 {
		t.Fatalf("%d readings of the flood scored after the next batch", f.period.readings)
	}
}
