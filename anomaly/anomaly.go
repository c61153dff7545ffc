// Package anomaly scores streams of numeric readings as they arrive: for
// each channel of a device, detectors compare a reading with what the
// channel did before and each reduces that to a discrepancy score in
// [0, 1]; the channel's score is the highest of them.
//
// The detectors are: level (how far the reading lies beyond the band of the
// channel's recent values, from t-digest quantiles, in units of their
// interquartile spread), change (the same for the size of the step from
// the previous reading), silence (how many long intervals passed since
// the previous reading) and surprise (how far the average of the last
// readings' improbability lies beyond the band of its recent values: a
// run of unlikely readings, a rhythm or a daily pattern that changes).
// Recent means the last few epochs of readings: at each epoch's end the
// band is taken anew from a digest in which older epochs weigh less, so
// a channel that drifts slowly is followed rather than flagged.
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

// Config tunes a channel's detectors. Zero values take the defaults. It
// is also a model's parameters for a channel (package models), in JSON
// with the field names of its tags.
type Config struct {
	// Epoch is the number of readings per epoch. Default 288 (a day of
	// readings every 5 minutes).
	Epoch int `json:"epoch,omitempty"`
	// Epochs is about how many completed epochs make the reference.
	// Default 6.
	Epochs int `json:"epochs,omitempty"`
	// Warmup is the number of readings before any score: a reference
	// needs history. The first epoch ends after it, so the first bands
	// are taken then. Default 150 (half a day of readings every 5
	// minutes), or Epoch if that is shorter.
	Warmup int `json:"warmup,omitempty"`
	// Tail is the probability left out of the band at each end: the band
	// of normal values runs from the Tail quantile to the 1-Tail quantile
	// of the reference. Default 0.001.
	Tail float64 `json:"tail,omitempty"`
	// Margin is how far beyond the band, in interquartile spreads of the
	// reference, a reading scores 1; the score grows linearly from the
	// band's edge. Default 3.
	Margin float64 `json:"margin,omitempty"`
	// Threshold is the score of a detection. Default 0.8.
	Threshold float64 `json:"threshold,omitempty"`
	// Memory is about how many epochs the most extreme values are
	// remembered for: the band reaches out to them, so that an excursion
	// the channel already made (a recurring spike) is no anomaly the next
	// time. Default 20.
	Memory int `json:"memory,omitempty"`
	// Cooldown is the number of readings after a detection during which
	// no other is reported. Default 50.
	Cooldown int `json:"cooldown,omitempty"`
	// Short is the number of readings the surprise detector averages
	// (an exponential average). Default 10.
	Short int `json:"short,omitempty"`
	// SurpriseMargin is how far beyond the band of recent averages, in
	// their interquartile spreads, the surprise detector scores 1.
	// Default 0.2.
	SurpriseMargin float64 `json:"surprise_margin,omitempty"`
}

