package edge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/caio/go-tdigest/v4"
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

// UplinkFilter is what the edge sends to the core of its devices'
// telemetry, besides each detection: instead of every reading, a summary of
// each device's channels per period, and the readings around each
// detection.
type UplinkFilter struct {
	// Summary is the period of the devices' summaries. Default 15
	// minutes.
	Summary time.Duration
	// Before and After are how many readings of a device before and after
	// one with a detection go up with it. Defaults 10 and 10.
	Before, After int
}

func (f UplinkFilter) withDefaults() UplinkFilter {
	if f.Summary <= 0 {
		f.Summary = 15 * time.Minute
	}
	if f.Before <= 0 {
		f.Before = 10
	}
	if f.After <= 0 {
		f.After = 10
	}
	return f
}

// period gathers a device's readings for its next Summary.
type period struct {
	from, to time.Time
	readings int
	channels map[string]*channelPeriod
}

type channelPeriod struct {
	count                   int
	min, max, sum, maxScore float64
	digest                  *tdigest.TDigest // reset, not renewed, each period
}

// scorer follows the edge's /telemetry/events and scores each numeric
// field of the devices' telemetry with package anomaly, one channel per
// device and field. It writes a device's score (the highest of its
// channels' latest) into the device's shadow when it moves, so that it
// reaches the core with the shadow's changes, and appends to
// /uplink/events each detection with the readings around it, and each
// channel's summary per period (UplinkFilter). Its position is a consumer
// cursor, moved after the writes: after a crash it reads some messages
// again. The channels' history is in memory: after a restart they warm up
// again.
type scorer struct {
	st        *store.Store
	topic     string // the edge's name
	cfg       anomaly.Config
	filter    UplinkFilter
	threshold float64
	log       *slog.Logger

	channels map[string]*anomaly.Channel   // device + "\x00" + channel
	vectors  map[string]*deviceVector      // device -> its channels together
	periods  map[string]*period            // device -> its summary to come
	latest   map[string]map[string]float64 // device -> channel -> score
	written  map[string]scoreWritten       // device -> its shadow's score
	recent   map[string][]store.Message    // device -> its last readings
	after    map[string]int                // device -> readings still to send up
}

func newScorer(st *store.Store, topic string, cfg anomaly.Config, filter UplinkFilter, log *slog.Logger) *scorer {
	threshold := cfg.Threshold
	if threshold <= 0 || threshold > 1 {
		threshold = shadow.DefaultAnomalyThreshold
	}
	cfg.Threshold = threshold
	return &scorer{st: st, topic: topic, cfg: cfg, filter: filter.withDefaults(), threshold: threshold, log: log,
		channels: map[string]*anomaly.Channel{}, vectors: map[string]*deviceVector{}, periods: map[string]*period{}, latest: map[string]map[string]float64{},
		written: map[string]scoreWritten{}, recent: map[string][]store.Message{}, after: map[string]int{}}
}

// scoreWritten is the score last written into a device's shadow, and the
// time of the reading that did.
type scoreWritten struct {
	score float64
	at    time.Time
}

// scoreEvery is how often a device's score may be written into its shadow
// while it stays on one side of the threshold.
const scoreEvery = time.Minute

// warmReplay is how many events before its cursor the scorer reads again
// when it starts, learning from them without reporting, so that its
// channels do not warm up from nothing after a restart.
const warmReplay = 200_000

