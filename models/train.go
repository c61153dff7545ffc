package models

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/weft-io/weft/anomaly"
)

// Reading is one telemetry message of a device: its numeric fields.
type Reading struct {
	Device string
	At     time.Time
	Values map[string]float64
}

// TrainConfig is what to fit.
type TrainConfig struct {
	// Kind is KindChannel (default) or KindVector.
	Kind string
	// Channels limits the model to these channels; empty: every channel
	// seen in at least half of the readings, at most MaxChannels (a
	// vector takes at most MaxVectorChannels of them).
	Channels []string
	// FalseAlarms is how many detections per week of a device's readings
	// the training window, taken as normal, may raise before the
	// threshold goes up. Default 1.
	FalseAlarms float64
}

// MaxVectorChannels bounds a vector model's channels.
const MaxVectorChannels = 16

// Thresholds are the detection thresholds training tries, lowest first.
var Thresholds = []float64{0.8, 0.85, 0.9, 0.95, 1}

// ChannelReport is how a trained model scores the training window on one
// channel (for a vector model, the channel is the channels joined by
// "+").
type ChannelReport struct {
	Channel  string `json:"channel"`
	Readings int64  `json:"readings"`
	// Detections is what the model detects on the window; Defaults what
	// the built-in defaults detect.
	Detections int64 `json:"detections"`
	Defaults   int64 `json:"defaults_detections"`
	// ScoreP50, ScoreP99 and ScoreMax are the model's score quantiles.
	ScoreP50 float64 `json:"score_p50"`
	ScoreP99 float64 `json:"score_p99"`
	ScoreMax float64 `json:"score_max"`
	// Epoch and Threshold are the fitted parameters.
	Epoch     int     `json:"epoch,omitempty"`
	Threshold float64 `json:"threshold"`
}

// Report is how a trained model scores its training window.
type Report struct {
	Channels []ChannelReport `json:"channels"`
}

// Trained is the outcome of Train: the parameters file, the manifest's
// fields that describe it (without name, version, class, created-at and
// key), and the report.
type Trained struct {
	Params   []byte
	Manifest Manifest
	Report   Report
}

// ErrNoData is Train's error when the readings hold nothing to fit.
var ErrNoData = fmt.Errorf("models: no readings to train on")

// Train fits a model of cfg.Kind on readings (any order) and reports how
// it scores them. It is a pure function: readings in, parameters out.
//
// A channel model fits per channel the epoch (the readings a day, from
// the median interval between a device's readings) and the threshold
// (the lowest of Thresholds at which the window raises at most
// FalseAlarms detections per week of each device's readings); the other
// settings keep their defaults. A vector model learns its means and
// k-means centres over every device's readings in time order.
func Train(readings []Reading, cfg TrainConfig) (Trained, error) {
	if cfg.Kind == "" {
		cfg.Kind = KindChannel
	}
	if cfg.FalseAlarms <= 0 {
		cfg.FalseAlarms = 1
	}
	if cfg.Kind != KindChannel && cfg.Kind != KindVector {
		return Trained{}, fmt.Errorf("models: kind %q", cfg.Kind)
	}
	readings = slices.Clone(readings)
	slices.SortStableFunc(readings, func(a, b Reading) int {
		return cmp.Or(cmp.Compare(a.Device, b.Device), a.At.Compare(b.At))
	})
	channels := cfg.Channels
	if len(channels) == 0 {
		channels = commonChannels(readings)
	}
	if cfg.Kind == KindVector && len(channels) > MaxVectorChannels {
		channels = channels[:MaxVectorChannels]
	}
	if len(channels) == 0 || len(readings) == 0 {
		return Trained{}, ErrNoData
	}
	if len(channels) > MaxChannels {
		return Trained{}, fmt.Errorf("models: %d channels, at most %d", len(channels), MaxChannels)
	}
	devices := map[string]bool{}
	for _, r := range readings {
		devices[r.Device] = true
	}
	m := Manifest{Kind: cfg.Kind, Channels: channels, Training: Training{
		From: readings[0].At, To: readings[0].At, Devices: len(devices), Readings: int64(len(readings))}}
	for _, r := range readings {
		if r.At.Before(m.Training.From) {
			m.Training.From = r.At
		}
		if r.At.After(m.Training.To) {
			m.Training.To = r.At
		}
	}
	for _, c := range channels {
		m.Training.Summary = append(m.Training.Summary, summarize(c, readings))
	}
	var pf ParamsFile
	var rep Report
	switch cfg.Kind {
	case KindChannel:
		pf = ParamsFile{Kind: KindChannel, Channels: map[string]anomaly.Config{}}
		for _, c := range channels {
			conf, cr := fitChannel(c, readings, cfg.FalseAlarms)
			pf.Channels[c] = conf
			rep.Channels = append(rep.Channels, cr)
		}
	case KindVector:
		vp, cr, err := fitVector(channels, readings)
		if err != nil {
			return Trained{}, err
		}
		pf = ParamsFile{Kind: KindVector, Vector: &vp}
		rep.Channels = append(rep.Channels, cr)
	}
	m.Training.Scores = scoreQuantiles(trainingScores(m, pf, readings))
	b, err := json.Marshal(pf)
	if err != nil {
		return Trained{}, fmt.Errorf("models: encode parameters: %w", err)
	}
	return Trained{Params: b, Manifest: m, Report: rep}, nil
}

