package anomaly

import (
	"math"
	"time"
)

// Cluster is the detector of a Vector.
const Cluster = "cluster"

// vectorCentres is the number of k-means centres of a Vector.
const vectorCentres = 8

// Vector scores readings of several channels of one device taken
// together, which catches what no channel shows alone (each value usual,
// their combination not). It keeps online k-means centres of the readings,
// each channel scaled by its running mean and deviation, and scores the
// distance to the nearest centre against the band of recent distances,
// like the level detector. It is not safe for concurrent use.
type Vector struct {
	cfg     Config
	dims    int
	n       int
	cooling cooldown
	// running mean and variance per channel, forgetting over about an
	// epoch
	mean, vari []float64
	centres    [][]float64
	counts     []float64
	dist       *reference
	z          []float64
}

// NewVector returns a vector of dims channels with no history.
func NewVector(cfg Config, dims int) *Vector {
	cfg = cfg.withDefaults()
	v := &Vector{cfg: cfg, dims: dims, mean: make([]float64, dims), vari: make([]float64, dims), z: make([]float64, dims),
		dist: newReference(cfg, &rng{s: 0x2545f4914f6cdd1d}, false)}
	return v
}

// Dims is the number of channels of the vector.
func (v *Vector) Dims() int { return v.dims }

// Observe scores the readings x (one per channel, in a fixed order) taken
// at t and learns from them. A reading with a NaN or infinite value is
// ignored (score 0).
func (v *Vector) Observe(t time.Time, x []float64) Result {
	if len(x) != v.dims {
		return Result{}
	}
	for _, f := range x {
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return Result{}
		}
	}
	v.scale(x)
	var r Result
	c, d := v.nearest()
	if v.n >= v.cfg.Warmup && c >= 0 {
		r.consider(Cluster, v.cfg.bandScore(v.dist.excess(d, false)))
	}
	v.learn(c, d)
	v.n++
	r.Detected = v.cooling.detect(r.Score, v.cfg)
	return r
}

// scale updates the channels' running mean and variance and puts the
// readings in units of deviation into v.z.
func (v *Vector) scale(x []float64) {
	a := 1 / float64(min(v.n+1, v.cfg.Epoch))
	for i, f := range x {
		delta := f - v.mean[i]
		v.mean[i] += a * delta
		v.vari[i] = (1 - a) * (v.vari[i] + a*delta*delta)
		sd := math.Sqrt(v.vari[i])
		if sd <= 0 {
			sd = max(math.Abs(v.mean[i])*1e-6, 1e-12)
		}
		v.z[i] = (f - v.mean[i]) / sd
	}
}

// nearest returns the centre nearest to v.z and its distance; -1 with no
// centre yet.
func (v *Vector) nearest() (int, float64) {
	best, bd := -1, math.Inf(1)
	for i, c := range v.centres {
		d := 0.0
		for j, z := range v.z {
			d += (z - c[j]) * (z - c[j])
		}
		if d < bd {
			best, bd = i, d
		}
	}
	return best, math.Sqrt(bd)
}

// learn moves the nearest centre toward the reading, or makes the reading
// a centre while there are fewer than vectorCentres, and adds the distance
// to the reference.
func (v *Vector) learn(c int, d float64) {
	if len(v.centres) < vectorCentres && (c < 0 || d > 0) {
		v.centres = append(v.centres, append([]float64(nil), v.z...))
		v.counts = append(v.counts, 1)
		return
	}
	v.dist.add(d)
	v.counts[c]++
	rate := 1 / min(v.counts[c], float64(v.cfg.Epoch))
	for j, z := range v.z {
		v.centres[c][j] += rate * (z - v.centres[c][j])
	}
}
