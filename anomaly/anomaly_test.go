package anomaly

import (
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

// wave is a daily sine with noise, a reading every 5 minutes.
func wave(r *rand.Rand, i int) (time.Time, float64) {
	return t0.Add(time.Duration(i) * 5 * time.Minute), 20 + 5*math.Sin(2*math.Pi*float64(i)/288) + r.NormFloat64()*0.3
}

// feed observes n readings of the wave from i and returns the detections.
func feed(c *Channel, r *rand.Rand, from, n int) []Result {
	var out []Result
	for i := from; i < from+n; i++ {
		if res := c.Observe(wave(r, i)); res.Detected {
			out = append(out, res)
		}
	}
	return out
}

func TestQuietSignalNoDetection(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	c := NewChannel(Config{})
	if got := feed(c, r, 0, 288*14); len(got) != 0 {
		t.Fatalf("two weeks of an ordinary daily wave: %d detections, first %+v", len(got), got[0])
	}
}

func TestWarmupScoresNothing(t *testing.T) {
	c := NewChannel(Config{Epoch: 100})
	for i := range 100 {
		v := 1.0
		if i == 50 {
			v = 1e9
		}
		if res := c.Observe(t0.Add(time.Duration(i)*time.Second), v); res.Score != 0 || res.Detected {
			t.Fatalf("reading %d of the warmup scored %+v", i, res)
		}
	}
}

func TestDetectors(t *testing.T) {
	for _, tc := range []struct {
		name     string
		detector string
		at       func(i int, tm time.Time, v float64) (time.Time, float64)
	}{
		{"spike", Level, func(i int, tm time.Time, v float64) (time.Time, float64) {
			if i == 2000 {
				v += 30
			}
			return tm, v
		}},
		{"drop to a level never seen", Level, func(i int, tm time.Time, v float64) (time.Time, float64) {
			if i >= 2000 {
				v = -40
			}
			return tm, v
		}},
		{"jump within the range", Change, func(i int, tm time.Time, v float64) (time.Time, float64) {
			// At the trough a sudden step to the crest: a level seen
			// every day, a step never seen.
			if i == 2000+288*3/4 {
				v += 9.5
			}
			return tm, v
		}},
		{"silence", Silence, func(i int, tm time.Time, v float64) (time.Time, float64) {
			if i >= 2000 {
				tm = tm.Add(3 * 24 * time.Hour) // three days without a reading
			}
			return tm, v
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(3, 4))
			c := NewChannel(Config{})
			first := -1
			var res Result
			for i := range 3000 {
				tm, v := wave(r, i)
				tm, v = tc.at(i, tm, v)
				if got := c.Observe(tm, v); got.Detected && first < 0 {
					first, res = i, got
				}
			}
			lo := 2000
			if tc.detector == Change {
				lo = 2000 + 288*3/4
			}
			if first < lo || first > lo+1 || res.Detector != tc.detector || res.Score < 0.8 {
				t.Fatalf("first detection at %d by %q (score %.2f); want %s at %d", first, res.Detector, res.Score, tc.detector, lo)
			}
		})
	}
}

func TestCooldownReportsOnce(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	c := NewChannel(Config{})
	feed(c, r, 0, 2000)
	n := 0
	for i := 2000; i < 2100; i++ {
		tm, _ := wave(r, i)
		if c.Observe(tm, 500).Detected {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("a lasting anomaly of 100 readings reported %d times, want once", n)
	}
}

func TestNonFiniteIgnored(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	c := NewChannel(Config{})
	feed(c, r, 0, 1000)
	for _, v := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		if res := c.Observe(t0.Add(1000*5*time.Minute), v); res != (Result{}) {
			t.Fatalf("%v scored %+v", v, res)
		}
	}
	if got := feed(c, r, 1001, 500); len(got) != 0 {
		t.Fatalf("non-finite readings disturbed the channel: %+v", got)
	}
}

// BenchmarkObserve is the cost of scoring one reading of a channel past
// its warmup.
func BenchmarkObserve(b *testing.B) {
	r := rand.New(rand.NewPCG(9, 10))
	c := NewChannel(Config{})
	feed(c, r, 0, 2000)
	b.ResetTimer()
	for i := range b.N {
		c.Observe(wave(r, 2000+i))
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "readings/s")
}

// TestChannelMemory keeps a channel small: an edge holds one per channel
// of each of its devices.
func TestChannelMemory(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	cs := make([]*Channel, 500)
	for i := range cs {
		cs[i] = NewChannel(Config{})
		feed(cs[i], r, 0, 1500)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := float64(after.HeapAlloc-before.HeapAlloc) / float64(len(cs))
	runtime.KeepAlive(cs)
	t.Logf("%.1f KiB per channel", per/1024)
	if per > 32<<10 {
		t.Fatalf("%.1f KiB per channel, want at most 32", per/1024)
	}
}

// TestVectorCatchesCombinations feeds two channels that move together
// (y follows x, x anywhere in its range from one reading to the next):
// a reading with each value usual but y far from x is caught by the vector
// and by no channel alone.
func TestVectorCatchesCombinations(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	vec := NewVector(Config{}, 2)
	cx, cy := NewChannel(Config{}), NewChannel(Config{})
	observe := func(i int, x, y float64) (Result, bool) {
		at := t0.Add(time.Duration(i) * time.Minute)
		single := cx.Observe(at, x).Detected || cy.Observe(at, y).Detected
		return vec.Observe(at, []float64{x, y}), single
	}
	for i := range 2000 {
		x := r.Float64() * 10
		if res, single := observe(i, x, x+r.NormFloat64()*0.1); res.Detected || single {
			t.Fatalf("reading %d (usual) detected: vector %+v, a channel %v", i, res, single)
		}
	}
	res, single := observe(2000, 2, 8)
	if !res.Detected || res.Detector != Cluster || single {
		t.Fatalf("x=2 y=8: vector %+v, a channel %v; want the vector alone", res, single)
	}
	if res := vec.Observe(t0, []float64{1}); res != (Result{}) {
		t.Fatalf("a reading of the wrong size scored %+v", res)
	}
}

// BenchmarkVector is the cost of scoring one reading of three channels
// together.
func BenchmarkVector(b *testing.B) {
	r := rand.New(rand.NewPCG(15, 16))
	v := NewVector(Config{}, 3)
	x := make([]float64, 3)
	for i := range 2000 + b.N {
		if i == 2000 {
			b.ResetTimer()
		}
		x[0], x[1], x[2] = r.Float64(), r.Float64(), r.Float64()
		v.Observe(t0.Add(time.Duration(i)*time.Minute), x)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "readings/s")
}