// commonChannels returns the channels present in at least half of the
// readings, sorted, at most MaxChannels.
func commonChannels(readings []Reading) []string {
	n := map[string]int{}
	for _, r := range readings {
		for c := range r.Values {
			n[c]++
		}
	}
	var out []string
	for c, k := range n {
		if 2*k >= len(readings) && ValidName(c) {
			out = append(out, c)
		}
	}
	slices.Sort(out)
	if len(out) > MaxChannels {
		out = out[:MaxChannels]
	}
	return out
}

// series returns each device's points of channel c, in time order
// (readings are sorted by device then time).
func series(c string, readings []Reading) [][]anomaly.Point {
	var out [][]anomaly.Point
	dev := ""
	for _, r := range readings {
		v, ok := r.Values[c]
		if !ok {
			continue
		}
		if len(out) == 0 || r.Device != dev {
			out = append(out, nil)
			dev = r.Device
		}
		out[len(out)-1] = append(out[len(out)-1], anomaly.Point{At: r.At, Value: v})
	}
	return out
}

func summarize(c string, readings []Reading) Summary {
	var vals []float64
	for _, r := range readings {
		if v, ok := r.Values[c]; ok {
			vals = append(vals, v)
		}
	}
	s := Summary{Channel: c, Count: int64(len(vals))}
	if len(vals) == 0 {
		return s
	}
	slices.Sort(vals)
	sum := 0.0
	for _, v := range vals {
		sum += v
	}
	q := func(p float64) float64 { return vals[min(int(p*float64(len(vals))), len(vals)-1)] }
	s.Min, s.Max, s.Mean = vals[0], vals[len(vals)-1], sum/float64(len(vals))
	s.P01, s.P50, s.P99 = q(0.01), q(0.5), q(0.99)
	return s
}

// fitChannel fits one channel's epoch and threshold.
func fitChannel(c string, readings []Reading, falseAlarms float64) (anomaly.Config, ChannelReport) {
	ss := series(c, readings)
	var gaps []float64
	for _, s := range ss {
		for i := 1; i < len(s); i++ {
			if g := s[i].At.Sub(s[i-1].At).Seconds(); g > 0 {
				gaps = append(gaps, g)
			}
		}
	}
	var conf anomaly.Config
	if len(gaps) > 0 {
		slices.Sort(gaps)
		median := gaps[len(gaps)/2]
		conf.Epoch = min(max(int(math.Round(86400/median)), 24), 8640)
	}
	def := anomaly.Config{}.WithDefaults()
	budget := 0.0
	for _, s := range ss {
		week := float64(7 * conf.WithDefaults().Epoch)
		budget += max(1, math.Floor(float64(len(s))/week)) * falseAlarms
	}
	defaults, _ := detections(anomaly.Config{}, ss)
	// Scores do not depend on the threshold, only detections do (through
	// the cooldown): one run gives the scores, and each threshold's
	// detections are counted from them.
	_, results := detections(conf, ss)
	conf.Threshold = Thresholds[len(Thresholds)-1]
	for _, th := range Thresholds {
		if float64(countDetections(results, th, def.Cooldown)) <= budget {
			conf.Threshold = th
			break
		}
	}
	if conf.Threshold == def.Threshold {
		conf.Threshold = 0 // the default
	}
	det := countDetections(results, conf.WithDefaults().Threshold, def.Cooldown)
	var scores []float64
	for _, rs := range results {
		for _, r := range rs {
			scores = append(scores, r.Score)
		}
	}
	cr := ChannelReport{Channel: c, Detections: det, Defaults: defaults, Epoch: conf.Epoch, Threshold: conf.WithDefaults().Threshold}
	cr.Readings = int64(len(scores))
	cr.ScoreP50, cr.ScoreP99, cr.ScoreMax = quantiles(scores)
	return conf, cr
}

