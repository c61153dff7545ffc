package anomaly

import (
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// telemetry is a message of dev on its telemetry topic at second i after
// t0.
func telemetry(dev string, i int, payload string) Telemetry {
	return Telemetry{Device: dev, Class: "pump", Topic: "devices/" + dev + "/telemetry", At: t0.Add(time.Duration(i) * time.Second), Payload: []byte(payload)}
}

// pump is n readings of dev from second from, every 5 s: a slow wave of
// pressure and a flow, with the pressure of reading spike (if in range) 9.
func pump(dev string, from, n, spike int) []Telemetry {
	var out []Telemetry
	for i := from; i < from+n; i++ {
		p := 3 + 0.2*math.Sin(float64(i)/10)
		if i == spike {
			p = 9
		}
		out = append(out, telemetry(dev, 5*i, fmt.Sprintf(`{"pressure_bar":%g,"flow_lpm":%d,"ts":"x"}`, p, 40+i%7)))
	}
	return out
}

// brief is a record in short: its kind, device, and what tells it
// (detector and channel, the reading's second, the summary's readings).
func brief(r Record) string {
	switch v := r.Value.(type) {
	case Detection:
		return fmt.Sprintf("anomaly %s %s %s", v.Device, v.Detector, v.Channel)
	case Reading:
		return fmt.Sprintf("reading %s %s %ds", v.Device, v.Topic, int(v.At.Sub(t0)/time.Second))
	case Summary:
		return fmt.Sprintf("summary %s %d readings of %d channels", v.Device, v.Readings, len(v.Channels))
	}
	return fmt.Sprintf("%T", r.Value)
}

// readings are the briefs of the readings of dev at the seconds of
// readings i to j (excluded) of pump.
func readings(dev string, i, j int) []string {
	var out []string
	for ; i < j; i++ {
		out = append(out, fmt.Sprintf("reading %s devices/%s/telemetry %ds", dev, dev, 5*i))
	}
	return out
}

func TestFilterRecords(t *testing.T) {
	cases := []struct {
		name string
		cfg  FilterConfig
		in   []Telemetry
		want []string
	}{{
		name: "ordinary readings send nothing",
		cfg:  FilterConfig{Anomaly: Config{Epoch: 60}, Uplink: Uplink{Summary: time.Hour}},
		in:   pump("p", 0, 200, -1),
	}, {
		name: "a detection goes up with the readings around it",
		cfg:  FilterConfig{Anomaly: Config{Epoch: 60}, Uplink: Uplink{Summary: time.Hour}},
		in:   pump("p", 0, 215, 200),
		want: slices.Concat([]string{"anomaly p level pressure_bar", "anomaly p cluster flow_lpm+pressure_bar"}, readings("p", 190, 211)),
	}, {
		name: "Before and After",
		cfg:  FilterConfig{Anomaly: Config{Epoch: 60}, Uplink: Uplink{Summary: time.Hour, Before: 2, After: 1}},
		in:   pump("p", 0, 215, 200),
		want: slices.Concat([]string{"anomaly p level pressure_bar", "anomaly p cluster flow_lpm+pressure_bar"}, readings("p", 198, 202)),
	}, {
		name: "RecentBytes bounds the readings before",
		cfg:  FilterConfig{Anomaly: Config{Epoch: 60}, Uplink: Uplink{Summary: time.Hour}, Limits: Limits{RecentBytes: 120}},
		in:   pump("p", 0, 202, 200),
		want: slices.Concat([]string{"anomaly p level pressure_bar", "anomaly p cluster flow_lpm+pressure_bar"}, readings("p", 198, 202)),
	}, {
		name: "a summary per period",
		cfg:  FilterConfig{Uplink: Uplink{Summary: time.Minute}},
		in:   pump("p", 0, 25, -1),
		want: []string{"summary p 12 readings of 2 channels", "summary p 12 readings of 2 channels"},
	}, {
		name: "only JSON objects on a device's own telemetry topics",
		cfg:  FilterConfig{Uplink: Uplink{Summary: time.Second}},
		in: []Telemetry{
			telemetry("p", 0, `{"a":1}`),
			{Device: "p", Topic: "devices/q/telemetry", At: t0.Add(time.Second), Payload: []byte(`{"a":2}`)},
			{Device: "p", Topic: "devices/p/telemetryx", At: t0.Add(2 * time.Second), Payload: []byte(`{"a":3}`)},
			{Device: "p", Topic: "devices/p/state", At: t0.Add(3 * time.Second), Payload: []byte(`{"a":4}`)},
			telemetry("p", 4, `[1,2]`),
			telemetry("p", 5, `{"a":`),
			telemetry("p", 6, `{"b":"text"}`),
			{Device: "p", Topic: "devices/p/telemetry/motor", At: t0.Add(7 * time.Second), Payload: []byte(`{"a":5}`)},
		},
		want: []string{"summary p 1 readings of 1 channels"},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := NewFilter(tc.cfg)
			var got []string
			for i := 0; i < len(tc.in); i += 7 {
				up, _ := f.Batch(tc.in[i:min(i+7, len(tc.in))])
				for _, r := range up {
					got = append(got, brief(r))
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("records:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestFilterSummary(t *testing.T) {
	f := NewFilter(FilterConfig{Uplink: Uplink{Summary: time.Minute}})
	var got []Summary
	for i := range 25 { // a reading every 5 s: 12 to a minute
		up, _ := f.Batch([]Telemetry{telemetry("d", 5*i, fmt.Sprintf(`{"temp":%d,"rpm":1000}`, i))})
		for _, r := range up {
			if r.Kind != RecordSummary || r.Device != "d" || !r.At.Equal(t0.Add(time.Duration(5*i)*time.Second)) {
				t.Fatalf("record %+v", r)
			}
			got = append(got, r.Value.(Summary))
		}
	}
	if len(got) != 2 {
		t.Fatalf("%d summaries of two minutes, want 2", len(got))
	}
	first, temp := got[0], got[0].Channels["temp"]
	if first.Readings != 12 || !first.From.Equal(t0) || !first.To.Equal(t0.Add(55*time.Second)) || len(first.Channels) != 2 {
		t.Fatalf("first summary %+v", first)
	}
	if temp.Count != 12 || temp.Min != 0 || temp.Max != 11 || temp.Mean != 5.5 || temp.MaxScore != 0 || temp.P50 < 4 || temp.P50 > 7 || temp.P95 < 9 {
		t.Fatalf("first summary of temp %+v", temp)
	}
	if rpm := first.Channels["rpm"]; rpm.Min != 1000 || rpm.Max != 1000 || rpm.Count != 12 {
		t.Fatalf("first summary of rpm %+v", rpm)
	}
	if second := got[1].Channels["temp"]; second.Count != 12 || second.Min != 12 || got[1].Readings != 12 {
		t.Fatalf("second summary %+v", got[1])
	}
}

// TestFilterScores: a device's score is reported on its first reading,
// at once when it crosses the threshold, and otherwise when it has moved
// by ScoreStep at least ScoreEvery after the last report.
func TestFilterScores(t *testing.T) {
	f := NewFilter(FilterConfig{Anomaly: Config{Epoch: 60}})
	var got []string
	for _, m := range pump("p", 0, 215, 200) {
		_, scores := f.Batch([]Telemetry{m})
		for _, s := range scores {
			got = append(got, fmt.Sprintf("%s %ds %.1f", s.Device, int(s.At.Sub(t0)/time.Second), s.Score))
		}
	}
	if want := []string{"p 0s 0.0", "p 1000s 1.0", "p 1005s 0.0"}; !slices.Equal(got, want) {
		t.Fatalf("scores reported: %v; want %v", got, want)
	}
}

func TestScoreMoved(t *testing.T) {
	type step struct {
		at    time.Duration
		score float64
		want  bool
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"the first score", []step{{0, 0, true}}},
		{"a small move", []step{{0, 0.1, true}, {time.Hour, 0.15, false}}},
		{"a step", []step{{0, 0.1, true}, {time.Hour, 0.2, true}}},
		{"a step within a minute", []step{{0, 0.1, true}, {30 * time.Second, 0.3, false}, {61 * time.Second, 0.3, true}}},
		{"across the threshold at once", []step{{0, 0.1, true}, {time.Second, 0.85, true}, {2 * time.Second, 0.79, true}}},
		{"beyond it", []step{{0, 0.85, true}, {time.Second, 1, false}, {time.Hour, 0.96, true}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := &deviceState{channels: map[string]*fieldState{"a": {}}}
			for i, s := range tc.steps {
				d.last, d.channels["a"].latest = t0.Add(s.at), s.score
				if got := d.moved(0.8); got != s.want {
					t.Fatalf("step %d (%v, %g): reported %v", i, s.at, s.score, got)
				}
			}
		})
	}
}

// floodMsgs are n messages of dev, each with fields distinct numeric
// fields no other message has.
func floodMsgs(dev string, n, fields int) []Telemetry {
	var msgs []Telemetry
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
		msgs = append(msgs, telemetry(dev, i, b.String()))
	}
	return msgs
}

// anomalyChannels counts the filter's anomaly channels (those holding a
// history) and the fields it follows.
func anomalyChannels(f *Filter) (channels, fields int) {
	for _, d := range f.devices {
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
// no more channels than a device may have, scored or learnt from, and the
// fields past the caps are counted, not refused.
func TestFieldFlood(t *testing.T) {
	lim := Limits{}.withDefaults()
	flood := floodMsgs("flood", 199, 1000)
	for _, learn := range []bool{false, true} {
		f := NewFilter(FilterConfig{})
		for i := 0; i < len(flood); i += 50 {
			if batch := flood[i:min(i+50, len(flood))]; learn {
				f.Learn(batch)
			} else {
				f.Batch(batch)
			}
		}
		channels, fields := anomalyChannels(f)
		st := f.Stats()
		if channels > lim.MaxChannels || fields > lim.MaxChannels || st.Channels != int64(fields) || st.Devices != 1 {
			t.Fatalf("learn %v: %d anomaly channels, %d fields followed (counted %d); cap %d", learn, channels, fields, st.Channels, lim.MaxChannels)
		}
		if v := f.devices["flood"].vector; v != nil && v.vec.Dims() > lim.MaxFields {
			t.Fatalf("learn %v: vector of %d fields, cap %d", learn, v.vec.Dims(), lim.MaxFields)
		}
		if skipped := st.SkippedFields[SkipFields] + st.SkippedFields[SkipChannels]; skipped != 199*1000-int64(lim.MaxChannels) {
			t.Fatalf("learn %v: %d fields skipped, want %d", learn, skipped, 199*1000-lim.MaxChannels)
		}
	}
}

// TestDevicesEvicted: a device idle past IdleAfter is forgotten, and past
// MaxDevices (or MaxTotalChannels) the one heard from least recently.
func TestDevicesEvicted(t *testing.T) {
	f := NewFilter(FilterConfig{Limits: Limits{IdleAfter: time.Hour, MaxDevices: 3}})
	at := 0
	send := func(devs ...string) {
		t.Helper()
		for _, dev := range devs {
			at++
			f.Batch([]Telemetry{telemetry(dev, at, `{"a":1,"b":2}`)})
		}
	}
	has := func(want ...string) {
		t.Helper()
		if len(f.devices) != len(want) || f.channels != 2*len(want) || f.Stats().Devices != int64(len(want)) {
			t.Fatalf("%d devices, %d channels; want %v", len(f.devices), f.channels, want)
		}
		for _, dev := range want {
			if f.devices[dev] == nil {
				t.Fatalf("%s forgotten; want %v", dev, want)
			}
		}
	}
	send("a", "b", "c", "a", "d") // b is heard from least recently
	has("a", "c", "d")
	at += 7200 // all idle
	send("e")
	has("e")
	if n := f.Stats().Evicted; n != 4 {
		t.Fatalf("%d devices evicted, want 4", n)
	}

	f.limits = Limits{MaxChannels: 2, MaxTotalChannels: 4}.withDefaults()
	send("f", "g")
	has("f", "g")
}

// TestCounterNotScored: a field that only grows (a sequence number, reset
// now and then) keeps no anomaly channel, raises no detection and is not
// scored with the other fields together.
func TestCounterNotScored(t *testing.T) {
	f := NewFilter(FilterConfig{Anomaly: Config{Epoch: 60}})
	var up []Record
	for i := range 2000 {
		seq := i % 700 // reset twice
		u, _ := f.Batch([]Telemetry{telemetry("pump-1", 5*i, fmt.Sprintf(`{"seq":%d,"uptime_s":%d,"temp":%d,"flow":%d}`, seq, i*5, 20+i%3, 40+i%5))})
		up = append(up, u...)
	}
	d := f.devices["pump-1"]
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
	for _, r := range up {
		if det, ok := r.Value.(Detection); ok && (strings.Contains(det.Channel, "seq") || strings.Contains(det.Channel, "uptime")) {
			t.Fatalf("detection of a counter: %+v", det)
		}
	}
	if f.Stats().SkippedFields[SkipMonotonic] == 0 {
		t.Fatal("no counter readings counted as skipped")
	}
}

// TestFloodDoesNotStarve: in a batch that one device floods, another
// device's reading is scored, and the flood past its budget is counted.
func TestFloodDoesNotStarve(t *testing.T) {
	f := NewFilter(FilterConfig{})
	budget := f.limits.DeviceBudget
	const batch = 1000
	var msgs []Telemetry
	for i := range batch - 1 {
		m := telemetry("flood", 0, fmt.Sprintf(`{"x":%d,"y":1}`, i%7))
		m.At = m.At.Add(time.Duration(i) * time.Millisecond)
		msgs = append(msgs, m)
	}
	msgs = append(msgs, telemetry("quiet", 1, `{"x":1,"y":2}`))
	_, scores := f.Batch(msgs)
	if q := f.devices["quiet"]; q == nil || q.period.readings != 1 || len(scores) != 2 {
		t.Fatalf("the quiet device's reading was not scored (%d scores)", len(scores))
	}
	if fl := f.devices["flood"]; fl.period.readings != budget {
		t.Fatalf("%d readings of the flood scored, budget %d", fl.period.readings, budget)
	}
	if n := f.Stats().SkippedReadings; n != int64(batch-1-budget) {
		t.Fatalf("%d readings skipped, want %d", n, batch-1-budget)
	}
	// The budget is per batch: the next one scores the flood again.
	f.Batch(msgs[:10])
	if fl := f.devices["flood"]; fl.period.readings != budget+10 {
		t.Fatalf("%d readings of the flood scored after the next batch", fl.period.readings)
	}
}

// TestQuantile: a summary's P50 and P95 are exact up to 16 readings and
// within 2% of the readings' range after, in any order.
func TestQuantile(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	cases := []struct {
		name string
		v    func(i int) float64
		n    int
	}{
		{"few", func(i int) float64 { return float64(11 - i) }, 12},
		{"exact", func(i int) float64 { return float64(i * i % 17) }, 16},
		{"rising", func(i int) float64 { return float64(i) }, 1000},
		{"falling", func(i int) float64 { return float64(-i) }, 1000},
		{"uniform", func(int) float64 { return r.Float64() * 100 }, 900},
		{"normal", func(int) float64 { return 20 + 3*r.NormFloat64() }, 900},
		{"spikes", func(i int) float64 { return float64(i%100/99) * 50 }, 900},
		{"constant", func(int) float64 { return 4 }, 500},
		{"wave", func(i int) float64 { return math.Sin(float64(i) / 50) }, 900},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var vs []float64
			for i := range tc.n {
				vs = append(vs, tc.v(i))
			}
			sorted := slices.Sorted(slices.Values(vs))
			span := sorted[len(sorted)-1] - sorted[0]
			for _, p := range []float64{0.5, 0.95} {
				e := newQuantile(p)
				for _, v := range vs {
					e.add(v)
				}
				want := sorted[int(math.Ceil(p*float64(len(vs))))-1] // the nearest rank
				got := e.value()
				if tc.n <= quantileExact && got != want || math.Abs(got-want) > 0.02*span {
					t.Errorf("P%g = %g, want %g (range %g)", 100*p, got, want, span)
				}
				e.reset()
				if e.n != 0 || !math.IsNaN(e.value()) {
					t.Fatalf("after reset: %+v", e)
				}
			}
		})
	}
}

// TestRecentReadingsOwnTheirBytes: the readings kept as a detection's
// context are copies, not slices of the buffer the messages came in (a
// stored batch of every device's messages, which they would keep whole).
func TestRecentReadingsOwnTheirBytes(t *testing.T) {
	f := NewFilter(FilterConfig{Anomaly: Config{Epoch: 60}, Uplink: Uplink{Summary: time.Hour, Before: 3, After: 1}})
	in := pump("p", 0, 202, 200)
	want := map[string]string{}
	for i, m := range in {
		want[m.At.String()] = string(m.Payload)
		buf := slices.Clone(m.Payload)
		m.Payload = buf
		up, _ := f.Batch([]Telemetry{m})
		for _, r := range up {
			if rd, ok := r.Value.(Reading); ok && string(rd.Payload) != want[rd.At.String()] {
				t.Fatalf("reading %d: reading at %v went up as %q, want %q", i, rd.At, rd.Payload, want[rd.At.String()])
			}
		}
		clear(buf) // the buffer is reused for the next batch
	}
	if d := f.devices["p"]; len(d.recent) > 3 || cap(d.recent) > 8 {
		t.Fatalf("%d recent readings kept in a slice of %d", len(d.recent), cap(d.recent))
	}
}

// TestIdleChannelsDropped: a field a device no longer sends is forgotten
// after IdleAfter, though the device goes on sending others.
func TestIdleChannelsDropped(t *testing.T) {
	f := NewFilter(FilterConfig{Limits: Limits{IdleAfter: time.Hour}})
	f.Batch([]Telemetry{telemetry("d", 0, `{"old":1,"kept":1}`)})
	for i := 1; i <= 3; i++ {
		f.Batch([]Telemetry{telemetry("d", 1800*i, `{"kept":2}`)})
	}
	d := f.devices["d"]
	if st := f.Stats(); d.channels["old"] != nil || len(d.channels) != 1 || st.Channels != 1 || st.DroppedChannels != 1 || st.Evicted != 0 {
		t.Fatalf("channels %v, stats %+v; want kept alone, one dropped", slices.Sorted(maps.Keys(d.channels)), st)
	}
}
