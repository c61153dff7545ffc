package edge

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/weft-io/weft/anomaly"
	"github.com/weft-io/weft/gateway"
	"github.com/weft-io/weft/models"
	"github.com/weft-io/weft/shadow"
	"github.com/weft-io/weft/store"
)

// scoreGroup is the consumer group under which the scorer records how far
// it has read the edge's events.
const scoreGroup = "anomaly"

// UplinkFilter is what the edge sends to the core of its devices'
// telemetry besides each detection (anomaly.Uplink).
type UplinkFilter = anomaly.Uplink

// ScoreLimits bound what the scorer spends on each device and on all of
// them (anomaly.Limits).
type ScoreLimits = anomaly.Limits

// warmReplay is how many events of each partition before its cursor the
// scorer reads again when it starts, learning from them without
// reporting, so that its channels do not warm up from nothing after a
// restart. What it learns is held within ScoreLimits like the rest.
const warmReplay = 200_000

// batchSize is how many events of a partition the scorer takes at once
// (and about 4 MiB at most, the store's default).
const batchSize = 1000

var _ prometheus.Collector = (*scorer)(nil)

// scorer is the shell of the edge's uplink filter (anomaly.Filter): it
// follows every partition of the edge's /telemetry/events with a store
// consumer, feeds the filter each batch of the devices' telemetry, and
// commits with the consumer's cursor, in one transaction, the uplink
// records the filter made (appended to /uplink/events) and the scores
// that moved (written into the devices' shadows, so that they reach the
// core with the shadows' changes). A crash neither loses nor repeats them.
// The filter's history is in memory: at start the scorer warms it up again
// from the recent events.
type scorer struct {
	st     *store.Store
	topic  string // the edge's name
	cfg    anomaly.FilterConfig
	filter *anomaly.Filter
	log    *slog.Logger

	// models, when set, runs the rendezvous on each batch (Models.route).
	models *Models

	pending map[store.TopicPart]*scored
	logged  time.Time // when skipped readings were last logged
	skipped int64     // how many were then
}