func (c Config) withDefaults() Config {
	if c.Epoch <= 0 {
		c.Epoch = 288
	}
	if c.Epochs <= 0 {
		c.Epochs = 6
	}
	if c.Warmup <= 0 {
		c.Warmup = min(150, c.Epoch)
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
	if c.Memory <= 0 {
		c.Memory = 20
	}
	if c.Cooldown <= 0 {
		c.Cooldown = 50
	}
	if c.Short <= 0 {
		c.Short = 10
	}
	if c.SurpriseMargin <= 0 {
		c.SurpriseMargin = 0.2
	}
	return c
}

// Detectors, as named in Result.Detector.
const (
	Level    = "level"
	Change   = "change"
	Silence  = "silence"
	Surprise = "surprise"
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
	cooling  cooldown
	level    *reference
	change   *reference
	interval *reference
	surprise *surprise
}

// NewChannel returns a channel with no history.
func NewChannel(cfg Config) *Channel {
	cfg = cfg.withDefaults()
	r := &rng{s: 0x9e3779b97f4a7c15}
	return &Channel{cfg: cfg, level: newReference(cfg, r, true), change: newReference(cfg, r, true), interval: newReference(cfg, r, false),
		surprise: newSurprise(cfg, r)}
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
	// Raw surprise needs the level's quantiles (from the warmup's end)
	// and a previous reading.
	raw := -1.0
	if !first && c.level.ready {
		raw = c.surprise.raw(c, t, v)
	}
	if c.n >= c.cfg.Warmup {
		r.consider(Surprise, c.surprise.score(raw))
		r.consider(Level, c.cfg.bandScore(c.level.excess(v, true)))
		if !first {
			r.consider(Change, c.cfg.bandScore(c.change.excess(math.Abs(v-c.prev), false)))
			if gap := t.Sub(c.prevT).Seconds(); gap > 0 {
				r.consider(Silence, silenceScore(c.interval.ratio(gap)))
			}
		}
	}
	c.surprise.add(c, t, v, raw)
	c.level.add(v)
	if !first {
		c.change.add(math.Abs(v - c.prev))
		if gap := t.Sub(c.prevT).Seconds(); gap > 0 {
			c.interval.add(gap)
		}
	}
	c.n++
	c.prev, c.prevT = v, t
	r.Detected = c.cooling.detect(r.Score, c.cfg)
	return r
}

// cooldown keeps a detector quiet for Cooldown readings after a detection.
type cooldown int

// detect counts one reading and reports whether its score is a detection.
func (c *cooldown) detect(score float64, cfg Config) bool {
	if *c > 0 {
		*c--
	}
	if score < cfg.Threshold || *c > 0 {
		return false
	}
	*c = cooldown(cfg.Cooldown)
	return true
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

// silenceScore maps a gap, in long intervals (the 99th percentile of the
// recent ones), to a score: 0 up to ten, 1 from fifty. A reading or two
// lost, or the pauses of a device that sends in bursts, are no anomaly; a
// device gone quiet for much longer than it ever was is.
func silenceScore(ratio float64) float64 {
	return min(max((ratio-10)/40, 0), 1)
}

// reference is the recent distribution of one quantity: a t-digest whose
// history loses weight at each epoch's end, so that about Epochs epochs
// count, and the quantiles it had then, which the epoch's readings are
// scored against.
type reference struct {
	cfg   Config
	rng   *rng
	d     *tdigest.TDigest
	count int  // readings in this epoch
	ready bool // an epoch has ended: the quantiles hold
	// the band, the quartiles and the 99th percentile at the last
	// epoch's end
	lo, hi, q25, q75, q99 float64
	// peakLo and peakHi are the most extreme values seen, drawn back
	// toward the band at each epoch's end so that they are forgotten
	// over about Memory epochs
	// (only for a reference made with peaks)
	peakLo, peakHi float64
	peaks, peaked  bool
	// recur is set for a reference whose band reaches out only to
	// extremes that came back: to this epoch's extremes (so that an
	// excursion that lasts is reported once) and to the second most
	// extreme of the earlier epochs' extremes (in top), drawn back like
	// the peaks. One past excursion then hides no later one; one that
	// recurs in two epochs, a nightly job, is usual from then on.
	recur bool
	epoch extremes // this epoch's
	top   [2]extremes
}

// extremes are the lowest and the highest of some values; set once it
// holds one.
type extremes struct {
	lo, hi float64
	set    bool
}

func (e *extremes) add(v float64) {
	if !e.set {
		e.lo, e.hi, e.set = v, v, true
	}
	e.lo, e.hi = min(e.lo, v), max(e.hi, v)
}

// remember files an epoch's extremes e among the two most extreme (each
// end on its own), and draws them back toward the band [lo, hi] by
// forget.
func remember(top *[2]extremes, e extremes, lo, hi, forget float64) {
	for i := range top {
		if !top[i].set {
			top[i] = extremes{lo: lo, hi: hi, set: true}
		}
	}
	if e.set {
		if e.hi > top[0].hi {
			top[1].hi, top[0].hi = top[0].hi, e.hi
		} else if e.hi > top[1].hi {
			top[1].hi = e.hi
		}
		if e.lo < top[0].lo {
			top[1].lo, top[0].lo = top[0].lo, e.lo
		} else if e.lo < top[1].lo {
			top[1].lo = e.lo
		}
	}
	for i := range top {
		top[i].hi -= (top[i].hi - hi) * forget
		top[i].lo += (lo - top[i].lo) * forget
	}
}

// unit is the weight of one reading in a digest: large, so that decayed
// weights keep their resolution.
const unit = 1 << 10

// newReference returns an empty reference; with peaks, its band reaches
// out to the remembered extremes.
func newReference(cfg Config, r *rng, peaks bool) *reference {
	return &reference{cfg: cfg, rng: r, d: newDigest(r), peaks: peaks}
}

// NewDigest returns a small t-digest (compression 20, a few KiB) with a
// random source of its own of a few bytes, for summaries kept per channel.
func NewDigest() *tdigest.TDigest { return newDigest(&rng{s: 0x9e3779b97f4a7c15}) }

func newDigest(r *rng) *tdigest.TDigest {
	d, err := tdigest.New(tdigest.Compression(digestCompression), tdigest.RandomNumberGenerator(r))
	if err != nil {
		panic(err) // only for a bad compression
	}
	return d
}

// digestCompression keeps a channel small (a digest preallocates ten
// centroids per unit) while its tails stay exact to a few readings.
const digestCompression = 20

func (r *reference) add(v float64) {
	r.d.AddWeighted(v, unit)
	r.count++
	if r.peaks && !r.peaked {
		r.peakLo, r.peakHi, r.peaked = v, v, true
	}
	if r.peaked {
		r.peakLo, r.peakHi = min(r.peakLo, v), max(r.peakHi, v)
		if r.recur {
			r.epoch.add(v)
		}
	}
	if r.count < r.cfg.Epoch && (r.ready || r.count < r.cfg.Warmup) {
		return
	}
	d := r.d
	r.lo, r.hi = d.Quantile(r.cfg.Tail), d.Quantile(1-r.cfg.Tail)
	r.q25, r.q75, r.q99 = d.Quantile(0.25), d.Quantile(0.75), d.Quantile(0.99)
	r.ready = true
	if r.peaked {
		forget := 1 / float64(r.cfg.Memory)
		r.peakHi -= (r.peakHi - r.hi) * forget
		r.peakLo += (r.lo - r.peakLo) * forget
		if r.recur {
			remember(&r.top, r.epoch, r.lo, r.hi, forget)
			r.epoch = extremes{}
		}
	} else {
		r.peakLo, r.peakHi = r.lo, r.hi
	}
	keep := 1 - 1/float64(r.cfg.Epochs)
	r.d, r.count = newDigest(r.rng), 0
	d.ForEachCentroid(func(mean float64, count uint64) bool {
		if c := uint64(float64(count) * keep); c > 0 {
			r.d.AddWeighted(mean, c)
		}
		return true
	})
}

// rng is the small random source a channel's digests share (they use it
// to break ties when merging centroids): a xorshift generator.
type rng struct{ s uint64 }

func (r *rng) next() uint64 {
	r.s ^= r.s << 13
	r.s ^= r.s >> 7
	r.s ^= r.s << 17
	return r.s
}

func (r *rng) Float32() float32 { return float32(r.next()>>40) / (1 << 24) }
func (r *rng) Intn(n int) int   { return int(r.next() % uint64(n)) }

// rangeFloor is the smallest spread, as a share of the range between the
// remembered extremes: a channel whose values sit on a few quantized
// levels between rare excursions has an interquartile spread of one
// quantization step, against which any excursion a little beyond the
// last one would be far.
const rangeFloor = 0.03

// excess is how far v lies beyond the reference's band widened to the
// remembered extremes (above it; with twoSided, below it too), in
// interquartile spreads; 0 inside, -1 before the first epoch's end. A
// reference with no spread (a constant) uses a tiny one, so that any move
// away from the constant is far.
func (r *reference) excess(v float64, twoSided bool) float64 {
	if !r.ready {
		return -1
	}
	spread := max(r.q75-r.q25, (r.peakHi-r.peakLo)*rangeFloor)
	if spread <= 0 {
		spread = (r.hi - r.lo) / 4
	}
	if spread <= 0 {
		spread = max(math.Abs(r.hi)*1e-6, 1e-12)
	}
	lower, upper := r.peakLo, r.peakHi
	if r.recur && r.top[1].set {
		lower, upper = r.top[1].lo, r.top[1].hi
		if r.epoch.set {
			lower, upper = min(lower, r.epoch.lo), max(upper, r.epoch.hi)
		}
	}
	e := v - max(r.hi, upper)
	if twoSided {
		e = max(e, min(r.lo, lower)-v)
	}
	return max(e, 0) / spread
}

// ratio is v over the reference's 99th percentile; 0 before the first
// epoch's end.
func (r *reference) ratio(v float64) float64 {
	if !r.ready || r.q99 <= 0 {
		return 0
	}
	return v / r.q99
}

// WithDefaults returns c with every zero field set to its default: the
// configuration a channel made with c runs.
func (c Config) WithDefaults() Config { return c.withDefaults() }
