package models

import (
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/weft-io/weft/anomaly"
)

// BenchmarkRunnerObserve is the cost an edge pays per reading for one
// running channel model of one channel: the model and the canary beside
// it, with their counters. Baseline: one default anomaly.Channel, what the
// edge's filter pays per channel anyway.
//
//	go test ./models -run '^$' -bench 'RunnerObserve' -benchmem -count 5
func BenchmarkRunnerObserve(b *testing.B) {
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	value := func(i int) float64 { return 20 + 5*math.Sin(float64(i)/40) + math.Sin(float64(i)*12.9898)*0.3 }
	b.Run("model+canary", func(b *testing.B) {
		r := &Runner{Keys: pinnedKeys}
		r.Sync([]Artifact{artifact(b, "bands", 1, "thermo", StageLive, anomaly.Config{}, nil)}, map[string]bool{"thermo": true})
		vals := map[string]float64{}
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			vals["temp"] = value(i)
			r.Observe("th-1", "thermo", t0.Add(time.Duration(i)*time.Minute), vals)
		}
	})
	b.Run("baseline-channel", func(b *testing.B) {
		c := anomaly.NewChannel(anomaly.Config{})
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			c.Observe(t0.Add(time.Duration(i)*time.Minute), value(i))
		}
	})
}

// BenchmarkBuiltinWorstCase is the cost of one reading for the largest
// built-in models a manifest may name — a channel model and a vector
// model over MaxChannels channels, the vector with every centre it may
// hold — with the longest single reading's time (max-ns), epoch ends
// included: what a deadline would have to cut off (docs/models.md#what-a-deadline-cuts-off).
//
//	go test ./models -run '^$' -bench BuiltinWorstCase -benchmem -count 3
func BenchmarkBuiltinWorstCase(b *testing.B) {
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	chans := make([]string, MaxChannels)
	for i := range chans {
		chans[i] = "c" + strconv.Itoa(i)
	}
	vp := anomaly.VectorParams{Mean: make([]float64, MaxChannels), Var: make([]float64, MaxChannels)}
	for i := range vp.Var {
		vp.Var[i] = 1
	}
	for k := range 8 { // the most centres anomaly.VectorParams.Check allows
		c := make([]float64, MaxChannels)
		for i := range c {
			c[i] = float64(k%5) - 2
		}
		vp.Centres, vp.Counts = append(vp.Centres, c), append(vp.Counts, 10)
	}
	cp := map[string]anomaly.Config{}
	for _, c := range chans {
		cp[c] = anomaly.Config{Epoch: 100}
	}
	for _, c := range []struct {
		name string
		m    Manifest
		p    ParamsFile
	}{
		{"channel-64", Manifest{Kind: KindChannel, Channels: chans}, ParamsFile{Kind: KindChannel, Channels: cp}},
		{"vector-64", Manifest{Kind: KindVector, Channels: chans}, ParamsFile{Kind: KindVector, Vector: &VectorParams{Config: anomaly.Config{Epoch: 100}, Params: vp}}},
	} {
		b.Run(c.name, func(b *testing.B) {
			s, err := NewScorer(c.m, c.p)
			if err != nil {
				b.Fatal(err)
			}
			vals := map[string]float64{}
			var worst time.Duration
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				for j, ch := range chans {
					vals[ch] = math.Sin(float64(i+j)/40) + math.Sin(float64(i*j)*12.9898)*0.3
				}
				start := time.Now()
				s.Observe(t0.Add(time.Duration(i)*time.Minute), vals)
				worst = max(worst, time.Since(start))
			}
			b.ReportMetric(float64(worst.Nanoseconds()), "max-ns")
		})
	}
}
