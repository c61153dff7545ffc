package models

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/weft-io/weft/anomaly"
)

// ParamsFile is a model's parameters file (JSON); its SHA-256 and size are
// in the signed manifest.
type ParamsFile struct {
	// Kind is the manifest's.
	Kind string `json:"kind"`
	// Channels holds, for KindChannel, the detectors' configuration per
	// channel (anomaly.Config, its zero fields the defaults).
	Channels map[string]anomaly.Config `json:"channels,omitempty"`
	// Vector holds, for KindVector, the detector's configuration and its
	// trained means and centres, over the manifest's channels in order.
	Vector *VectorParams `json:"vector,omitempty"`
	// External holds, for KindExternal, how the edge starts the program.
	External *ExternalParams `json:"external,omitempty"`
}

// ExternalParams is a KindExternal model's parameters: what the edge
// passes to its program. The program itself is the version's ExecFile.
type ExternalParams struct {
	// Args are the program's arguments (after its own path).
	Args []string `json:"args,omitempty"`
	// Threshold is the score from which an answer without "detected"
	// is a detection. Default 0.8 (shadow.DefaultAnomalyThreshold).
	Threshold float64 `json:"threshold,omitempty"`
}

// Limits of ExternalParams.
const (
	MaxExternalArgs = 32
	MaxExternalArg  = 1024
)

// DefaultExternalThreshold is ExternalParams.Threshold's default.
const DefaultExternalThreshold = 0.8

// Check validates the parameters on their own.
func (p *ExternalParams) Check() error {
	if len(p.Args) > MaxExternalArgs {
		return fmt.Errorf("models: %d arguments, at most %d", len(p.Args), MaxExternalArgs)
	}
	for _, a := range p.Args {
		if len(a) > MaxExternalArg || strings.ContainsRune(a, 0) {
			return fmt.Errorf("models: an argument longer than %d bytes or holding NUL", MaxExternalArg)
		}
	}
	if p.Threshold < 0 || p.Threshold > 1 || math.IsNaN(p.Threshold) {
		return fmt.Errorf("models: threshold %v outside [0, 1]", p.Threshold)
	}
	return nil
}

// VectorParams is a KindVector model's parameters.
type VectorParams struct {
	Config anomaly.Config       `json:"config"`
	Params anomaly.VectorParams `json:"params"`
}

// DecodeParams reads a parameters file strictly (unknown fields refused)
// and checks it against the manifest that names it.
func DecodeParams(b []byte, m Manifest) (ParamsFile, error) {
	if len(b) > MaxParamsSize {
		return ParamsFile{}, fmt.Errorf("models: parameters of %d bytes, at most %d", len(b), MaxParamsSize)
	}
	var p ParamsFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return ParamsFile{}, fmt.Errorf("models: parameters: %w", err)
	}
	if p.Kind != m.Kind {
		return ParamsFile{}, fmt.Errorf("models: parameters of kind %q, manifest says %q", p.Kind, m.Kind)
	}
	switch p.Kind {
	case KindChannel:
		for _, c := range m.Channels {
			if _, ok := p.Channels[c]; !ok {
				return ParamsFile{}, fmt.Errorf("models: parameters: no channel %q", c)
			}
		}
	case KindVector:
		if p.Vector == nil {
			return ParamsFile{}, fmt.Errorf("models: parameters: no vector")
		}
		if err := p.Vector.Params.Check(len(m.Channels)); err != nil {
			return ParamsFile{}, fmt.Errorf("models: %w", err)
		}
	case KindExternal:
		if p.External == nil {
			return ParamsFile{}, fmt.Errorf("models: parameters: no external")
		}
		if err := p.External.Check(); err != nil {
			return ParamsFile{}, err
		}
	}
	return p, nil
}

// Scorer scores one device's readings with a model: one anomaly.Channel
// per channel of a KindChannel model, one anomaly.Vector over the
// channels of a KindVector model. It is not safe for concurrent use.
type Scorer struct {
	kind     string
	channels []string
	ch       map[string]*anomaly.Channel
	vec      *anomaly.Vector
	x        []float64
}

// NewScorer returns a scorer with no history for one device.
func NewScorer(m Manifest, p ParamsFile) (*Scorer, error) {
	s := &Scorer{kind: m.Kind, channels: m.Channels}
	switch m.Kind {
	case KindChannel:
		s.ch = map[string]*anomaly.Channel{}
		for _, c := range m.Channels {
			s.ch[c] = anomaly.NewChannel(p.Channels[c])
		}
	case KindVector:
		v, err := anomaly.NewVectorFrom(p.Vector.Config, p.Vector.Params)
		if err != nil {
			return nil, fmt.Errorf("models: %w", err)
		}
		s.vec, s.x = v, make([]float64, len(m.Channels))
	default:
		return nil, fmt.Errorf("models: kind %q", m.Kind)
	}
	return s, nil
}

// Observe scores a reading of the device: the values of its channels at
// t. A channel model scores each of its channels present and returns the
// highest result; a vector model scores only a reading holding all its
// channels. ok is false when nothing was scored.
func (s *Scorer) Observe(t time.Time, values map[string]float64) (r anomaly.Result, ok bool) {
	if s.vec != nil {
		for i, c := range s.channels {
			v, found := values[c]
			if !found {
				return anomaly.Result{}, false
			}
			s.x[i] = v
		}
		return s.vec.Observe(t, s.x), true
	}
	for _, c := range s.channels {
		v, found := values[c]
		if !found {
			continue
		}
		res := s.ch[c].Observe(t, v)
		ok = true
		if res.Score > r.Score {
			r.Score, r.Detector = res.Score, res.Detector
		}
		r.Detected = r.Detected || res.Detected
	}
	return r, ok
}

// Values returns the numeric fields of a telemetry message of device
// published on topic, named as the edge's filter names its channels:
// the field, or "<sub>.<field>" for a message on
// devices/<id>/telemetry/<sub>. Nil when the message is not a JSON object
// on the device's telemetry topic.
func Values(device, topic string, payload []byte) map[string]float64 {
	sub, ok := strings.CutPrefix(topic, "devices/"+device+"/telemetry")
	if device == "" || !ok || sub != "" && sub[0] != '/' {
		return nil
	}
	if v := bytes.TrimLeft(payload, " \t\r\n"); len(v) == 0 || v[0] != '{' {
		return nil
	}
	var fields map[string]any
	if json.Unmarshal(payload, &fields) != nil {
		return nil
	}
	prefix := strings.TrimPrefix(sub, "/")
	if prefix != "" {
		prefix += "."
	}
	out := map[string]float64{}
	for k, raw := range fields {
		if f, ok := raw.(float64); ok && !math.IsNaN(f) && !math.IsInf(f, 0) {
			out[prefix+k] = f
		}
	}
	return out
}

// channelsOf returns the sorted channel names of values.
func channelsOf(values map[string]float64) []string {
	out := make([]string, 0, len(values))
	for k := range values {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
