// Package anomaly scores streams of numeric readings as they arrive: for
// each channel of a device, detectors compare a reading with what the
// channel did before and each reduces that to a discrepancy score in
// [0, 1]; the channel's score is the highest of them.
//
// The detectors are: level (how far the reading lies beyond the band of the
// channel's recent values, from t-digest quantiles, in units of their
// interquartile spread), change (the same for the size of the step from
// the previous reading) and silence (how many typical intervals passed
// since the previous reading). Recent means the last few epochs of
// readings: the reference is rebuilt from them at each epoch's end, so a
// channel that drifts slowly is followed rather than flagged.
//
// A reading whose score reaches the threshold is a detection, unless the
// channel reported one within the cooldown: an anomaly that lasts is
// reported once.
package anomaly

import (
	"math"
	"time"

	"github.com/caio/go-tdigest/v4"
)

// Config tunes a channel's detectors. Zero values take the defaults.
type Config struct {
	// Epoch is the number of readings per epoch. Default 288 (a day of
	// readings every 5 minutes).
	Epoch int
	// Epochs is how many completed epochs make the reference. Default 3.
	Epochs int
	// Warmup is the number of readings before any score: a reference
	// needs history. Default Epoch.
	Warmup int
	// Tail is the probability left out of the band at each end: the band
	// of normal values runs from the Tail quantile to the 1-Tail quantile
	// of the reference. Default 0.001.
	Tail float64
	// Margin is how far beyond the band, in interquartile spreads of the
	// reference, a reading scores 1; the score grows linearly from the
	// band's edge. Default 3.
	Margin float64
	// Threshold is the score of a detection. Default 0.8.
	Threshold float64
	// Cooldown is the number of readings after a detection during which
	// no other is reported. Default Epoch.
	Cooldown int
}

func (c Config) withDefaults() Config {
	if c.Epoch <= 0 {
		c.Epoch = 288
	}
	if c.Epochs <= 0 {
		c.Epochs = 3
	}
	if c.Warmup <= 0 {
		c.Warmup = c.Epoch
	}
	if c.Tail <= 0 || c.Tail >= 0.25 {
		c.Tail = 0.001
	}
	if c.Margin <= 0 {
		c.Margin = 3
	}
	if c.Threshold <= 0 || c.Threshold > 1 {
		c.Threshold = 0.8
	}
	if c.Cooldown <= 0 {
		c.Cooldown = c.Epoch
	}
	return c
}

// Detectors, as named in Result.Detector.
const (
	Level   = "level"
	Change  = "change"
	Silence = "silence"
)

// Result is the verdict on one reading.
type Result struct {
	// Score is the highest detector score, in [0, 1].
	Score float64
	// Detector is the detector that gave it ("" when it is 0).
	Detector string
	// Detected is set when the score reaches the threshold outside the
	// cooldown of an earlier detection.
	Detected bool
}

// Channel scores the readings of one channel of one device. It is not
// safe for concurrent use.
type Channel struct {
	cfg      Config
	n        int
	prev     float64
	prevT    time.Time
	cooling  int
	level    *reference
	change   *reference
	interval *reference
}

// NewChannel returns a channel with no history.
func NewChannel(cfg Config) *Channel {
	cfg = cfg.withDefaults()
	return &Channel{cfg: cfg, level: newReference(cfg), change: newReference(cfg), interval: newReference(cfg)}
}

// Observe scores the reading v taken at t and adds it to the history.
// Readings should come in time order; NaN and infinite values are
// ignored (score 0).
func (c *Channel) Observe(t time.Time, v float64) Result {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return Result{}
	}
	var r Result
	first := c.n == 0
	if c.n >= c.cfg.Warmup {
		r.consider(Level, c.cfg.bandScore(c.level.excess(v, true)))
		if !first {
			r.consider(Change, c.cfg.bandScore(c.change.excess(math.Abs(v-c.prev), false)))
			if gap := t.Sub(c.prevT).Seconds(); gap > 0 {
				r.consider(Silence, silenceScore(c.interval.ratio(gap)))
			}
		}
	}
	c.level.add(v)
	if !first {
		c.change.add(math.Abs(v - c.prev))
		if gap := t.Sub(c.prevT).Seconds(); gap > 0 {
			c.interval.add(gap)
		}
	}
	c.n++
	c.prev, c.prevT = v, t
	if c.cooling > 0 {
		c.cooling--
	}
	if r.Score >= c.cfg.Threshold && c.cooling == 0 {
		r.Detected = true
		c.cooling = c.cfg.Cooldown
	}
	return r
}

func (r *Result) consider(detector string, score float64) {
	if score > r.Score {
		r.Score, r.Detector = score, detector
	}
}

// bandScore maps how far a value lies beyond the band, in spreads, to a
// score: 0 inside, 1 from Margin on.
func (c Config) bandScore(excess float64) float64 {
	return min(max(excess/c.Margin, 0), 1)
}

// silenceScore maps a gap, in typical intervals, to a score: 0 up to ten,
// 1 from fifty. A reading or two lost is no anomaly; a device gone quiet
// for much longer than it ever was is.
func silenceScore(ratio float64) float64 {
	return min(max((ratio-10)/40, 0), 1)
}

// reference is the recent distribution of one quantity: the completed
// epochs' digests merged, and the epoch being filled.
type reference struct {
	cfg     Config
	epochs  []*tdigest.TDigest
	current *tdigest.TDigest
	merged  *tdigest.TDigest
	count   int
}

func newReference(cfg Config) *reference {
	return &reference{cfg: cfg, current: newDigest()}
}

func newDigest() *tdigest.TDigest {
	d, err := tdigest.New(tdigest.Compression(100), tdigest.LocalRandomNumberGenerator(1))
	if err != nil {
		panic(err) // only for a bad compression
	}
	return d
}

func (r *reference) add(v float64) {
	r.current.Add(v)
	r.count++
	if r.count < r.cfg.Epoch {
		return
	}
	r.epochs = append(r.epochs, r.current)
	if len(r.epochs) > r.cfg.Epochs {
		r.epochs = r.epochs[1:]
	}
	r.current, r.count = newDigest(), 0
	r.merged = newDigest()
	for _, d := range r.epochs {
		r.merged.Merge(d)
	}
}

// digest is the reference to score against: the merged epochs, or the
// epoch being filled before one is complete; nil with neither.
func (r *reference) digest() *tdigest.TDigest {
	if r.merged != nil {
		return r.merged
	}
	if r.current.Count() > 0 {
		return r.current
	}
	return nil
}

// excess is how far v lies beyond the reference's band (above it; with
// twoSided, below it too), in interquartile spreads; 0 inside, -1 without
// a reference. A reference with no spread (a constant) uses a tiny one, so
// that any move away from the constant is far.
func (r *reference) excess(v float64, twoSided bool) float64 {
	d := r.digest()
	if d == nil {
		return -1
	}
	lo, hi := d.Quantile(r.cfg.Tail), d.Quantile(1-r.cfg.Tail)
	spread := d.Quantile(0.75) - d.Quantile(0.25)
	if spread <= 0 {
		spread = (hi - lo) / 4
	}
	if spread <= 0 {
		spread = max(math.Abs(hi)*1e-6, 1e-12)
	}
	e := v - hi
	if twoSided {
		e = max(e, lo-v)
	}
	return max(e, 0) / spread
}

// ratio is v over the reference's median; 0 without a reference.
func (r *reference) ratio(v float64) float64 {
	d := r.digest()
	if d == nil {
		return 0
	}
	m := d.Quantile(0.5)
	if m <= 0 {
		return 0
	}
	return v / m
}
