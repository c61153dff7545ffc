package models

import (
	"crypto/sha256"
	"math"
	"testing"
	"time"

	"github.com/weft-io/weft/anomaly"
)

// fleetReadings is days of readings every step from two devices: a daily
// temperature wave and a humidity that follows it, with a little noise.
func fleetReadings(days int, step time.Duration) []Reading {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var out []Reading
	n := int(time.Duration(days) * 24 * time.Hour / step)
	for _, dev := range []string{"t1", "t2"} {
		for i := range n {
			at := t0.Add(time.Duration(i) * step)
			day := 2 * math.Pi * float64(at.Unix()%86400) / 86400
			noise := math.Sin(float64(i)*12.9898) * 0.3
			temp := 20 + 5*math.Sin(day) + noise
			out = append(out, Reading{Device: dev, At: at, Values: map[string]float64{"temp": temp, "hum": 80 - 2*temp + noise}})
		}
	}
	return out
}

func TestTrainChannel(t *testing.T) {
	tr, err := Train(fleetReadings(4, 10*time.Minute), TrainConfig{})
	if err != nil {
		t.Fatal(err)
	}
	m := tr.Manifest
	if m.Kind != KindChannel || len(m.Channels) != 2 || m.Channels[0] != "hum" || m.Training.Devices != 2 || m.Training.Readings != 2*4*144 {
		t.Fatalf("manifest %+v", m)
	}
	if len(m.Training.Summary) != 2 || m.Training.Summary[1].Channel != "temp" || m.Training.Summary[1].Min < 14 || m.Training.Summary[1].Max > 26 {
		t.Fatalf("summary %+v", m.Training.Summary)
	}
	m.Name, m.Version, m.Class, m.KeyID = "x", 1, "thermo", "k"
	m.SHA256, m.Size = sha256.Sum256(tr.Params), int64(len(tr.Params))
	if err := m.Check(); err != nil {
		t.Fatal(err)
	}
	p, err := DecodeParams(tr.Params, m)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Channels["temp"].Epoch; got != 144 {
		t.Fatalf("epoch %d, want 144 readings a day", got)
	}
	if len(tr.Report.Channels) != 2 {
		t.Fatalf("report %+v", tr.Report)
	}
	for _, c := range tr.Report.Channels {
		if c.Readings != 2*4*144 || c.Threshold < 0.8 || c.Epoch != 144 {
			t.Fatalf("report %+v", c)
		}
		// The window is normal: what it raises is within the budget of
		// one a week per device (at least one each).
		if c.Detections > 2 {
			t.Fatalf("%s: %d detections on the training window", c.Channel, c.Detections)
		}
	}
}

// A channel model whose parameters are the defaults scores as the
// default detectors do.
func TestScorerDefaultsMatchAnomaly(t *testing.T) {
	rs := fleetReadings(3, 5*time.Minute)[:3*288]
	m := Manifest{Kind: KindChannel, Channels: []string{"temp"}}
	s, err := NewScorer(m, ParamsFile{Kind: KindChannel, Channels: map[string]anomaly.Config{"temp": {}}})
	if err != nil {
		t.Fatal(err)
	}
	var pts []anomaly.Point
	for _, r := range rs {
		pts = append(pts, anomaly.Point{At: r.At, Value: r.Values["temp"]})
	}
	want := anomaly.ScoreSeries(anomaly.Config{}, pts)
	for i, r := range rs {
		got, ok := s.Observe(r.At, map[string]float64{"temp": r.Values["temp"]})
		if !ok || got != want[i] {
			t.Fatalf("reading %d: %+v, want %+v", i, got, want[i])
		}
	}
}

