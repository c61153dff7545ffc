package edge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"time"

	"github.com/weft-io/weft/anomaly"
	"github.com/weft-io/weft/gateway"
	"github.com/weft-io/weft/shadow"
	"github.com/weft-io/weft/store"
)

// scoreGroup is the consumer group under which the scorer records how far
// it has read the edge's events.
const scoreGroup = "anomaly"

// scoreStep is how far a device's score moves before its shadow is
// written again (crossing the detection threshold always writes).
const scoreStep = 0.1

// Detection is the record of an anomaly the edge detected, appended to
// /uplink/events (topic: the edge's name), which goes to the core.
type Detection struct {
	Type     string    `json:"type"` // "anomaly"
	Device   string    `json:"device"`
	Class    string    `json:"class,omitempty"`
	Channel  string    `json:"channel"`
	Detector string    `json:"detector"`
	Score    float64   `json:"score"`
	Value    float64   `json:"value"`
	At       time.Time `json:"at"`
}

// scorer follows the edge's /telemetry/events and scores each numeric
// field of the devices' telemetry with package anomaly, one channel per
// device and field. It writes a device's score (the highest of its
// channels' latest) into the device's shadow when it moves, so that it
// reaches the core with the shadow's changes, and appends each detection
// to /uplink/events. Its position is a consumer cursor, moved after the
// writes: after a crash it reads some messages again. The channels'
// history is in memory: after a restart they warm up again.
type scorer struct {
	st        *store.Store
	topic     string // the edge's name
	cfg       anomaly.Config
	threshold float64
	log       *slog.Logger

	channels map[string]*anomaly.Channel   // device + "\x00" + channel
	latest   map[string]map[string]float64 // device -> channel -> score
	written  map[string]float64            // device -> score in its shadow
}

func newScorer(st *store.Store, topic string, cfg anomaly.Config, log *slog.Logger) *scorer {
	threshold := cfg.Threshold
	if threshold <= 0 || threshold > 1 {
		threshold = shadow.DefaultAnomalyThreshold
	}
	cfg.Threshold = threshold
	return &scorer{st: st, topic: topic, cfg: cfg, threshold: threshold, log: log,
		channels: map[string]*anomaly.Channel{}, latest: map[string]map[string]float64{}, written: map[string]float64{}}
}

func (s *scorer) run(ctx context.Context) error {
	events := s.st.Stream(store.EventsStream)
	from, _, err := events.Cursor(ctx, scoreGroup, s.topic, 0)
	if err != nil {
		return err
	}
	for {
		msgs, err := events.ReadWait(ctx, s.topic, 0, from, store.ReadOptions{Limit: 1000})
		if errors.Is(err, store.ErrTrimmed) {
			low, _, berr := events.Bounds(ctx, s.topic, 0)
			if berr != nil {
				return berr
			}
			s.log.Warn("events trimmed before they were scored", "from", from, "to", low)
			from = low
			continue
		}
		if err != nil {
			return err
		}
		var found []store.Message
		for _, m := range msgs {
			d, err := s.observe(ctx, m)
			if err != nil {
				return err
			}
			found = append(found, d...)
		}
		if len(found) > 0 {
			if _, err := s.st.Stream(store.UplinkStream).Append(ctx, s.topic, found...); err != nil {
				return fmt.Errorf("edge: anomalies to the uplink: %w", err)
			}
		}
		from = msgs[len(msgs)-1].Offset + 1
		if err := events.SetCursor(ctx, scoreGroup, s.topic, 0, from); err != nil {
			return err
		}
	}
}

// observe scores one event: the numeric fields of a telemetry message. It
// returns the detections to append and writes the device's score into its
// shadow when it has moved.
func (s *scorer) observe(ctx context.Context, m store.Message) ([]store.Message, error) {
	dev := m.Headers[gateway.HeaderDevice]
	sub, ok := strings.CutPrefix(m.Headers[gateway.HeaderTopic], "devices/"+dev+"/telemetry")
	if dev == "" || !ok || sub != "" && sub[0] != '/' {
		return nil, nil
	}
	if v := bytes.TrimLeft(m.Value, " \t\r\n"); len(v) == 0 || v[0] != '{' {
		return nil, nil // not a JSON object: nothing to score
	}
	var fields map[string]any
	if json.Unmarshal(m.Value, &fields) != nil {
		return nil, nil
	}
	prefix := strings.TrimPrefix(sub, "/")
	if prefix != "" {
		prefix += "."
	}
	var found []store.Message
	for field, raw := range fields {
		v, ok := raw.(float64)
		if !ok {
			continue
		}
		name := prefix + field
		key := dev + "\x00" + name
		ch := s.channels[key]
		if ch == nil {
			ch = anomaly.NewChannel(s.cfg)
			s.channels[key] = ch
		}
		res := ch.Observe(m.Timestamp, v)
		if s.latest[dev] == nil {
			s.latest[dev] = map[string]float64{}
		}
		s.latest[dev][name] = res.Score
		if !res.Detected {
			continue
		}
		b, _ := json.Marshal(Detection{Type: "anomaly", Device: dev, Class: m.Headers[gateway.HeaderClass], Channel: name,
			Detector: res.Detector, Score: res.Score, Value: v, At: m.Timestamp})
		found = append(found, store.Message{Key: []byte(dev), Value: b, Timestamp: m.Timestamp,
			Headers: map[string]string{gateway.HeaderDevice: dev, "type": "anomaly"}})
	}
	return found, s.writeScore(ctx, dev)
}

// writeScore puts the device's score into its shadow if it moved by
// scoreStep or crossed the threshold since it was last written.
func (s *scorer) writeScore(ctx context.Context, dev string) error {
	score := 0.0
	for _, v := range s.latest[dev] {
		score = max(score, v)
	}
	old, ok := s.written[dev]
	if ok && math.Abs(score-old) < scoreStep && (old >= s.threshold) == (score >= s.threshold) {
		return nil
	}
	patch := fmt.Appendf(nil, `{%q:%g}`, shadow.FieldScore, math.Round(score*1000)/1000)
	if _, err := s.st.Table(store.ShadowsTable).Patch(ctx, dev, patch); err != nil {
		return fmt.Errorf("edge: score of %s: %w", dev, err)
	}
	s.written[dev] = score
	return nil
}
