package models

import (
	"math"
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