// detections runs cfg over each series and counts its detections.
func detections(cfg anomaly.Config, ss [][]anomaly.Point) (int64, [][]anomaly.Result) {
	var n int64
	out := make([][]anomaly.Result, len(ss))
	for i, s := range ss {
		out[i] = anomaly.ScoreSeries(cfg, s)
		for _, r := range out[i] {
			if r.Detected {
				n++
			}
		}
	}
	return n, out
}

// countDetections counts what a channel would detect from these scores
// at threshold: a score at or above it, outside the cooldown of the
// previous detection (as anomaly.Channel decides).
func countDetections(results [][]anomaly.Result, threshold float64, cooldown int) int64 {
	var n int64
	for _, rs := range results {
		cool := 0
		for _, r := range rs {
			if cool > 0 {
				cool--
			}
			if r.Score < threshold || cool > 0 {
				continue
			}
			cool = cooldown
			n++
		}
	}
	return n
}

func quantiles(scores []float64) (p50, p99, top float64) {
	if len(scores) == 0 {
		return 0, 0, 0
	}
	s := slices.Clone(scores)
	slices.Sort(s)
	q := func(p float64) float64 { return s[min(int(p*float64(len(s))), len(s)-1)] }
	return q(0.5), q(0.99), s[len(s)-1]
}

// vectorsOf returns each device's readings holding every channel, as
// vectors in time order.
func vectorsOf(channels []string, readings []Reading) (devs [][]Reading) {
	dev := ""
	for _, r := range readings {
		full := true
		for _, c := range channels {
			if _, ok := r.Values[c]; !ok {
				full = false
				break
			}
		}
		if !full {
			continue
		}
		if len(devs) == 0 || r.Device != dev {
			devs = append(devs, nil)
			dev = r.Device
		}
		devs[len(devs)-1] = append(devs[len(devs)-1], r)
	}
	return devs
}

// fitVector learns a vector's means and centres over every device's full
// readings in time order, then scores each device from them.
func fitVector(channels []string, readings []Reading) (VectorParams, ChannelReport, error) {
	devs := vectorsOf(channels, readings)
	var all []Reading
	for _, d := range devs {
		all = append(all, d...)
	}
	if len(all) == 0 {
		return VectorParams{}, ChannelReport{}, ErrNoData
	}
	slices.SortStableFunc(all, func(a, b Reading) int { return a.At.Compare(b.At) })
	cfg := anomaly.Config{}
	v := anomaly.NewVector(cfg, len(channels))
	x := make([]float64, len(channels))
	for _, r := range all {
		for i, c := range channels {
			x[i] = r.Values[c]
		}
		v.Observe(r.At, x)
	}
	vp := VectorParams{Config: cfg, Params: v.Params()}
	m := Manifest{Kind: KindVector, Channels: channels}
	pf := ParamsFile{Kind: KindVector, Vector: &vp}
	cr := ChannelReport{Channel: joinChannels(channels), Threshold: cfg.WithDefaults().Threshold}
	var scores []float64
	for _, d := range devs {
		s, err := NewScorer(m, pf)
		if err != nil {
			return VectorParams{}, ChannelReport{}, err
		}
		def := anomaly.NewVector(cfg, len(channels))
		for _, r := range d {
			res, _ := s.Observe(r.At, r.Values)
			scores = append(scores, res.Score)
			if res.Detected {
				cr.Detections++
			}
			for i, c := range channels {
				x[i] = r.Values[c]
			}
			if def.Observe(r.At, x).Detected {
				cr.Defaults++
			}
		}
	}
	cr.Readings = int64(len(scores))
	cr.ScoreP50, cr.ScoreP99, cr.ScoreMax = quantiles(scores)
	return vp, cr, nil
}

func joinChannels(cs []string) string { return strings.Join(cs, "+") }

// trainingScores scores the readings (sorted by device, then time) with
// the fitted model, each device from a fresh scorer, as an edge would.
func trainingScores(m Manifest, pf ParamsFile, readings []Reading) []float64 {
	var out []float64
	var sc *Scorer
	dev := ""
	for i, r := range readings {
		if i == 0 || r.Device != dev {
			s, err := NewScorer(m, pf)
			if err != nil {
				return nil
			}
			sc, dev = s, r.Device
		}
		if res, ok := sc.Observe(r.At, r.Values); ok {
			out = append(out, res.Score)
		}
	}
	return out
}
