package anomaly

import (
	"bytes"
	"container/list"
	"encoding/json"
	"math"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// Uplink is what an edge sends to its core of its devices' telemetry
// besides each detection: instead of every reading, a summary of each
// device's channels per period, and the readings around each detection.
type Uplink struct {
	// Summary is the period of the devices' summaries. Default 15
	// minutes.
	Summary time.Duration
	// Before and After are how many readings of a device before and after
	// one with a detection go up with it. Defaults 10 and 10.
	Before, After int
}

func (u Uplink) withDefaults() Uplink {
	if u.Summary <= 0 {
		u.Summary = 15 * time.Minute
	}
	if u.Before <= 0 {
		u.Before = 10
	}
	if u.After <= 0 {
		u.After = 10
	}
	return u
}

// Limits bound what a Filter spends on each device and on all of them,
// so that no device can take the edge's memory or keep the others from
// being scored, whatever it sends. The zero value of each field is its
// default; docs/edge.md gives the memory they allow.
type Limits struct {
	// MaxFields is how many numeric fields of one message are scored, in
	// the order of their names; the others are skipped (reason "fields").
	// Default 32.
	MaxFields int
	// MaxChannels is how many fields of one device are followed; a new
	// field past it is skipped (reason "channels") unless a field not
	// seen for IdleAfter makes room. Default 64.
	MaxChannels int
	// MaxTotalChannels and MaxDevices cap the fields followed and the
	// devices of the whole filter: past either, the device heard from
	// least recently is forgotten. Defaults 50,000 and 50,000.
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
	// batch; the device's others in that batch are skipped and counted
	// (FilterStats.SkippedReadings). Default 100.
	DeviceBudget int
	// RecentBytes bounds the readings of a device kept to go up as the
	// context of a detection (Uplink.Before). Default 8 KiB.
	RecentBytes int
}

func (l Limits) withDefaults() Limits {
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

// FilterConfig configures a Filter. The zero value works.
type FilterConfig struct {
	// Anomaly tunes the channels and vectors (Config).
	Anomaly Config
	// Uplink is what goes up besides the detections.
	Uplink Uplink
	// Limits bound the filter's memory and work.
	Limits Limits
}

// Telemetry is a message a device published, as a Filter takes it.
type Telemetry struct {
	Device  string // the device's id
	Class   string // the device's class
	Topic   string // the MQTT topic, devices/<Device>/telemetry[/<channel>]
	At      time.Time
	Payload []byte // a JSON object; its numeric fields are scored
}

// Record is an uplink record: what goes to the core for one device.
type Record struct {
	Kind   string    // RecordAnomaly, RecordReading or RecordSummary
	Device string    // the device's id
	At     time.Time // the time of the reading that made it
	Value  any       // a Detection, a Reading or a Summary, by Kind
}

// Score is a device's score (the highest of its channels' latest) to write
// into its shadow.
type Score struct {
	Device string
	Score  float64
	At     time.Time // the time of the device's latest reading
}

// ScoreStep is how far a device's score moves before it is reported again
// (crossing the detection threshold always reports it), at most once
// ScoreEvery of readings.
const (
	ScoreStep  = 0.1
	ScoreEvery = time.Minute
)

// Skip reasons of FilterStats.SkippedFields.
const (
	SkipFields    = "fields"    // past Limits.MaxFields
	SkipChannels  = "channels"  // past Limits.MaxChannels
	SkipMonotonic = "monotonic" // a counter
)

// FilterStats are a Filter's counters.
type FilterStats struct {
	// SkippedFields counts the numeric fields not scored, by reason
	// (SkipFields, SkipChannels, SkipMonotonic).
	SkippedFields map[string]int64
	// SkippedReadings counts the readings past their device's budget.
	SkippedReadings int64
	// Evicted counts the devices forgotten: idle, or past the caps.
	Evicted int64
	// DroppedChannels counts the fields of devices still followed that
	// were forgotten, not sent for IdleAfter.
	DroppedChannels int64
	// Devices and Channels are the devices and fields followed.
	Devices, Channels int64
}

// Filter is an edge's uplink filter: it scores each numeric field of its
// devices' telemetry with a Channel per device and field, and the fields
// of a message together with a Vector, within Limits, and decides what
// goes to the core instead of the raw readings: each detection with the
// readings around it, and a summary of each device per period. It keeps
// no clock: time is the readings'. It is not safe for concurrent use,
// except Stats.
type Filter struct {
	cfg       Config
	uplink    Uplink
	limits    Limits
	threshold float64

	devices  map[string]*deviceState
	lru      list.List      // of *deviceState, heard from least recently first
	channels int            // of all devices
	now      time.Time      // the latest reading's time
	spent    map[string]int // device -> readings scored in this batch

	pastFields      atomic.Int64 // fields skipped, by reason
	pastChannels    atomic.Int64
	counters        atomic.Int64
	skippedReadings atomic.Int64
	evicted         atomic.Int64
	dropped         atomic.Int64
	nDevices        atomic.Int64
	nChannels       atomic.Int64
}

// NewFilter returns a filter following no device yet.
func NewFilter(cfg FilterConfig) *Filter {
	a := cfg.Anomaly.withDefaults()
	return &Filter{cfg: cfg.Anomaly, uplink: cfg.Uplink.withDefaults(), limits: cfg.Limits.withDefaults(), threshold: a.Threshold,
		devices: map[string]*deviceState{}, spent: map[string]int{}}
}

// Stats returns the filter's counters. It may be called at any time, from
// any goroutine.
func (f *Filter) Stats() FilterStats {
	return FilterStats{
		SkippedFields:   map[string]int64{SkipFields: f.pastFields.Load(), SkipChannels: f.pastChannels.Load(), SkipMonotonic: f.counters.Load()},
		SkippedReadings: f.skippedReadings.Load(),
		Evicted:         f.evicted.Load(),
		DroppedChannels: f.dropped.Load(),
		Devices:         f.nDevices.Load(),
		Channels:        f.nChannels.Load(),
	}
}

// Batch scores a batch of messages, each device's in time order, at most
// Limits.DeviceBudget of each device. It returns the records to send up
// and the scores of the devices it touched that moved enough to report:
// across the threshold, or by ScoreStep at least ScoreEvery (of readings)
// after the device's last reported score, so that a score hovering near
// zero is not rewritten with every reading.
func (f *Filter) Batch(msgs []Telemetry) ([]Record, []Score) {
	clear(f.spent)
	var up []Record
	var touched []*deviceState
	seen := map[*deviceState]bool{}
	for _, m := range msgs {
		d, rec := f.score(m, true)
		up = append(up, rec...)
		if d != nil && !seen[d] {
			seen[d] = true
			touched = append(touched, d)
		}
	}
	var scores []Score
	for _, d := range touched {
		// A device forgotten within the batch has no score to report.
		if f.devices[d.id] == d && d.moved(f.threshold) {
			scores = append(scores, Score{Device: d.id, Score: d.reported.score, At: d.reported.at})
		}
	}
	f.count()
	return up, scores
}

// Learn learns from a batch of messages like Batch, reporting nothing:
// the warm-up of an edge that starts, from the events it scored before.
func (f *Filter) Learn(msgs []Telemetry) {
	clear(f.spent)
	for _, m := range msgs {
		f.score(m, false)
	}
	f.count()
}

func (f *Filter) count() {
	f.nDevices.Store(int64(len(f.devices)))
	f.nChannels.Store(int64(f.channels))
}

// deviceState is what the filter keeps of one device.
type deviceState struct {
	id       string
	elem     *list.Element // in Filter.lru
	last     time.Time     // of its latest reading
	channels map[string]*fieldState
	vector   *deviceVector
	vecScore float64 // the vector's latest score
	period   period
	reported reportedScore // its score last reported
	wrote    bool
	recent   []recentReading // its last readings, at most Before and RecentBytes
	recentN  int             // bytes of recent
	after    int             // readings still to send up
	pruned   time.Time       // when its idle fields were last dropped
}

// recentReading is a reading kept as the context of a detection to come:
// its payload is a copy, so that it does not hold on to the buffer the
// message was read into (a stored batch of many devices' messages).
type recentReading struct {
	topic   string
	at      time.Time
	payload []byte
}

// reportedScore is the score last reported of a device, and the time of
// the reading that did.
type reportedScore struct {
	score float64
	at    time.Time
}

// moved reports whether the device's score is to be reported, and then
// takes it as reported.
func (d *deviceState) moved(threshold float64) bool {
	score := d.vecScore
	for _, c := range d.channels {
		score = max(score, c.latest)
	}
	old, at := d.reported, d.last
	crossed := (old.score >= threshold) != (score >= threshold)
	if d.wrote && !crossed && (math.Abs(score-old.score) < ScoreStep || at.Sub(old.at) < ScoreEvery) {
		return false
	}
	d.reported, d.wrote = reportedScore{score, at}, true
	return true
}

// fieldState is a field of a device: its anomaly channel, and what tells a
// counter.
type fieldState struct {
	ch     *Channel // nil until scored, and for a counter
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

// period gathers a device's readings for its next summary.
type period struct {
	from, to time.Time
	readings int
}

// channelPeriod is a channel's part of its device's period: a few
// figures and two streaming quantiles, about 500 bytes whatever the
// readings (a t-digest here took 6.4 KiB a channel).
type channelPeriod struct {
	count                   int
	min, max, sum, maxScore float64
	p50, p95                quantile
}

// quantile estimates one quantile of a stream of values in constant
// memory: exactly (the nearest rank) up to quantileExact values, then with
// the P² algorithm (Jain and Chlamtac, "The P² algorithm for dynamic
// calculation of quantiles and histograms without storing observations",
// CACM 28(10), 1985): five markers at the minimum, the quantile, the
// maximum and half-way between, whose heights follow the values by a
// parabolic interpolation, started from the exact values.
type quantile struct {
	p     float64
	n     int                    // values added
	first [quantileExact]float64 // the first values, sorted
	q     [5]float64             // the markers' heights, past quantileExact
	pos   [5]float64             // the markers' positions, 1 to n
}

// quantileExact is how many values a quantile keeps before it estimates.
const quantileExact = 16

func newQuantile(p float64) quantile { return quantile{p: p} }

// want is the desired position of marker i after n values.
func (e *quantile) want(i int) float64 {
	return 1 + float64(e.n-1)*[5]float64{0, e.p / 2, e.p, (1 + e.p) / 2, 1}[i]
}

func (e *quantile) add(v float64) {
	if e.n < quantileExact {
		i := e.n
		for i > 0 && e.first[i-1] > v {
			e.first[i] = e.first[i-1]
			i--
		}
		e.first[i] = v
		e.n++
		return
	}
	if e.n == quantileExact { // the markers, at the ranks nearest their desired positions
		for i := range e.pos {
			e.pos[i] = math.Round(e.want(i))
		}
		for i := 1; i < 4; i++ {
			e.pos[i] = max(e.pos[i], e.pos[i-1]+1)
		}
		for i := 3; i > 0; i-- {
			e.pos[i] = min(e.pos[i], e.pos[i+1]-1)
		}
		for i, r := range e.pos {
			e.q[i] = e.first[int(r)-1]
		}
	}
	e.n++
	var k int // the cell v falls in, between markers k and k+1
	switch {
	case v < e.q[0]:
		e.q[0], k = v, 0
	case v >= e.q[4]:
		e.q[4], k = v, 3
	default:
		for k = 0; k < 3 && v >= e.q[k+1]; k++ {
		}
	}
	for i := k + 1; i < 5; i++ {
		e.pos[i]++
	}
	for i := 1; i < 4; i++ {
		d := e.want(i) - e.pos[i]
		if d >= 1 && e.pos[i+1]-e.pos[i] > 1 || d <= -1 && e.pos[i-1]-e.pos[i] < -1 {
			s := math.Copysign(1, d)
			q := e.parabolic(i, s)
			if e.q[i-1] >= q || q >= e.q[i+1] {
				j := i + int(s)
				q = e.q[i] + s*(e.q[j]-e.q[i])/(e.pos[j]-e.pos[i])
			}
			e.q[i] = q
			e.pos[i] += s
		}
	}
}

// parabolic is the height of marker i moved by s (±1) on the parabola
// through it and its neighbours.
func (e *quantile) parabolic(i int, s float64) float64 {
	q, n := &e.q, &e.pos
	return q[i] + s/(n[i+1]-n[i-1])*((n[i]-n[i-1]+s)*(q[i+1]-q[i])/(n[i+1]-n[i])+(n[i+1]-n[i]-s)*(q[i]-q[i-1])/(n[i]-n[i-1]))
}

// value is the estimate: the quantile of the values added, NaN if none.
func (e *quantile) value() float64 {
	switch {
	case e.n == 0:
		return math.NaN()
	case e.n <= quantileExact: // the nearest rank
		return e.first[min(e.n-1, max(0, int(math.Ceil(e.p*float64(e.n)))-1))]
	}
	return e.q[2]
}

// reset forgets the values added.
func (e *quantile) reset() { *e = newQuantile(e.p) }

// deviceVector is a device's Vector and the fields it holds.
type deviceVector struct {
	names string
	vec   *Vector
}

// fields returns the channel prefix ("" or "<channel>.") and fields of a
// message that is a JSON object published on its device's telemetry
// topic; nil fields otherwise. Past the device's budget in this batch it
// returns nil fields too, without parsing.
func (f *Filter) fields(m Telemetry) (prefix string, fields map[string]any) {
	sub, ok := strings.CutPrefix(m.Topic, "devices/"+m.Device+"/telemetry")
	if m.Device == "" || !ok || sub != "" && sub[0] != '/' {
		return "", nil
	}
	if f.spent[m.Device] >= f.limits.DeviceBudget {
		f.skippedReadings.Add(1)
		return "", nil
	}
	f.spent[m.Device]++
	if v := bytes.TrimLeft(m.Payload, " \t\r\n"); len(v) == 0 || v[0] != '{' {
		return "", nil // not a JSON object: nothing to score
	}
	if json.Unmarshal(m.Payload, &fields) != nil {
		return "", nil
	}
	if prefix = strings.TrimPrefix(sub, "/"); prefix != "" {
		prefix += "."
	}
	return prefix, fields
}

// device returns the state of a device, made on first use, heard from at
// at.
func (f *Filter) device(id string, at time.Time) *deviceState {
	d := f.devices[id]
	if d == nil {
		d = &deviceState{id: id, channels: map[string]*fieldState{}}
		d.elem = f.lru.PushBack(d)
		f.devices[id] = d
	} else {
		f.lru.MoveToBack(d.elem)
	}
	if at.After(d.last) {
		d.last = at
	}
	if at.After(f.now) {
		f.now = at
	}
	return d
}

// evict forgets the devices heard from least recently while there are
// too many devices or channels, and those idle for IdleAfter, keeping
// keep.
func (f *Filter) evict(keep *deviceState) {
	for e := f.lru.Front(); e != nil; e = f.lru.Front() {
		d := e.Value.(*deviceState)
		if d == keep || len(f.devices) <= f.limits.MaxDevices && f.channels <= f.limits.MaxTotalChannels && f.now.Sub(d.last) <= f.limits.IdleAfter {
			return
		}
		f.lru.Remove(e)
		delete(f.devices, d.id)
		f.channels -= len(d.channels)
		f.evicted.Add(1)
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
func (f *Filter) pick(d *deviceState, prefix string, fields map[string]any, at time.Time) []fieldValue {
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
		if len(out) == f.limits.MaxFields {
			f.pastFields.Add(int64(len(names) - i))
			break
		}
		name, v := prefix+field, fields[field].(float64)
		c := d.channels[name]
		if c == nil {
			if len(d.channels) >= f.limits.MaxChannels && !pruned {
				f.pruneChannels(d, at)
				pruned = true
			}
			if len(d.channels) >= f.limits.MaxChannels {
				f.pastChannels.Add(1)
				continue
			}
			c = &fieldState{}
			d.channels[name] = c
			f.channels++
		}
		c.last = at
		if c.counter(v, f.limits.Monotonic) {
			f.counters.Add(1)
			continue
		}
		if c.ch == nil {
			c.ch = NewChannel(f.cfg)
		}
		out = append(out, fieldValue{name, v, c})
	}
	return out
}

// pruneChannels drops the channels of d not seen for IdleAfter: when a
// new field finds d full, and at most once every IdleAfter of d's
// readings besides, so that the fields a device stopped sending do not
// stay as long as the device.
func (f *Filter) pruneChannels(d *deviceState, at time.Time) {
	for name, c := range d.channels {
		if at.Sub(c.last) > f.limits.IdleAfter {
			delete(d.channels, name)
			f.channels--
			f.dropped.Add(1)
		}
	}
}

// score scores one message: its numeric fields. With report, it returns
// the detections, readings and summaries to send up; without, it only
// learns. It returns the device scored, nil if none.
func (f *Filter) score(m Telemetry, report bool) (*deviceState, []Record) {
	prefix, fields := f.fields(m)
	if fields == nil {
		return nil, nil
	}
	d := f.device(m.Device, m.At)
	defer f.evict(d)
	if m.At.Sub(d.pruned) > f.limits.IdleAfter {
		f.pruneChannels(d, m.At)
		d.pruned = m.At
	}
	picked := f.pick(d, prefix, fields, m.At)
	if !report {
		for _, p := range picked {
			p.c.ch.Observe(m.At, p.v)
		}
		f.observeVector(d, picked, m.At)
		return d, nil
	}
	var up []Record
	if sum, ok := f.closePeriod(d, m.At); ok {
		up = append(up, Record{RecordSummary, d.id, m.At, sum})
	}
	detected := false
	for _, p := range picked {
		res := p.c.ch.Observe(m.At, p.v)
		p.c.latest = res.Score
		summarize(d, p.c, m.At, p.v, res.Score)
		if res.Detected {
			detected = true
			up = append(up, Record{RecordAnomaly, d.id, m.At, Detection{Type: RecordAnomaly, Device: d.id, Class: m.Class,
				Channel: p.name, Detector: res.Detector, Score: res.Score, Value: p.v, At: m.At}})
		}
	}
	if len(picked) > 0 {
		d.period.readings++
	}
	if res, names, values := f.observeVector(d, picked, m.At); names != "" {
		d.vecScore = res.Score
		if res.Detected {
			detected = true
			up = append(up, Record{RecordAnomaly, d.id, m.At, Detection{Type: RecordAnomaly, Device: d.id, Class: m.Class,
				Channel: names, Detector: res.Detector, Score: res.Score, Values: values, At: m.At}})
		}
	}
	// The context of a detection: the readings before it, it, and those
	// after it.
	switch {
	case detected:
		for _, r := range d.recent {
			up = append(up, Record{RecordReading, d.id, r.at, Reading{Type: RecordReading, Device: d.id, Topic: r.topic, At: r.at, Payload: r.payload}})
		}
		clear(d.recent)
		d.recent, d.recentN = d.recent[:0], 0
		up = append(up, readingRecord(m))
		d.after = f.uplink.After
	case d.after > 0:
		up = append(up, readingRecord(m))
		d.after--
	case len(m.Payload) <= f.limits.RecentBytes:
		d.keep(m, f.uplink.Before, f.limits.RecentBytes)
	}
	return d, up
}

// keep adds m to the device's recent readings, dropping the oldest past
// n readings or size bytes. They are dropped by moving the others down,
// so the slice never holds more than twice n.
func (d *deviceState) keep(m Telemetry, n, size int) {
	topic := m.Topic
	if k := len(d.recent); k > 0 && d.recent[k-1].topic == topic {
		topic = d.recent[k-1].topic // one string for all of them
	}
	d.recent = append(d.recent, recentReading{topic, m.At, bytes.Clone(m.Payload)})
	d.recentN += len(m.Payload)
	drop := 0
	for len(d.recent)-drop > n || d.recentN > size {
		d.recentN -= len(d.recent[drop].payload)
		drop++
	}
	if drop > 0 {
		k := copy(d.recent, d.recent[drop:])
		clear(d.recent[k:])
		d.recent = d.recent[:k]
	}
}

func readingRecord(m Telemetry) Record {
	return Record{RecordReading, m.Device, m.At, Reading{Type: RecordReading, Device: m.Device, Topic: m.Topic, At: m.At, Payload: m.Payload}}
}

// observeVector scores a reading's picked fields together (a Vector per
// device and set of fields); names is "" when there are fewer than two.
func (f *Filter) observeVector(d *deviceState, picked []fieldValue, at time.Time) (res Result, names string, values map[string]float64) {
	if len(picked) < 2 {
		return res, "", nil
	}
	keys := make([]string, len(picked))
	x := make([]float64, len(picked))
	values = make(map[string]float64, len(picked))
	for i, p := range picked { // sorted by name
		keys[i], x[i] = p.name, p.v
		values[p.name] = p.v
	}
	names = strings.Join(keys, "+")
	if d.vector == nil || d.vector.names != names {
		d.vector = &deviceVector{names: names, vec: NewVector(f.cfg, len(keys))}
	}
	return d.vector.vec.Observe(at, x), names, values
}

// closePeriod returns the summary of the device's period when a reading at
// at starts the next one.
func (f *Filter) closePeriod(d *deviceState, at time.Time) (Summary, bool) {
	p := &d.period
	if p.readings == 0 || at.Sub(p.from) < f.uplink.Summary {
		return Summary{}, false
	}
	sum := Summary{Type: RecordSummary, Device: d.id, From: p.from, To: p.to, Readings: p.readings, Channels: map[string]ChannelSummary{}}
	for name, ch := range d.channels {
		c := ch.sum
		if c == nil || c.count == 0 {
			continue
		}
		sum.Channels[name] = ChannelSummary{Count: c.count, Min: c.min, Max: c.max, Mean: c.sum / float64(c.count),
			P50: c.p50.value(), P95: c.p95.value(), MaxScore: c.maxScore}
		c.count, c.sum, c.maxScore = 0, 0, 0
		c.p50.reset()
		c.p95.reset()
	}
	p.readings = 0
	return sum, true
}

// summarize adds a channel's reading to its device's period.
func summarize(d *deviceState, ch *fieldState, at time.Time, v, score float64) {
	p := &d.period
	if p.readings == 0 {
		p.from = at
	}
	p.to = at
	c := ch.sum
	if c == nil {
		c = &channelPeriod{p50: newQuantile(0.5), p95: newQuantile(0.95)}
		ch.sum = c
	}
	if c.count == 0 {
		c.min, c.max = v, v
	}
	c.count, c.sum = c.count+1, c.sum+v
	c.min, c.max, c.maxScore = min(c.min, v), max(c.max, v), max(c.maxScore, score)
	c.p50.add(v)
	c.p95.add(v)
}
