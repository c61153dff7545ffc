package anomaly

import (
	"fmt"
	"math"
	"slices"
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

// VectorParams is what a Vector learnt: each channel's running mean and
// variance and the k-means centres in units of deviation, with how many
// readings each centre took. A trained model carries them (package
// models) so that a Vector starts from them instead of from nothing.
type VectorParams struct {
	Mean    []float64   `json:"mean"`
	Var     []float64   `json:"var"`
	Centres [][]float64 `json:"centres"`
	Counts  []float64   `json:"counts"`
	// Readings is how many readings it learnt from.
	Readings int `json:"readings"`
}

// Check reports whether p fits a vector of dims channels.
func (p VectorParams) Check(dims int) error {
	if dims <= 0 || len(p.Mean) != dims || len(p.Var) != dims {
		return fmt.Errorf("anomaly: vector parameters: %d means and %d variances for %d channels", len(p.Mean), len(p.Var), dims)
	}
	if len(p.Centres) > vectorCentres || len(p.Counts) != len(p.Centres) {
		return fmt.Errorf("anomaly: vector parameters: %d centres and %d counts, at most %d", len(p.Centres), len(p.Counts), vectorCentres)
	}
	for _, c := range p.Centres {
		if len(c) != dims {
			return fmt.Errorf("anomaly: vector parameters: a centre of %d channels for %d", len(c), dims)
		}
	}
	for _, f := range slices.Concat(p.Mean, p.Var, p.Counts, slices.Concat(p.Centres...)) {
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("anomaly: vector parameters: %v", f)
		}
	}
	return nil
}

// NewVectorFrom returns a vector that starts from what p holds, as if
// it had learnt p.Readings readings; its band of distances is learnt
// anew, over its first epoch, before it scores.
func NewVectorFrom(cfg Config, p VectorParams) (*Vector, error) {
	if err := p.Check(len(p.Mean)); err != nil {
		return nil, err
	}
	v := NewVector(cfg, len(p.Mean))
	copy(v.mean, p.Mean)
	copy(v.vari, p.Var)
	for i, c := range p.Centres {
		v.centres = append(v.centres, slices.Clone(c))
		v.counts = append(v.counts, max(p.Counts[i], 1))
	}
	v.n = max(p.Readings, 0)
	return v, nil
}

// Params returns what v learnt so far.
func (v *Vector) Params() VectorParams {
	p := VectorParams{Mean: slices.Clone(v.mean), Var: slices.Clone(v.vari), Counts: slices.Clone(v.counts), Readings: v.n}
	for _, c := range v.centres {
		p.Centres = append(p.Centres, slices.Clone(c))
	}
	return p
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