func newScorer(st *store.Store, topic string, cfg anomaly.Config, uplink UplinkFilter, log *slog.Logger) *scorer {
	if cfg.Threshold <= 0 || cfg.Threshold > 1 {
		cfg.Threshold = shadow.DefaultAnomalyThreshold
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	fc := anomaly.FilterConfig{Anomaly: cfg, Uplink: uplink}
	return &scorer{st: st, topic: topic, cfg: fc, filter: anomaly.NewFilter(fc), log: log, pending: map[store.TopicPart]*scored{}}
}

// setLimits sets the scorer's limits (with their defaults). Call it
// before run.
func (s *scorer) setLimits(l ScoreLimits) {
	s.cfg.Limits = l
	s.filter = anomaly.NewFilter(s.cfg)
}

// run warms the filter up, then scores the events as they come until ctx
// ends.
func (s *scorer) run(ctx context.Context) error {
	events := s.st.Stream(store.EventsStream)
	if s.models != nil {
		if err := ensureScores(ctx, s.st); err != nil {
			return fmt.Errorf("edge: %s: %w", models.ScoresStream, err)
		}
	}
	if err := s.warm(ctx, events); err != nil {
		return err
	}
	c, err := events.Consumer(store.ConsumerConfig{Group: scoreGroup, Skip: func(topic string) bool { return topic != s.topic },
		Limit: batchSize, Logger: s.log})
	if err != nil {
		return err
	}
	return c.Run(ctx, s.handle)
}

// warm reads again up to warmReplay events of each partition before the
// scorer's cursor into the filter, which learns from them without
// reporting.
func (s *scorer) warm(ctx context.Context, events *store.Stream) error {
	info, err := s.st.Stat(ctx, store.EventsStream)
	if err != nil {
		return err
	}
	total := uint64(0)
	for part := range max(info.Partitions, 1) {
		until, ok, err := events.Cursor(ctx, scoreGroup, s.topic, part)
		if err != nil || !ok {
			return err
		}
		low, _, err := events.Bounds(ctx, s.topic, part)
		if err != nil {
			return err
		}
		start := max(low, until-min(until, warmReplay))
		for from := start; from < until; {
			msgs, err := events.Read(ctx, s.topic, part, from, store.ReadOptions{Limit: batchSize})
			if err != nil || len(msgs) == 0 {
				return err
			}
			var in []anomaly.Telemetry
			for _, m := range msgs {
				if m.Offset < until {
					in = append(in, telemetry(m))
				}
			}
			s.filter.Learn(in)
			from = msgs[len(msgs)-1].Offset + 1
		}
		total += until - min(until, start)
	}
	if total > 0 {
		st := s.filter.Stats()
		s.log.Info("anomaly channels warmed up from the recent events", "events", total, "devices", st.Devices, "channels", st.Channels)
	}
	return nil
}

// scored is what the filter made of the latest batch of a partition, kept
// until the next batch shows whether it was committed: a batch whose
// commit failed comes again, and then goes up as it was scored the first
// time rather than scored twice.
type scored struct {
	from, next uint64 // the offsets fed to the filter
	up         []store.Message
	scores     []anomaly.Score
	results    []store.Message // the rendezvous's, to models.ScoresStream
}

// handle scores a batch and returns the stage that commits its records
// and scores with the cursor.
func (s *scorer) handle(_ context.Context, b store.Batch) (func(tx *store.Tx) error, error) {
	if len(b.Messages) == 0 {
		return nil, nil
	}
	tp := store.TopicPart{Topic: b.Topic, Partition: b.Partition}
	first, last := b.Messages[0].Offset, b.Messages[len(b.Messages)-1].Offset
	p := s.pending[tp]
	if p == nil || p.from != first || last < p.next-1 {
		p = &scored{from: first, next: first}
		s.pending[tp] = p
	}
	var in []anomaly.Telemetry
	for _, m := range b.Messages {
		if m.Offset >= p.next {
			in = append(in, telemetry(m))
		}
	}
	if len(in) > 0 {
		up, scores := s.filter.Batch(in)
		if s.models != nil {
			var results []store.Message
			up, scores, results = s.models.route(in, up, scores)
			p.results = append(p.results, results...)
		}
		for _, r := range up {
			p.up = append(p.up, s.uplink(r))
		}
		p.scores = append(p.scores, scores...)
		p.next = last + 1
	}
	s.logSkipped()
	up, scores, results := p.up, p.scores, p.results
	if len(up) == 0 && len(scores) == 0 && len(results) == 0 {
		return nil, nil
	}
	return func(tx *store.Tx) error {
		if len(results) > 0 {
			if _, err := tx.Append(store.AppendRequest{Path: models.ScoresStream, Topic: s.topic, Partition: -1, Messages: results}); err != nil {
				return fmt.Errorf("edge: model scores: %w", err)
			}
		}
		return s.stage(tx, up, scores)
	}, nil
}

// stage appends the uplink records and writes the scores into the
// devices' shadows. It may run more than once.
func (s *scorer) stage(tx *store.Tx, up []store.Message, scores []anomaly.Score) error {
	if len(up) > 0 {
		if _, err := tx.Append(store.AppendRequest{Path: store.UplinkStream, Topic: s.topic, Partition: -1, Messages: up}); err != nil {
			return fmt.Errorf("edge: anomalies to the uplink: %w", err)
		}
	}
	for _, sc := range scores {
		if err := putScore(tx, sc); err != nil {
			return fmt.Errorf("edge: score of %s: %w", sc.Device, err)
		}
	}
	return nil
}

// putScore sets the score field of the device's shadow, rounded to three
// decimals, as the merge patch {"score":x} would: the shadow is made if
// absent, and a document that is no object is replaced.
func putScore(tx *store.Tx, sc anomaly.Score) error {
	doc, exists, err := tx.Get(store.ShadowsTable, sc.Device)
	if err != nil {
		return err
	}
	fields := map[string]json.RawMessage{}
	if exists {
		if json.Unmarshal(doc.Value, &fields) != nil || fields == nil {
			fields = map[string]json.RawMessage{}
		}
	}
	fields[shadow.FieldScore] = strconv.AppendFloat(nil, math.Round(sc.Score*1000)/1000, 'g', -1, 64)
	b, err := json.Marshal(fields)
	if err != nil {
		return err
	}
	_, err = tx.Put(store.ShadowsTable, sc.Device, b)
	return err
}

// logSkipped logs the readings skipped past their device's budget, at
// most once a minute.
func (s *scorer) logSkipped() {
	if n := s.filter.Stats().SkippedReadings; n > s.skipped && time.Since(s.logged) > time.Minute {
		s.log.Warn("readings of devices past their budget not scored", "skipped", n-s.skipped, "budget", s.cfg.Limits.DeviceBudget)
		s.skipped, s.logged = n, time.Now()
	}
}

// telemetry is an event as the filter takes it.
func telemetry(m store.Message) anomaly.Telemetry {
	return anomaly.Telemetry{Device: m.Headers[gateway.HeaderDevice], Class: m.Headers[gateway.HeaderClass], Topic: m.Headers[gateway.HeaderTopic],
		At: m.Timestamp, Payload: m.Value}
}

// uplink is the message of an uplink record.
func (s *scorer) uplink(r anomaly.Record) store.Message {
	b, _ := json.Marshal(r.Value)
	return store.Message{Key: []byte(r.Device), Value: b, Timestamp: r.At, Headers: map[string]string{gateway.HeaderDevice: r.Device, anomaly.RecordHeader: r.Kind}}
}

// Metrics of the scorer: it is a prometheus.Collector.
var (
	fieldsSkippedDesc = prometheus.NewDesc("weft_anomaly_fields_skipped_total",
		"Numeric fields of readings not scored: past ScoreLimits.MaxFields (fields), past MaxChannels (channels), or counters (monotonic).", []string{"reason"}, nil)
	readingsSkippedDesc = prometheus.NewDesc("weft_anomaly_readings_skipped_total",
		"Readings not scored because their device had spent its budget in the batch (ScoreLimits.DeviceBudget).", nil, nil)
	devicesEvictedDesc = prometheus.NewDesc("weft_anomaly_devices_evicted_total",
		"Devices the scorer forgot: idle, or past its device or channel caps.", nil, nil)
	channelsDroppedDesc = prometheus.NewDesc("weft_anomaly_channels_dropped_total",
		"Fields of devices still followed that the scorer forgot, not sent for ScoreLimits.IdleAfter.", nil, nil)
	devicesDesc  = prometheus.NewDesc("weft_anomaly_devices", "Devices the scorer follows.", nil, nil)
	channelsDesc = prometheus.NewDesc("weft_anomaly_channels", "Fields the scorer follows, all devices together.", nil, nil)
)

func (s *scorer) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{fieldsSkippedDesc, readingsSkippedDesc, devicesEvictedDesc, channelsDroppedDesc, devicesDesc, channelsDesc} {
		ch <- d
	}
}

func (s *scorer) Collect(ch chan<- prometheus.Metric) {
	st := s.filter.Stats()
	for _, reason := range []string{anomaly.SkipFields, anomaly.SkipChannels, anomaly.SkipMonotonic} {
		ch <- prometheus.MustNewConstMetric(fieldsSkippedDesc, prometheus.CounterValue, float64(st.SkippedFields[reason]), reason)
	}
	ch <- prometheus.MustNewConstMetric(readingsSkippedDesc, prometheus.CounterValue, float64(st.SkippedReadings))
	ch <- prometheus.MustNewConstMetric(devicesEvictedDesc, prometheus.CounterValue, float64(st.Evicted))
	ch <- prometheus.MustNewConstMetric(channelsDroppedDesc, prometheus.CounterValue, float64(st.DroppedChannels))
	ch <- prometheus.MustNewConstMetric(devicesDesc, prometheus.GaugeValue, float64(st.Devices))
	ch <- prometheus.MustNewConstMetric(channelsDesc, prometheus.GaugeValue, float64(st.Channels))
}
