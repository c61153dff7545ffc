package models

import (
	"math"
	"testing"

	"github.com/weft-io/weft/anomaly"
)

func TestKS(t *testing.T) {
	uniform := func(lo, hi float64, n int) []float64 {
		out := make([]float64, n)
		for i := range out {
			out[i] = lo + (hi-lo)*(float64(i)+0.5)/float64(n)
		}
		return out
	}
	in := inputRef(Summary{Min: 0, P01: 0.1, P50: 5, P99: 9.9, Max: 10})
	for _, tc := range []struct {
		name   string
		sample []float64
		ref    []point
		lo, hi float64
	}{
		{"same", uniform(0, 10, 500), in, 0, 0.01},
		{"shifted by a quarter", uniform(2.5, 12.5, 500), in, 0.24, 0.26},
		{"elsewhere", uniform(20, 30, 500), in, 1, 1},
		{"scores: the training's", uniform(0, 1, 400), scoreRef(scoreQuantiles(uniform(0, 1, 1000))), 0, 0.02},
		{"scores: all zero as trained", make([]float64, 100), scoreRef(scoreQuantiles(make([]float64, 100))), 0, 0},
		{"scores: all high, trained low", uniform(0.8, 1, 100), scoreRef(scoreQuantiles(uniform(0, 0.2, 1000))), 1, 1},
	} {
		d := ks(tc.sample, tc.ref)
		if d < tc.lo || d > tc.hi || math.IsNaN(d) {
			t.Errorf("%s: %v, want %v to %v", tc.name, d, tc.lo, tc.hi)
		}
	}
	if q := scoreQuantiles([]float64{0.3, 0.1, 0.2}); len(q) != ScoreQuantiles || q[0] != 0.1 || q[ScoreQuantiles-1] != 0.3 {
		t.Errorf("quantiles %v", q)
	}
}

func TestManifestScores(t *testing.T) {
	a := artifact(t, "bands", 1, "thermo", StageLive, anomaly.Config{}, nil)
	m, err := Parse(a.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	m.Training.Scores = scoreQuantiles([]float64{0, 0.1, 0.5, 0.9})
	back, err := Parse(mustSign(t, m, modelKey))
	if err != nil || len(back.Training.Scores) != ScoreQuantiles || back.Training.Scores[20] != 0.9 {
		t.Fatalf("scores round trip: %v %v", back.Training.Scores, err)
	}
	for _, bad := range [][]float64{{0.1, 0.2}, append(make([]float64, 20), 2), append([]float64{0.5}, make([]float64, 20)...)} {
		m.Training.Scores = bad
		if err := m.Check(); err == nil {
			t.Errorf("scores %v passed", bad)
		}
	}
}
