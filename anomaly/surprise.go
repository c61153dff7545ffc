package anomaly

import (
	"math"
	"time"
)

// The surprise detector, in the spirit of NAB's anomaly likelihood: each
// reading gets a raw surprise, the improbability of the reading under
// four small models of the channel, as -ln of a tail probability; the
// detector averages it over the last few readings and scores that average
// against the band of its recent values, like the level detector scores a
// reading. One improbable reading barely moves the average; a run of them
// does, so it catches what lies inside the usual range yet is not usual:
// a daily pattern that does not come, spikes that come more often, a
// rhythm or a spread that changes. Because the band reaches out to the
// high averages that came back (the second highest of the earlier
// epochs' highest, remembered over about Memory epochs), a burst of
// surprise the channel had in two epochs, a nightly job, is no anomaly
// the next time, while a single earlier burst (an anomaly already
// reported) hides no later one.
//
// The four models, each a tail probability:
//
//   - value: how far in either tail of the recent values (the level
//     digest) the reading lies;
//   - step: how far in the upper tail of the recent steps (the change
//     digest) its step from the previous reading lies;
//   - daily: its distance to the reading of the same five minutes of the
//     previous day, against the mean of such distances (an exponential
//     tail);
//   - transition: how often the channel went from the previous reading's
//     tenth of the band of values to this one's (a first-order Markov
//     chain over ten bins of equal width between the band's ends, which
//     stay put for an epoch; counts forget over about Epochs epochs).
//
// The raw surprise is the largest of the four, capped at -ln(surpriseCap):
// a digest of a few epochs resolves tail probabilities down to about a
// thousandth, no further. The detector scores only once its band has
// seen two epochs of averages: a band of fewer is crossed by chance.

// surpriseCap is the smallest tail probability a raw surprise tells apart.
const surpriseCap = 1e-3

// markovBins is the number of quantile bins of the transition model.
const markovBins = 10

// daySlots is the number of five-minute slots of a day the daily model
// remembers a reading for.
const daySlots = 24 * 60 / 5

type surprise struct {
	cfg Config
	// short is the exponential average of the raw surprise over about
	// Short readings; ref is its recent distribution, with peaks.
	short float64
	ref   *reference
	seen  int // averages ref has learnt, up to two epochs
	// day holds the last reading of each five-minute slot of the day;
	// dayDist is the mean distance of a reading to it, over about
	// Epoch*Epochs readings, and dayN how many distances it holds.
	day     [daySlots]float32
	daySet  [daySlots]bool
	dayDist float64
	dayN    int
	// trans counts the transitions between bins, forgetting;
	// rowTot is each row's sum and bin the previous reading's bin.
	trans  [markovBins][markovBins]float32
	rowTot [markovBins]float32
	bin    int
}

func newSurprise(cfg Config, r *rng) *surprise {
	ref := newReference(cfg, r, true)
	ref.recur = true
	return &surprise{cfg: cfg, ref: ref}
}

// slot is the five-minute slot of the day of t.
func slot(t time.Time) int {
	return int(t.Unix()%86400+86400) % 86400 / 300
}

// surpriseOf is -ln p for a tail probability p, capped.
func surpriseOf(p float64) float64 {
	return -math.Log(max(p, surpriseCap))
}

// raw is the raw surprise of the reading v at t of channel c, before it
// is learnt; c's level digest must hold a band.
func (s *surprise) raw(c *Channel, t time.Time, v float64) float64 {
	u := c.level.d.CDF(v)
	if math.IsNaN(u) {
		return -1
	}
	out := surpriseOf(2 * min(u, 1-u))
	if step := c.change.d.CDF(math.Abs(v - c.prev)); !math.IsNaN(step) {
		out = max(out, surpriseOf(1-step))
	}
	if i := slot(t); s.daySet[i] && s.dayN > 50 && s.dayDist > 0 {
		out = max(out, surpriseOf(math.Exp(-math.Abs(v-float64(s.day[i]))/s.dayDist)))
	}
	if tot := s.rowTot[s.bin]; tot > 0 {
		p := (float64(s.trans[s.bin][binOf(c.level, v)]) + 0.1) / (float64(tot) + 0.1*markovBins)
		out = max(out, surpriseOf(p))
	}
	return out
}

// binOf is the transition model's bin of v: its tenth of r's band.
func binOf(r *reference, v float64) int {
	if r.hi <= r.lo {
		return 0
	}
	return min(max(int((v-r.lo)/(r.hi-r.lo)*markovBins), 0), markovBins-1)
}

// score is the surprise detector's score of a reading of raw surprise
// raw (negative: none).
func (s *surprise) score(raw float64) float64 {
	if raw < 0 || s.seen < 2*s.cfg.Epoch {
		return 0
	}
	short := s.short + (raw-s.short)/float64(s.cfg.Short)
	return min(max(s.ref.excess(short, false)/s.cfg.SurpriseMargin, 0), 1)
}

// add learns the reading v at t of channel c, of raw surprise raw
// (negative: none), before c's digests learn it.
func (s *surprise) add(c *Channel, t time.Time, v, raw float64) {
	if raw >= 0 {
		s.short += (raw - s.short) / float64(s.cfg.Short)
		s.ref.add(s.short)
		s.seen = min(s.seen+1, 2*s.cfg.Epoch)
	}
	history := float64(s.cfg.Epoch * s.cfg.Epochs)
	i := slot(t)
	if s.daySet[i] {
		s.dayN++
		s.dayDist += (math.Abs(v-float64(s.day[i])) - s.dayDist) / min(float64(s.dayN), history)
	}
	s.day[i], s.daySet[i] = float32(v), true
	if !c.level.ready {
		return
	}
	b := binOf(c.level, v)
	if s.rowTot[s.bin] > 0 {
		keep := float32(1 - 1/history)
		for j := range s.trans[s.bin] {
			s.trans[s.bin][j] *= keep
		}
		s.rowTot[s.bin] *= keep
	}
	s.trans[s.bin][b]++
	s.rowTot[s.bin]++
	s.bin = b
}