func TestTrainVector(t *testing.T) {
	tr, err := Train(fleetReadings(3, 10*time.Minute), TrainConfig{Kind: KindVector})
	if err != nil {
		t.Fatal(err)
	}
	m := tr.Manifest
	m.Name, m.Version, m.Class, m.KeyID = "v", 1, "thermo", "k"
	m.SHA256, m.Size = sha256.Sum256(tr.Params), int64(len(tr.Params))
	p, err := DecodeParams(tr.Params, m)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Vector.Params.Centres) == 0 || len(p.Vector.Params.Mean) != 2 {
		t.Fatalf("vector %+v", p.Vector.Params)
	}
	s, err := NewScorer(m, p)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Observe(time.Now(), map[string]float64{"temp": 1}); ok {
		t.Fatal("a vector scored a reading missing a channel")
	}
	if tr.Report.Channels[0].Channel != "hum+temp" || tr.Report.Channels[0].Readings != 2*3*144 {
		t.Fatalf("report %+v", tr.Report)
	}
}

func TestTrainNothing(t *testing.T) {
	if _, err := Train(nil, TrainConfig{}); err != ErrNoData {
		t.Fatalf("err %v", err)
	}
	if _, err := Train(fleetReadings(1, time.Hour), TrainConfig{Kind: "python"}); err == nil {
		t.Fatal("unknown kind trained")
	}
}

func TestValues(t *testing.T) {
	got := Values("d1", "devices/d1/telemetry/engine", []byte(`{"rpm": 900, "ok": true, "name": "x"}`))
	if len(got) != 1 || got["engine.rpm"] != 900 {
		t.Fatalf("values %v", got)
	}
	if Values("d1", "devices/d2/telemetry", []byte(`{"a":1}`)) != nil || Values("d1", "devices/d1/telemetryx", []byte(`{"a":1}`)) != nil {
		t.Fatal("values of another topic")
	}
}

func FuzzDecodeParams(f *testing.F) {
	m := Manifest{Kind: KindChannel, Channels: []string{"temp"}}
	f.Add([]byte(`{"kind":"channel","channels":{"temp":{"epoch":144,"threshold":0.9}}}`), false)
	f.Add([]byte(`{"kind":"vector","vector":{"config":{},"params":{"mean":[0],"var":[1],"centres":[[0]],"counts":[1],"readings":10}}}`), true)
	f.Add([]byte(`{"kind":"vector","vector":{"params":{"mean":[0],"var":[1],"centres":[[0,1]],"counts":[1]}}}`), true)
	f.Fuzz(func(t *testing.T, b []byte, vector bool) {
		mm := m
		if vector {
			mm.Kind = KindVector
		}
		p, err := DecodeParams(b, mm)
		if err != nil {
			return
		}
		s, err := NewScorer(mm, p)
		if err != nil {
			t.Fatalf("decoded parameters make no scorer: %v", err)
		}
		for i := range 3 {
			s.Observe(time.Unix(int64(i), 0), map[string]float64{"temp": float64(i)})
		}
	})
}

// countDetections counts from the scores what a channel run with each
// threshold detects.
func TestCountDetectionsMatchesChannel(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var pts []anomaly.Point
	for i := range 2000 {
		v := 20 + 5*math.Sin(float64(i)/40) + math.Sin(float64(i)*12.9898)*0.3
		if i%170 == 0 && i > 300 {
			v += float64(i%7) * 4 // spikes of several sizes
		}
		pts = append(pts, anomaly.Point{At: t0.Add(time.Duration(i) * time.Minute), Value: v})
	}
	ss := [][]anomaly.Point{pts, pts[:900]}
	cfg := anomaly.Config{Epoch: 200}
	_, results := detections(cfg, ss)
	some := false
	for _, th := range Thresholds {
		c := cfg
		c.Threshold = th
		want, _ := detections(c, ss)
		if got := countDetections(results, th, cfg.WithDefaults().Cooldown); got != want {
			t.Errorf("threshold %v: counted %d, the channel detects %d", th, got, want)
		}
		some = some || want > 0
	}
	if !some {
		t.Fatal("the series raises nothing at any threshold: the test shows nothing")
	}
}
