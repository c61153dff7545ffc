package edge

import (
	"bytes"
	"container/list"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caio/go-tdigest/v4"
	"github.com/prometheus/client_golang/prometheus"
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

// ScoreLimits bound what the scorer spends on each device and on all of
// them, so that no device can take the edge's memory or keep the others
// from being scored, whatever it sends. The zero value of each field is
// its default; docs/edge.md gives the memory they allow.
type ScoreLimits struct {
	// MaxFields is how many numeric fields of one message are scored, in
	// the order of their names; the others are skipped (counted in
	// weft_anomaly_fields_skipped_total{reason="fields"}). Default 32.
	MaxFields int
	// MaxChannels is how many fields of one device are followed; a new
	// field past it is skipped (reason "channels") unless a field not
	// seen for IdleAfter makes room. Default 64.
	MaxChannels int
	// MaxTotalChannels and MaxDevices cap the fields followed and the
	// devices of the whole edge: past either, the device heard from least
	// recently is forgotten. Defaults 50,000 and 50,000.
	MaxTotalChannels, MaxDevices int
	// IdleAfter forgets a device not heard from for that long, by the
	// readings' time. Default 24 hours.
	IdleAfter time.Duration
	// Monotonic is how many readings in a row a field must have risen to
	// be taken for a counter (a timestamp, a sequence number, a running
	// total): one that never fell while scored. A counter is not scored
	// (reason "monotonic") and keeps no channel while it keeps rising;
	// after a reset it is scored afresh until it has risen Monotonic times
	// again. Default 32.
	Monotonic int
	// DeviceBudget is how many readings of one device are scored in one
	// batch (at most 1000 events the scorer reads at once); the device's
	// others in that batch are skipped and counted
	// (weft_anomaly_readings_skipped_total). Default 100.
	DeviceBudget int
	// RecentBytes bounds the readings of a device kept to go up as the
	// context of a detection (UplinkFilter.Before). Default 8 KiB.
	RecentBytes int
}

func (l ScoreLimits) withDefaults() ScoreLimits {
	set := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	set(&l.MaxFields, 32)
	set(&l.MaxChannels, 64)
	set(&l.MaxTotalChannels, 50_000)
	set(&l.MaxDevices, 50_000)
	set(&l.Monotonic, 32)
	set(&l.DeviceBudget, 100)
	set(&l.RecentBytes, 8<<10)
	l.MaxTotalChannels = max(l.MaxTotalChannels, l.MaxChannels)
	if l.IdleAfter <= 0 {
		l.IdleAfter = 24 * time.Hour
	}
	return l
}

// deviceState is what the scorer keeps of one device.
type deviceState struct {
	id       string
	elem     *list.Element // in scorer.lru
	last     time.Time     // of its latest reading
	channels map[string]*fieldState
	vector   *deviceVector
	vecScore float64 // the vector's latest score
	period   period
	written  scoreWritten // the score in its shadow
	wrote    bool
	recent   []store.Message // its last readings, at most Before and RecentBytes
	recentN  int             // bytes of recent
	after    int             // readings still to send up
}

// fieldState is a field of a device: its anomaly channel, and what tells a
// counter.
type fieldState struct {
	ch     *anomaly.Channel // nil until scored, and for a counter
	prev   float64
	seen   bool
	fell   bool // it did not rise at least once while it had a channel
	rises  int  // readings in a row above the one before
	last   time.Time
	latest float64        // its latest score
	sum    *channelPeriod // its part of the device's period; nil until scored
}

// counter adds v to the field's run of rises and reports whether the
// field is taken for a counter: it rose on each of its last n readings,
// and never fell (or stayed) while it had a channel. A counter loses its
// channel. After a reset it has a new channel until it has risen n times
// again; a field that fell while scored is no counter, however long it
// rises afterwards.
func (c *fieldState) counter(v float64, n int) bool {
	rose := c.seen && v > c.prev
	c.prev, c.seen = v, true
	if !rose {
		c.rises = 0
		if c.ch != nil {
			c.fell = true
		}
		return false
	}
	c.rises++
	if c.fell || c.rises < n {
		return false
	}
	c.ch, c.sum, c.latest = nil, nil, 0
	return true
}

// period gathers a device's readings for its next Summary.
type period struct {
	from, to time.Time
	readings int
}

type channelPeriod struct {
	count                   int
	min, max, sum, maxScore float64
	digest                  *tdigest.TDigest // reset, not renewed, each period
}

// scoreStats are the scorer's counters, read by its metrics.
type scoreStats struct {
	skippedFields   [skipReasons]atomic.Int64
	skippedReadings atomic.Int64
	evicted         atomic.Int64
	devices         atomic.Int64
	channels        atomic.Int64
}

// Why a field of a reading was not scored.
const (
	skipFields    = iota // past MaxFields
	skipChannels         // past MaxChannels
	skipMonotonic        // a counter
	skipReasons
)

var skipNames = [skipReasons]string{"fields", "channels", "monotonic"}

var _ prometheus.Collector = (*scorer)(nil)

// scorer follows the edge's /telemetry/events and scores each numeric
// field of the devices' telemetry with package anomaly, one channel per
// device and field, within ScoreLimits. It writes a device's score (the
// highest of its channels' latest) into the device's shadow when it
// moves, so that it reaches the core with the shadow's changes, and
// appends to /uplink/events each detection with the readings around it,
// and each channel's summary per period (UplinkFilter). Its position is a
// consumer cursor, moved after the writes: after a crash it reads some
// messages again. The channels' history is in memory: after a restart they
// warm up again.
type scorer struct {
	st        *store.Store
	topic     string // the edge's name
	cfg       anomaly.Config
	filter    UplinkFilter
	limits    ScoreLimits
	threshold float64
	log       *slog.Logger

	devices  map[string]*deviceState
	lru      list.List      // of *deviceState, heard from least recently first
	channels int            // of all devices
	now      time.Time      // the latest reading's time
	spent    map[string]int // device -> readings scored in this batch
	stats    scoreStats
}

func newScorer(st *store.Store, topic string, cfg anomaly.Config, filter UplinkFilter, log *slog.Logger) *scorer {
	threshold := cfg.Threshold
	if threshold <= 0 || threshold > 1 {
		threshold = shadow.DefaultAnomalyThreshold
	}
	cfg.Threshold = threshold
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &scorer{st: st, topic: topic, cfg: cfg, filter: filter.withDefaults(), limits: ScoreLimits{}.withDefaults(), threshold: threshold, log: log,
		devices: map[string]*deviceState{}, spent: map[string]int{}}
}

// setLimits sets the scorer's limits (with their defaults). Call it
// before run.
func (s *scorer) setLimits(l ScoreLimits) { s.limits = l.withDefaults() }

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
// channels do not warm up from nothing after a restart. What it learns is
// held within ScoreLimits like the rest.
const warmReplay = 200_000

// batchSize is how many events the scorer reads at once (and about 4 MiB
// at most, the store's default).
const batchSize = 1000

func (s *scorer) run(ctx context.Context) error {
	events := s.st.Stream(store.EventsStream)
	from, _, err := events.Cursor(ctx, scoreGroup, s.topic, 0)
	if err != nil {
		return err
	}
	if err := s.warm(ctx, events, from); err != nil {
		return err
	}
	var logged time.Time
	var skipped int64
	for {
		msgs, err := events.ReadWait(ctx, s.topic, 0, from, store.ReadOptions{Limit: batchSize})
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
		found, touched := s.batch(msgs)
		for _, d := range touched {
			if err := s.writeScore(ctx, d); err != nil {
				return err
			}
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
		if n := s.stats.skippedReadings.Load(); n > skipped && time.Since(logged) > time.Minute {
			s.log.Warn("readings of devices past their budget not scored", "skipped", n-skipped, "budget", s.limits.DeviceBudget)
			skipped, logged = n, time.Now()
		}
	}
}

// batch scores one batch of events: each device's readings up to its
// budget. It returns the records to append to the uplink and the devices
// whose score to write, each once.
func (s *scorer) batch(msgs []store.Message) (up []store.Message, touched []*deviceState) {
	clear(s.spent)
	seen := map[*deviceState]bool{}
	for _, m := range msgs {
		d, rec := s.score(m, true)
		up = append(up, rec...)
		if d != nil && !seen[d] {
			seen[d] = true
			touched = append(touched, d)
		}
	}
	// A device forgotten within the batch has no score to write.
	touched = slices.DeleteFunc(touched, func(d *deviceState) bool { return s.devices[d.id] != d })
	s.stats.devices.Store(int64(len(s.devices)))
	s.stats.channels.Store(int64(s.channels))
	return up, touched
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
		msgs, err := events.Read(ctx, s.topic, 0, from, store.ReadOptions{Limit: batchSize})
		if err != nil || len(msgs) == 0 {
			return err
		}
		clear(s.spent)
		for _, m := range msgs {
			if m.Offset >= until {
				break
			}
			s.score(m, false)
		}
		from = msgs[len(msgs)-1].Offset + 1
	}
	s.stats.devices.Store(int64(len(s.devices)))
	s.stats.channels.Store(int64(s.channels))
	if until > start {
		s.log.Info("anomaly channels warmed up from the recent events", "events", until-start, "devices", len(s.devices), "channels", s.channels)
	}
	return nil
}

// telemetry returns the device, channel prefix ("" or "<channel>.") and
// fields of an event that is a JSON object published on a device's
// telemetry topic; nil fields otherwise. Past the device's budget in this
// batch it returns nil fields too, without parsing.
func (s *scorer) telemetry(m store.Message) (dev, prefix string, fields map[string]any) {
	dev = m.Headers[gateway.HeaderDevice]
	sub, ok := strings.CutPrefix(m.Headers[gateway.HeaderTopic], "devices/"+dev+"/telemetry")
	if dev == "" || !ok || sub != "" && sub[0] != '/' {
		return "", "", nil
	}
	if s.spent[dev] >= s.limits.DeviceBudget {
		s.stats.skippedReadings.Add(1)
		return "", "", nil
	}
	s.spent[dev]++
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

// device returns the state of a device, made on first use, heard from at
// at.
func (s *scorer) device(id string, at time.Time) *deviceState {
	d := s.devices[id]
	if d == nil {
		d = &deviceState{id: id, channels: map[string]*fieldState{}}
		d.elem = s.lru.PushBack(d)
		s.devices[id] = d
	} else {
		s.lru.MoveToBack(d.elem)
	}
	if at.After(d.last) {
		d.last = at
	}
	if at.After(s.now) {
		s.now = at
	}
	return d
}

// evict forgets the devices heard from least recently while there are
// too many devices or channels, and those idle for IdleAfter, keeping
// keep.
func (s *scorer) evict(keep *deviceState) {
	for e := s.lru.Front(); e != nil; e = s.lru.Front() {
		d := e.Value.(*deviceState)
		if d == keep || len(s.devices) <= s.limits.MaxDevices && s.channels <= s.limits.MaxTotalChannels && s.now.Sub(d.last) <= s.limits.IdleAfter {
			return
		}
		s.lru.Remove(e)
		delete(s.devices, d.id)
		s.channels -= len(d.channels)
		s.stats.evicted.Add(1)
	}
}

// fieldValue is a numeric field of a reading to score.
type fieldValue struct {
	name string
	v    float64
	c    *fieldState
}

// pick returns the numeric fields of a reading of d to score, by name, at
// most MaxFields of them, making their channels within MaxChannels, and
// counts those it skips. A counter is skipped, not scored.
func (s *scorer) pick(d *deviceState, prefix string, fields map[string]any, at time.Time) []fieldValue {
	var names []string
	for field, raw := range fields {
		if _, ok := raw.(float64); ok {
			names = append(names, field)
		}
	}
	slices.Sort(names)
	var out []fieldValue
	pruned := false
	for i, field := range names {
		if len(out) == s.limits.MaxFields {
			s.stats.skippedFields[skipFields].Add(int64(len(names) - i))
			break
		}
		name, v := prefix+field, fields[field].(float64)
		c := d.channels[name]
		if c == nil {
			if len(d.channels) >= s.limits.MaxChannels && !pruned {
				s.pruneChannels(d, at)
				pruned = true
			}
			if len(d.channels) >= s.limits.MaxChannels {
				s.stats.skippedFields[skipChannels].Add(1)
				continue
			}
			c = &fieldState{}
			d.channels[name] = c
			s.channels++
		}
		c.last = at
		if c.counter(v, s.limits.Monotonic) {
			s.stats.skippedFields[skipMonotonic].Add(1)
			continue
		}
		if c.ch == nil {
			c.ch = anomaly.NewChannel(s.cfg)
		}
		out = append(out, fieldValue{name, v, c})
	}
	return out
}

// pruneChannels drops the channels of d not seen for IdleAfter.
func (s *scorer) pruneChannels(d *deviceState, at time.Time) {
	for name, c := range d.channels {
		if at.Sub(c.last) > s.limits.IdleAfter {
			delete(d.channels, name)
			s.channels--
		}
	}
}

// score scores one event: the numeric fields of a telemetry message. With
// report, it returns the detections and summaries to append; without,
// it only learns (warm). It returns the device scored, nil if none.
func (s *scorer) score(m store.Message, report bool) (*deviceState, []store.Message) {
	id, prefix, fields := s.telemetry(m)
	if fields == nil {
		return nil, nil
	}
	d := s.device(id, m.Timestamp)
	defer s.evict(d)
	picked := s.pick(d, prefix, fields, m.Timestamp)
	if !report {
		for _, f := range picked {
			f.c.ch.Observe(m.Timestamp, f.v)
		}
		s.observeVector(d, picked, m.Timestamp)
		return d, nil
	}
	var up []store.Message
	if sum := s.closePeriod(d, m.Timestamp); sum != nil {
		up = append(up, record(id, m.Timestamp, anomaly.RecordSummary, sum))
	}
	detected := false
	for _, f := range picked {
		res := f.c.ch.Observe(m.Timestamp, f.v)
		f.c.latest = res.Score
		s.summarize(d, f.c, m.Timestamp, f.v, res.Score)
		if res.Detected {
			detected = true
			up = append(up, record(id, m.Timestamp, anomaly.RecordAnomaly, anomaly.Detection{Type: anomaly.RecordAnomaly, Device: id, Class: m.Headers[gateway.HeaderClass],
				Channel: f.name, Detector: res.Detector, Score: res.Score, Value: f.v, At: m.Timestamp}))
		}
	}
	if len(picked) > 0 {
		d.period.readings++
	}
	if res, names, values := s.observeVector(d, picked, m.Timestamp); names != "" {
		d.vecScore = res.Score
		if res.Detected {
			detected = true
			up = append(up, record(id, m.Timestamp, anomaly.RecordAnomaly, anomaly.Detection{Type: anomaly.RecordAnomaly, Device: id, Class: m.Headers[gateway.HeaderClass],
				Channel: names, Detector: res.Detector, Score: res.Score, Values: values, At: m.Timestamp}))
		}
	}
	// The context of a detection: the readings before it, it, and those
	// after it.
	switch {
	case detected:
		for _, r := range d.recent {
			up = append(up, reading(id, r))
		}
		d.recent, d.recentN = d.recent[:0], 0
		up = append(up, reading(id, m))
		d.after = s.filter.After
	case d.after > 0:
		up = append(up, reading(id, m))
		d.after--
	case len(m.Value) <= s.limits.RecentBytes:
		d.recent = append(d.recent, m)
		d.recentN += len(m.Value)
		for len(d.recent) > s.filter.Before || d.recentN > s.limits.RecentBytes {
			d.recentN -= len(d.recent[0].Value)
			d.recent[0] = store.Message{}
			d.recent = d.recent[1:]
		}
	}
	return d, up
}

// observeVector scores a reading's picked fields together (package
// anomaly's Vector, one per device and set of fields); names is "" when
// there are fewer than two.
func (s *scorer) observeVector(d *deviceState, picked []fieldValue, at time.Time) (res anomaly.Result, names string, values map[string]float64) {
	if len(picked) < 2 {
		return res, "", nil
	}
	keys := make([]string, len(picked))
	x := make([]float64, len(picked))
	values = make(map[string]float64, len(picked))
	for i, f := range picked { // sorted by name
		keys[i], x[i] = f.name, f.v
		values[f.name] = f.v
	}
	names = strings.Join(keys, "+")
	if d.vector == nil || d.vector.names != names {
		d.vector = &deviceVector{names: names, vec: anomaly.NewVector(s.cfg, len(keys))}
	}
	return d.vector.vec.Observe(at, x), names, values
}

// deviceVector is a device's Vector and the fields it holds.
type deviceVector struct {
	names string
	vec   *anomaly.Vector
}

// closePeriod returns the summary of the device's period when a reading at
// at starts the next one.
func (s *scorer) closePeriod(d *deviceState, at time.Time) *anomaly.Summary {
	p := &d.period
	if p.readings == 0 || at.Sub(p.from) < s.filter.Summary {
		return nil
	}
	sum := &anomaly.Summary{Type: anomaly.RecordSummary, Device: d.id, From: p.from, To: p.to, Readings: p.readings, Channels: map[string]anomaly.ChannelSummary{}}
	for name, ch := range d.channels {
		c := ch.sum
		if c == nil || c.count == 0 {
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
func (s *scorer) summarize(d *deviceState, ch *fieldState, at time.Time, v, score float64) {
	p := &d.period
	if p.readings == 0 {
		p.from = at
	}
	p.to = at
	c := ch.sum
	if c == nil {
		c = &channelPeriod{digest: anomaly.NewDigest()}
		ch.sum = c
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
func (s *scorer) writeScore(ctx context.Context, d *deviceState) error {
	score := d.vecScore
	for _, c := range d.channels {
		score = max(score, c.latest)
	}
	old, at := d.written, d.last
	crossed := (old.score >= s.threshold) != (score >= s.threshold)
	if d.wrote && !crossed && (math.Abs(score-old.score) < scoreStep || at.Sub(old.at) < scoreEvery) {
		return nil
	}
	patch := fmt.Appendf(nil, `{%q:%g}`, shadow.FieldScore, math.Round(score*1000)/1000)
	if _, err := s.st.Table(store.ShadowsTable).Patch(ctx, d.id, patch); err != nil {
		return fmt.Errorf("edge: score of %s: %w", d.id, err)
	}
	d.written, d.wrote = scoreWritten{score, at}, true
	return nil
}

// Metrics of the scorer: it is a prometheus.Collector.
var (
	fieldsSkippedDesc = prometheus.NewDesc("weft_anomaly_fields_skipped_total",
		"Numeric fields of readings not scored: past ScoreLimits.MaxFields (fields), past MaxChannels (channels), or counters (monotonic).", []string{"reason"}, nil)
	readingsSkippedDesc = prometheus.NewDesc("weft_anomaly_readings_skipped_total",
		"Readings not scored because their device had spent its budget in the batch (ScoreLimits.DeviceBudget).", nil, nil)
	devicesEvictedDesc = prometheus.NewDesc("weft_anomaly_devices_evicted_total",
		"Devices the scorer forgot: idle, or past its device or channel caps.", nil, nil)
	devicesDesc  = prometheus.NewDesc("weft_anomaly_devices", "Devices the scorer follows.", nil, nil)
	channelsDesc = prometheus.NewDesc("weft_anomaly_channels", "Fields the scorer follows, all devices together.", nil, nil)
)

func (s *scorer) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{fieldsSkippedDesc, readingsSkippedDesc, devicesEvictedDesc, devicesDesc, channelsDesc} {
		ch <- d
	}
}

func (s *scorer) Collect(ch chan<- prometheus.Metric) {
	for i, name := range skipNames {
		ch <- prometheus.MustNewConstMetric(fieldsSkippedDesc, prometheus.CounterValue, float64(s.stats.skippedFields[i].Load()), name)
	}
	ch <- prometheus.MustNewConstMetric(readingsSkippedDesc, prometheus.CounterValue, float64(s.stats.skippedReadings.Load()))
	ch <- prometheus.MustNewConstMetric(devicesEvictedDesc, prometheus.CounterValue, float64(s.stats.evicted.Load()))
	ch <- prometheus.MustNewConstMetric(devicesDesc, prometheus.GaugeValue, float64(s.stats.devices.Load()))
	ch <- prometheus.MustNewConstMetric(channelsDesc, prometheus.GaugeValue, float64(s.stats.channels.Load()))
}
