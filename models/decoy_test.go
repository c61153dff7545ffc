package models

import (
	"testing"
	"time"
)

func TestDecoy(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	count := func(d *Decoy, n int, step time.Duration) map[string]int {
		out := map[string]int{}
		for i := range n {
			for _, c := range []string{"pump", "thermo"} {
				if d.Sample(c, t0.Add(time.Duration(i)*step)) {
					out[c]++
				}
			}
		}
		return out
	}
	for _, tc := range []struct {
		name string
		d    Decoy
		n    int
		step time.Duration
		want int // per class
	}{
		{"defaults: one in a thousand", Decoy{}, 3000, time.Second, 3},
		{"one in a hundred", Decoy{Every: 100}, 1000, time.Second, 10},
		{"every reading, capped per minute", Decoy{Every: 1, PerMinute: 5}, 600, time.Second, 50},
		{"one in ten, per minute cap not reached", Decoy{Every: 10}, 600, time.Second, 60},
		{"off", Decoy{PerMinute: -1}, 600, time.Second, 0},
	} {
		got := count(&tc.d, tc.n, tc.step)
		if got["pump"] != tc.want || got["thermo"] != tc.want {
			t.Errorf("%s: %v, want %d per class", tc.name, got, tc.want)
		}
	}
}
