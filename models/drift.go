package models

import (
	"slices"
)

// ScoreQuantiles is how many quantiles of its training scores a manifest
// holds (Training.Scores): 0, 5, ..., 100%.
const ScoreQuantiles = 21

// DefaultDriftAbove is the drift past which a model is said to drift (an
// alarm, model_drift): the largest distance between two distributions'
// cumulative functions, so 0.3 means 30% of the recent readings (or
// scores) fall where the training's did not.
const DefaultDriftAbove = 0.3

// minDriftSample is how many recent values a drift is measured on at
// least.
const minDriftSample = 50

// scoreQuantiles returns the ScoreQuantiles quantiles of scores (nil when
// there are none).
func scoreQuantiles(scores []float64) []float64 {
	if len(scores) == 0 {
		return nil
	}
	s := slices.Clone(scores)
	slices.Sort(s)
	out := make([]float64, ScoreQuantiles)
	for i := range out {
		p := float64(i) / float64(ScoreQuantiles-1)
		out[i] = round6(s[min(int(p*float64(len(s)-1)+0.5), len(s)-1)])
	}
	return out
}

func round6(x float64) float64 { return float64(int64(x*1e6+0.5)) / 1e6 }

// point is a point of a reference cumulative distribution.
type point struct{ x, p float64 }

// cdf is the reference distribution at x: linear between its points
// (rising in x), 0 below the first and 1 from the last.
func cdf(ref []point, x float64) float64 {
	if x < ref[0].x {
		return 0
	}
	if x >= ref[len(ref)-1].x {
		return 1
	}
	i, _ := slices.BinarySearchFunc(ref, x, func(p point, x float64) int {
		switch {
		case p.x <= x:
			return -1
		default:
			return 1
		}
	})
	// ref[i-1].x <= x < ref[i].x
	a, b := ref[i-1], ref[i]
	return a.p + (b.p-a.p)*(x-a.x)/(b.x-a.x)
}

// ks is the Kolmogorov–Smirnov statistic of a sample against a reference:
// the largest distance between the sample's empirical cumulative
// function and the reference's.
func ks(sample []float64, ref []point) float64 {
	if len(sample) == 0 || len(ref) == 0 {
		return 0
	}
	s := slices.Clone(sample)
	slices.Sort(s)
	n := float64(len(s))
	d := 0.0
	for i := 0; i < len(s); {
		j := i
		for j+1 < len(s) && s[j+1] == s[i] {
			j++
		}
		f, before := cdf(ref, s[i]), 0.0 // before: the reference just below s[i]
		if s[i] > ref[0].x {
			before = f // continuous past its first point
		}
		d = max(d, abs(float64(j+1)/n-f), abs(float64(i)/n-before))
		i = j + 1
	}
	return d
}

// scoreRef is the reference distribution of training score quantiles.
func scoreRef(qs []float64) []point {
	out := make([]point, 0, len(qs))
	for i, q := range qs {
		p := float64(i) / float64(len(qs)-1)
		if len(out) > 0 && out[len(out)-1].x == q {
			out[len(out)-1].p = p // ties: the highest share at that score
			continue
		}
		out = append(out, point{q, p})
	}
	return out
}

// inputRef is the reference distribution of a channel's training
// summary: min, 1st, 50th and 99th percentiles and max.
func inputRef(s Summary) []point {
	var out []point
	for _, pt := range []point{{s.Min, 0}, {s.P01, 0.01}, {s.P50, 0.5}, {s.P99, 0.99}, {s.Max, 1}} {
		if len(out) > 0 && pt.x <= out[len(out)-1].x {
			out[len(out)-1].p = pt.p
			continue
		}
		out = append(out, pt)
	}
	return out
}