func (s *scorer) run(ctx context.Context) error {
	events := s.st.Stream(store.EventsStream)
	from, _, err := events.Cursor(ctx, scoreGroup, s.topic, 0)
	if err != nil {
		return err
	}
	if err := s.warm(ctx, events, from); err != nil {
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

// warm reads the events before until again (at most warmReplay of them)
// into the channels and vectors, reporting nothing.
func (s *scorer) warm(ctx context.Context, events *store.Stream, until uint64) error {
	low, _, err := events.Bounds(ctx, s.topic, 0)
	if err != nil {
		return err
	}
	start := max(low, until-min(until, warmReplay))
	for from := start; from < until; {
		msgs, err := events.Read(ctx, s.topic, 0, from, store.ReadOptions{Limit: 1000})
		if err != nil || len(msgs) == 0 {
			return err
		}
		for _, m := range msgs {
			if m.Offset >= until {
				break
			}
			dev, prefix, fields := telemetry(m)
			if fields == nil {
				continue
			}
			for field, raw := range fields {
				if v, ok := raw.(float64); ok {
					s.channel(dev, prefix+field).Observe(m.Timestamp, v)
				}
			}
			s.observeVector(dev, prefix, fields, m.Timestamp)
		}
		from = msgs[len(msgs)-1].Offset + 1
	}
	if until > start {
		s.log.Info("anomaly channels warmed up from the recent events", "events", until-start, "channels", len(s.channels))
	}
	return nil
}

// telemetry returns the device, channel prefix ("" or "<channel>.") and
// fields of an event that is a JSON object published on a device's
// telemetry topic; nil fields otherwise.
func telemetry(m store.Message) (dev, prefix string, fields map[string]any) {
	dev = m.Headers[gateway.HeaderDevice]
	sub, ok := strings.CutPrefix(m.Headers[gateway.HeaderTopic], "devices/"+dev+"/telemetry")
	if dev == "" || !ok || sub != "" && sub[0] != '/' {
		return "", "", nil
	}
	if v := bytes.TrimLeft(m.Value, " \t\r\n"); len(v) == 0 || v[0] != '{' {
		return "", "", nil // not a JSON object: nothing to score
	}
	if json.Unmarshal(m.Value, &fields) != nil {
		return "", "", nil
	}
	if prefix = strings.TrimPrefix(sub, "/"); prefix != "" {
		prefix += "."
	}
	return dev, prefix, fields
}

// channel returns the channel of a device's field, made on first use.
func (s *scorer) channel(dev, name string) *anomaly.Channel {
	key := dev + "\x00" + name
	ch := s.channels[key]
	if ch == nil {
		ch = anomaly.NewChannel(s.cfg)
		s.channels[key] = ch
	}
	return ch
}

// observe scores one event: the numeric fields of a telemetry message. It
// returns the detections to append and writes the device's score into its
// shadow when it has moved.
func (s *scorer) observe(ctx context.Context, m store.Message) ([]store.Message, error) {
	dev, prefix, fields := telemetry(m)
	if fields == nil {
		return nil, nil
	}
	var up []store.Message
	if sum := s.closePeriod(dev, m.Timestamp); sum != nil {
		up = append(up, record(dev, m.Timestamp, anomaly.RecordSummary, sum))
	}
	detected, numeric := false, false
	for field, raw := range fields {
		v, ok := raw.(float64)
		if !ok {
			continue
		}
		numeric = true
		name := prefix + field
		res := s.channel(dev, name).Observe(m.Timestamp, v)
		if s.latest[dev] == nil {
			s.latest[dev] = map[string]float64{}
		}
		s.latest[dev][name] = res.Score
		s.summarize(dev, name, m.Timestamp, v, res.Score)
		if res.Detected {
			detected = true
			up = append(up, record(dev, m.Timestamp, anomaly.RecordAnomaly, anomaly.Detection{Type: anomaly.RecordAnomaly, Device: dev, Class: m.Headers[gateway.HeaderClass],
				Channel: name, Detector: res.Detector, Score: res.Score, Value: v, At: m.Timestamp}))
		}
	}
	if numeric {
		s.periods[dev].readings++
	}
	if res, names, values := s.observeVector(dev, prefix, fields, m.Timestamp); names != "" {
		s.latest[dev][names] = res.Score
		if res.Detected {
			detected = true
			up = append(up, record(dev, m.Timestamp, anomaly.RecordAnomaly, anomaly.Detection{Type: anomaly.RecordAnomaly, Device: dev, Class: m.Headers[gateway.HeaderClass],
				Channel: names, Detector: res.Detector, Score: res.Score, Values: values, At: m.Timestamp}))
		}
	}
	// The context of a detection: the readings before it, it, and those
	// after it.
	switch {
	case detected:
		for _, r := range s.recent[dev] {
			up = append(up, reading(dev, r))
		}
		s.recent[dev] = s.recent[dev][:0]
		up = append(up, reading(dev, m))
		s.after[dev] = s.filter.After
	case s.after[dev] > 0:
		up = append(up, reading(dev, m))
		s.after[dev]--
	default:
		r := append(s.recent[dev], m)
		if len(r) > s.filter.Before {
			r = r[1:]
		}
		s.recent[dev] = r
	}
	return up, s.writeScore(ctx, dev, m.Timestamp)
}

// observeVector scores a reading's numeric fields together (package
// anomaly's Vector, one per device and set of fields); names is "" when
// the reading has fewer than two.
func (s *scorer) observeVector(dev, prefix string, fields map[string]any, at time.Time) (res anomaly.Result, names string, values map[string]float64) {
	var keys []string
	for field, raw := range fields {
		if _, ok := raw.(float64); ok {
			keys = append(keys, field)
		}
	}
	if len(keys) < 2 {
		return res, "", nil
	}
	slices.Sort(keys)
	x := make([]float64, len(keys))
	values = make(map[string]float64, len(keys))
	for i, k := range keys {
		x[i] = fields[k].(float64)
		keys[i] = prefix + k
		values[keys[i]] = x[i]
	}
	names = strings.Join(keys, "+")
	v := s.vectors[dev]
	if v == nil || v.names != names {
		v = &deviceVector{names: names, vec: anomaly.NewVector(s.cfg, len(keys))}
		s.vectors[dev] = v
	}
	return v.vec.Observe(at, x), names, values
}

// deviceVector is a device's Vector and the fields it holds.
type deviceVector struct {
	names string
	vec   *anomaly.Vector
}

// closePeriod returns the summary of the device's period when a reading at
// at starts the next one.
func (s *scorer) closePeriod(dev string, at time.Time) *anomaly.Summary {
	p := s.periods[dev]
	if p == nil || p.readings == 0 || at.Sub(p.from) < s.filter.Summary {
		return nil
	}
	sum := &anomaly.Summary{Type: anomaly.RecordSummary, Device: dev, From: p.from, To: p.to, Readings: p.readings, Channels: map[string]anomaly.ChannelSummary{}}
	for name, c := range p.channels {
		if c.count == 0 {
			continue
		}
		sum.Channels[name] = anomaly.ChannelSummary{Count: c.count, Min: c.min, Max: c.max, Mean: c.sum / float64(c.count),
			P50: c.digest.Quantile(0.5), P95: c.digest.Quantile(0.95), MaxScore: c.maxScore}
		c.count, c.sum, c.maxScore = 0, 0, 0
		c.digest.Reset()
	}
	p.readings = 0
	return sum
}

// summarize adds a channel's reading to its device's period.
func (s *scorer) summarize(dev, channel string, at time.Time, v, score float64) {
	p := s.periods[dev]
	if p == nil {
		p = &period{channels: map[string]*channelPeriod{}}
		s.periods[dev] = p
	}
	if p.readings == 0 {
		p.from = at
	}
	p.to = at
	c := p.channels[channel]
	if c == nil {
		c = &channelPeriod{digest: anomaly.NewDigest()}
		p.channels[channel] = c
	}
	if c.count == 0 {
		c.min, c.max = v, v
	}
	c.count, c.sum = c.count+1, c.sum+v
	c.min, c.max, c.maxScore = min(c.min, v), max(c.max, v), max(c.maxScore, score)
	c.digest.Add(v)
}

// record is an uplink record of a device.
func record(dev string, at time.Time, kind string, v any) store.Message {
	b, _ := json.Marshal(v)
	return store.Message{Key: []byte(dev), Value: b, Timestamp: at, Headers: map[string]string{gateway.HeaderDevice: dev, anomaly.RecordHeader: kind}}
}

func reading(dev string, m store.Message) store.Message {
	return record(dev, m.Timestamp, anomaly.RecordReading, anomaly.Reading{Type: anomaly.RecordReading, Device: dev, Topic: m.Headers[gateway.HeaderTopic], At: m.Timestamp, Payload: m.Value})
}

// writeScore puts the device's score into its shadow if it crossed the
// threshold, or moved by scoreStep at least scoreEvery after the last
// write (by the readings' time), so that a score hovering near zero does
// not rewrite the shadow with every reading.
func (s *scorer) writeScore(ctx context.Context, dev string, at time.Time) error {
	score := 0.0
	for _, v := range s.latest[dev] {
		score = max(score, v)
	}
	old, ok := s.written[dev]
	crossed := (old.score >= s.threshold) != (score >= s.threshold)
	if ok && !crossed && (math.Abs(score-old.score) < scoreStep || at.Sub(old.at) < scoreEvery) {
		return nil
	}
	patch := fmt.Appendf(nil, `{%q:%g}`, shadow.FieldScore, math.Round(score*1000)/1000)
	if _, err := s.st.Table(store.ShadowsTable).Patch(ctx, dev, patch); err != nil {
		return fmt.Errorf("edge: score of %s: %w", dev, err)
	}
	s.written[dev] = scoreWritten{score, at}
	return nil
}
