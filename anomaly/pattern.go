package anomaly

import "math"

// The pattern detector, in the manner of ARTime (the adaptive resonance
// theory detector for NAB): it learns the shapes of the recent stretches
// of a channel as the categories of a fuzzy ART network and scores a
// stretch by how poorly the best category matches it.
//
// A stretch is a window of patternWindow elements, each summing up
// patternStep readings by the one furthest from the moving average of the
// elements (so a spike within a step is kept, as ARTime keeps it). Its
// features are the elements on the channel's scale (between the ends of
// the level band, reaching out to the remembered extremes, clamped to
// [0, 1]) and on the window's own scale (its shape: from its lowest to
// its highest element, or a tenth of the band if that is more, so that
// noise is not blown up into a shape), complement coded. A window joins
// the category of highest choice among those it matches within the
// vigilance, which moves toward it by patternRate; one that matches none
// founds a new category, up to patternCats; past that it teaches the
// category that matches it best.
//
// The mismatch (1 - the best category's match) is scored like the
// surprise average is: against the band of recent mismatches reaching
// out to the highest that came back, in units of their interquartile
// spread, 1 at patternMargin spreads beyond it. The network learns
// patternProbation windows before any mismatch counts (everything is new
// at first), and the mismatches' band is taken once it holds as many.
// The state is fixed: patternCats categories of 2*patternDim weights.

// Pattern is the name of the pattern detector in Result.Detector.
const Pattern = "pattern"

// The pattern detector's settings.
const (
	// patternStep is the number of readings in one element of a window.
	patternStep = 4
	// patternProbation is the number of windows learnt before the
	// mismatches are, and of mismatches before any score.
	patternProbation = 36
	// patternVigilance is the match a window needs to join a category.
	patternVigilance = 0.9
	// patternMargin is how far beyond the band of recent mismatches, in
	// their interquartile spreads, a window scores 1.
	patternMargin = 1.2
	// patternShapeFloor is the smallest scale of a window's shape, as a
	// share of the channel's band.
	patternShapeFloor = 0.1
	// patternRate is how far a category moves toward a window it
	// matches (fuzzy ART's beta).
	patternRate = 0.1
)

const (
	// patternWindow is the number of elements in a window.
	patternWindow = 8
	// patternDim is the number of features: the window's elements on
	// the channel's scale and on its own.
	patternDim = 2 * patternWindow
	// patternCats caps the categories a channel keeps.
	patternCats = 48
)

type pattern struct {
	// the element being built: its sum, count and extremes, and the
	// moving average of the elements' means
	acc, lo, hi, avg float64
	accN             int
	ring             [patternWindow]float64 // the last elements, oldest at pos
	pos, filled      int
	seen             int                                 // windows learnt, up to patternProbation
	cats             [patternCats][2 * patternDim]uint16 // weights in 65535ths
	size             [patternCats]float32                // each category's weights summed
	n                int                                 // categories founded
	in               [2 * patternDim]float32
	ref              *reference // the recent mismatches
}

func newPattern(cfg Config, r *rng) pattern {
	c := cfg
	c.Epoch = max(cfg.Epoch/patternStep, 1)
	c.Warmup = min(patternProbation, c.Epoch)
	ref := newReference(c, r, true)
	ref.recur = true
	return pattern{ref: ref}
}

// observe adds v to the element being built; when that completes a
// window, it learns the window and returns its score (else 0). lo and hi
// are the ends of the channel's scale.
func (p *pattern) observe(v, lo, hi float64) float64 {
	if p.accN == 0 {
		p.lo, p.hi = v, v
	}
	p.acc += v
	p.accN++
	p.lo, p.hi = min(p.lo, v), max(p.hi, v)
	if p.accN < patternStep {
		return 0
	}
	mean := p.acc / float64(p.accN)
	if p.filled == 0 && p.pos == 0 {
		p.avg = mean
	}
	p.avg = (p.avg + mean) / 2
	e := p.hi
	if math.Abs(p.lo-p.avg) > math.Abs(p.hi-p.avg) {
		e = p.lo
	}
	p.ring[p.pos] = e
	p.pos = (p.pos + 1) % patternWindow
	p.acc, p.accN = 0, 0
	if p.filled < patternWindow {
		p.filled++
		return 0
	}
	if hi <= lo {
		return 0
	}
	p.features(lo, hi)
	best, bestM := -1, -1.0
	choice, chosen := -1.0, -1
	for j := range p.n {
		var and float32
		for i, x := range p.in {
			and += min(x, float32(p.cats[j][i])*(1.0/weightUnit))
		}
		m := float64(and) / patternDim // the input's norm: complement coded
		if m > bestM {
			best, bestM = j, m
		}
		if m >= patternVigilance {
			if t := float64(and) / (0.001 + float64(p.size[j])); t > choice {
				choice, chosen = t, j
			}
		}
	}
	score := 0.0
	if p.seen < patternProbation {
		p.seen++
	} else if best >= 0 {
		if p.ref.ready {
			score = min(max(p.ref.excess(1-bestM, false)/patternMargin, 0), 1)
		}
		p.ref.add(1 - bestM)
	}
	switch {
	case chosen >= 0:
		p.learn(chosen)
	case p.n < patternCats:
		var s float32
		for i, x := range p.in {
			w := toWeight(x)
			p.cats[p.n][i] = w
			s += float32(w) * (1.0 / weightUnit)
		}
		p.size[p.n] = s
		p.n++
	default:
		p.learn(best)
	}
	return score
}

// features fills the input with the window's features, complement coded.
func (p *pattern) features(lo, hi float64) {
	wlo, whi := p.ring[0], p.ring[0]
	for _, x := range p.ring {
		wlo, whi = min(wlo, x), max(whi, x)
	}
	scale := max(whi-wlo, (hi-lo)*patternShapeFloor)
	for i := range patternWindow {
		x := p.ring[(p.pos+i)%patternWindow]
		p.in[i] = float32(min(max((x-lo)/(hi-lo), 0), 1))
		p.in[patternWindow+i] = float32((x - wlo) / scale)
	}
	for i := range patternDim {
		p.in[patternDim+i] = 1 - p.in[i]
	}
}

// learn moves category j toward the input (fuzzy ART's update).
func (p *pattern) learn(j int) {
	var s float32
	rate := float32(patternRate)
	for i, x := range p.in {
		w := float32(p.cats[j][i]) * (1.0 / weightUnit)
		q := toWeight(w + (min(x, w)-w)*rate)
		p.cats[j][i] = q
		s += float32(q) * (1.0 / weightUnit)
	}
	p.size[j] = s
}

// weightUnit is a category weight of 1: weights are kept in 65535ths,
// which halves a channel's categories against float32 and is finer than
// any match the detector tells apart.
const weightUnit = 65535

// toWeight is the stored weight nearest w in [0, 1].
func toWeight(w float32) uint16 {
	return uint16(min(max(w, 0), 1)*weightUnit + 0.5)
}
