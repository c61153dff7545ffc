package alarm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/weft-io/weft/anomaly"
	"github.com/weft-io/weft/store"
)

// Config configures an Engine. Store is required; the zero value of every
// other field works.
type Config struct {
	// Store is the node's store. Required.
	Store *store.Store
	// Edge says the node is an edge: it checks its own devices
	// (device_offline) and raises anomaly alarms from its own detections
	// only. A core takes in the alarms its edges send up instead.
	Edge bool
	// Uplink, on an edge linked to a core, appends every change to the
	// alarms about its devices, disk and certificates to /uplink/events,
	// which carries them to the core.
	Uplink bool
	// Links reports the node's sync links; nil: link_down is not checked.
	Links func() []Link
	// CertFiles are the node's certificate files (PEM) checked for
	// cert_expiring; none: not checked.
	CertFiles []string
	// DataDir is the directory whose file system is checked for disk_low;
	// empty: only volumes with a quota are.
	DataDir string
	// Statfs reports the free and total bytes of the file system holding
	// a directory. Default: statfs(2).
	Statfs func(dir string) (free, total int64, err error)
	// Rollouts is the table of rollout summaries checked for
	// rollout_halted (the core's /updates/rollouts); empty: not checked.
	Rollouts string
	// ModelDrift reports the drift of each model version the node runs
	// (NAME@VERSION -> drift, a Kolmogorov–Smirnov statistic in [0, 1]);
	// nil: model_drift is not checked.
	ModelDrift func() map[string]float64
	// ModelDriftAbove is the drift past which model_drift is raised.
	// Default 0.3.
	ModelDriftAbove float64
	// Tick is how often conditions are checked. Default 10s.
	Tick time.Duration
	// AnomalyQuiet is how long without a new detection clears a device's
	// anomaly alarm. Default 15m.
	AnomalyQuiet time.Duration
	// Retention is how long a cleared alarm is kept. Default 30 days.
	Retention time.Duration
	// Backoff is the pause before a webhook's first retry, doubled at each
	// retry up to a minute. Default 1s.
	Backoff time.Duration
	// Attempts is how many times a webhook is tried with one alarm.
	// Default 8.
	Attempts int
	// Queue is how many notifications wait for each webhook; more are
	// dropped (and counted). Default 1024.
	Queue int
	// Client posts webhooks. Default: an http.Client with a 10s timeout.
	Client *http.Client
	// Registerer receives the engine's metrics. Nil: they are not kept.
	Registerer prometheus.Registerer
	// Logger receives the engine's logs. Nil discards them.
	Logger *slog.Logger
	// Now is the clock. Default Store.Now.
	Now func() time.Time
}

// Link is a sync link as the engine sees it.
type Link struct {
	// Peer is the node at the other end.
	Peer string
	Up   bool
	// Since is when it last went up or down.
	Since time.Time
}

// Engine raises and clears a node's alarms and sends its webhooks.
type Engine struct {
	cfg     Config
	st      *store.Store
	name    string
	log     *slog.Logger
	metrics *metrics
	hooks   *notifier

	// open are the open alarms this node raised, by key; only Run's
	// goroutine touches it.
	open map[string]Record
	// published is what the core last sent its edges of its settings.
	published []byte
	// pruned is when cleared alarms were last pruned.
	pruned time.Time
}

// New checks cfg, applies its defaults and returns an engine.
func New(cfg Config) (*Engine, error) {
	if cfg.Store == nil {
		return nil, errors.New("alarm: no store")
	}
	if cfg.Statfs == nil {
		cfg.Statfs = statfs
	}
	if cfg.Tick <= 0 {
		cfg.Tick = 10 * time.Second
	}
	if cfg.ModelDriftAbove <= 0 {
		cfg.ModelDriftAbove = 0.3
	}
	if cfg.AnomalyQuiet <= 0 {
		cfg.AnomalyQuiet = 15 * time.Minute
	}
	if cfg.Retention <= 0 {
		cfg.Retention = 30 * 24 * time.Hour
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = time.Second
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = 8
	}
	if cfg.Queue <= 0 {
		cfg.Queue = 1024
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = cfg.Store.Now
	}
	e := &Engine{cfg: cfg, st: cfg.Store, name: cfg.Store.Name(), log: cfg.Logger.With("component", "alarms"), metrics: newMetrics()}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(e.metrics); err != nil {
			return nil, fmt.Errorf("alarm: metrics: %w", err)
		}
	}
	e.hooks = newNotifier(e)
	return e, nil
}

// uplinkGroup is the engine's consumer group on /uplink/events.
const uplinkGroup = "alarms"

// Run checks conditions every tick, follows /uplink/events and sends
// webhooks until ctx ends.
func (e *Engine) Run(ctx context.Context) error {
	if err := Ensure(ctx, e.st); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.hooks.run(ctx)
	}()
	defer func() { <-done }()

	up := e.st.Stream(store.UplinkStream)
	c, err := up.Consumer(store.ConsumerConfig{Group: uplinkGroup, Logger: e.log, Skip: func(topic string) bool {
		return e.cfg.Edge && topic != e.name
	}})
	if err != nil {
		return err
	}
	if err := e.reload(ctx); err != nil {
		e.log.Warn("alarms not read", "err", err)
	}
	tick := time.NewTicker(e.cfg.Tick)
	defer tick.Stop()
	due, failures := true, 0
	for {
		changed := up.Changed()
		if due {
			if err := e.Check(ctx); err != nil && ctx.Err() == nil {
				e.log.Warn("alarm check failed", "err", err)
			}
			due = false
		}
		more, err := c.Pass(ctx, e.handleUplink)
		if ctx.Err() != nil {
			return nil
		}
		var retry <-chan time.Time
		if err != nil {
			failures++
			e.log.Warn("uplink records not taken in; retrying", "err", err, "failures", failures)
			retry = time.After(min(time.Duration(failures)*time.Second, 30*time.Second))
			changed = nil
			if err := e.reload(ctx); err != nil {
				e.log.Warn("alarms not read", "err", err)
			}
		} else {
			failures = 0
			if more {
				continue
			}
		}
		select {
		case <-changed:
		case <-retry:
		case <-tick.C:
			due = true
		case <-ctx.Done():
			return nil
		}
	}
}

// reload reads the node's open alarms from its table.
func (e *Engine) reload(ctx context.Context) error {
	recs, err := Records(ctx, e.st)
	if err != nil {
		return err
	}
	e.open = map[string]Record{}
	for _, r := range recs {
		if r.Node == e.name && r.Open() {
			e.open[r.Key] = r
		}
	}
	return nil
}

// Check looks at every condition once and writes the alarms raised,
// changed and cleared. Run calls it every tick; it must not be called
// while Run runs.
func (e *Engine) Check(ctx context.Context) error {
	if e.open == nil {
		if err := e.reload(ctx); err != nil {
			return err
		}
	}
	set, version, err := LoadSettings(ctx, e.st)
	if err != nil {
		return err
	}
	now := e.cfg.Now().UTC()
	var errs []error
	if !e.cfg.Edge {
		if err := e.publish(ctx, set, version); err != nil {
			errs = append(errs, err)
		}
	}
	var checked []string
	var held []Condition
	add := func(typ string, conds []Condition, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", typ, err))
			return // not checked: its alarms stay as they are
		}
		checked = append(checked, typ)
		held = append(held, conds...)
	}
	var devCerts []Condition
	var devErr error
	if e.cfg.Edge {
		var conds []Condition
		conds, devCerts, devErr = e.offlineDevices(ctx, set, now)
		add(DeviceOffline, conds, devErr)
	}
	if e.cfg.Links != nil {
		add(LinkDown, e.downLinks(set, now), nil)
	}
	conds, err := e.lowDisks(set)
	add(DiskLow, conds, err)
	if len(e.cfg.CertFiles) > 0 || e.cfg.Edge {
		// The node's certificates and, at an edge, its devices' (as they
		// last connected).
		add(CertExpiring, append(e.expiringCerts(set, now), devCerts...), devErr)
		add(CertMissing, e.missingCerts(), nil)
	}
	add(Clock, e.clockTrouble(), nil)
	conds, err = e.damagedStreams(ctx)
	add(StoreDamaged, conds, err)
	if e.cfg.Rollouts != "" {
		conds, err := e.haltedRollouts(ctx)
		add(RolloutHalted, conds, err)
	}
	add(Anomaly, e.anomaliesGoingOn(now), nil)
	if e.cfg.ModelDrift != nil {
		add(ModelDrift, e.driftingModels(), nil)
	}

	open := make([]Record, 0, len(e.open))
	for _, r := range e.open {
		open = append(open, r)
	}
	slices.SortFunc(open, func(a, b Record) int { return compare(a.Key, b.Key) })
	if err := e.apply(ctx, Step(e.name, open, checked, held, now)); err != nil {
		return err
	}
	if now.Sub(e.pruned) >= pruneEvery {
		if err := e.prune(ctx, now); err != nil {
			errs = append(errs, err)
		} else {
			e.pruned = now
		}
	}
	e.count()
	return errors.Join(errs...)
}

// apply writes changes (re-based on what the table holds, which an
// acknowledgement may have changed since) and keeps e.open up to date.
func (e *Engine) apply(ctx context.Context, changes []Record) error {
	if len(changes) == 0 {
		return nil
	}
	var written []Record
	err := e.st.Write(ctx, func(tx *store.Tx) error {
		written = written[:0]
		for _, r := range changes {
			cur, exists, err := getIn(tx, r.ID)
			if err != nil {
				return err
			}
			out, ok := rebase(cur, exists, r)
			if !ok {
				continue
			}
			if err := e.put(tx, out); err != nil {
				return err
			}
			written = append(written, out)
		}
		return nil
	})
	if err != nil {
		if rerr := e.reload(ctx); rerr != nil {
			e.log.Warn("alarms not read", "err", rerr)
		}
		return err
	}
	for _, r := range written {
		e.remember(r)
	}
	for _, r := range changes {
		if !r.Open() {
			delete(e.open, r.Key)
		}
	}
	return nil
}

func (e *Engine) remember(r Record) {
	if r.Node != e.name {
		return
	}
	if r.Open() {
		e.open[r.Key] = r
	} else if o, ok := e.open[r.Key]; ok && o.ID == r.ID {
		delete(e.open, r.Key)
	}
}

// put stages a record and, on an edge that sends its alarms up, its copy
// for the core.
func (e *Engine) put(tx *store.Tx, r Record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if _, err := tx.Put(AlarmsTable, r.ID, b); err != nil {
		return err
	}
	if !e.cfg.Uplink || r.Node != e.name || !sentUp(r.Type) {
		return nil
	}
	key := r.Device
	if key == "" {
		key = e.name
	}
	_, err = tx.Append(store.AppendRequest{Path: store.UplinkStream, Topic: e.name, Partition: -1, Messages: []store.Message{{
		Key: []byte(key), Value: b, Timestamp: r.At,
		Headers: map[string]string{anomaly.RecordHeader: RecordAlarm},
	}}})
	return err
}

// sentUp reports whether an edge sends alarms of type typ to its core:
// those about its devices, disk, certificates and clock. The core raises its own
// link_down (it sees the link too) and anomaly alarms (from the
// detections the edge sends up).
func sentUp(typ string) bool {
	return typ == DeviceOffline || typ == DiskLow || typ == CertExpiring || typ == CertMissing || typ == Clock ||
		typ == StoreDamaged
}

func getIn(tx *store.Tx, id string) (Record, bool, error) {
	d, exists, err := tx.Get(AlarmsTable, id)
	if err != nil || !exists {
		return Record{}, false, err
	}
	var r Record
	if err := json.Unmarshal(d.Value, &r); err != nil {
		return Record{}, false, nil // unreadable: replaced
	}
	return r, true, nil
}

// rebase applies change r to cur, the record as the table holds it: a
// clear or update keeps an acknowledgement made meanwhile. ok is false
// when there is nothing to write.
func rebase(cur Record, exists bool, r Record) (Record, bool) {
	if !exists {
		return r, r.Event == EventRaised || r.Open()
	}
	switch r.Event {
	case EventCleared:
		if !cur.Open() {
			return cur, false
		}
		return Clear(cur, r.By, r.At), true
	case EventUpdated:
		if !cur.Open() {
			return cur, false
		}
		cur.Severity, cur.Details, cur.Event, cur.By, cur.At = r.Severity, r.Details, EventUpdated, r.By, r.At
		return cur, true
	}
	return cur, false // raised already
}

// pruneEvery is how often cleared alarms past Retention are deleted.
const pruneEvery = time.Hour

// prune deletes the alarms cleared longer than Retention ago.
func (e *Engine) prune(ctx context.Context, now time.Time) error {
	recs, err := Records(ctx, e.st)
	if err != nil {
		return err
	}
	var old []string
	for _, r := range recs {
		if r.Cleared != nil && r.State == Cleared && now.Sub(*r.Cleared) > e.cfg.Retention {
			old = append(old, r.ID)
		}
	}
	if len(old) == 0 {
		return nil
	}
	return e.st.Write(ctx, func(tx *store.Tx) error {
		for _, id := range old {
			if err := tx.Delete(AlarmsTable, id); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
		}
		return nil
	})
}

// count sets the active-alarm gauges.
func (e *Engine) count() {
	n := map[string]int{}
	for _, r := range e.open {
		if r.State == Active {
			n[r.Type]++
		}
	}
	e.metrics.setActive(n)
}

// handleUplink takes in a batch of /uplink/events: detections raise or
// update anomaly alarms; at the core, the alarms of edges are merged into
// its table.
func (e *Engine) handleUplink(_ context.Context, b store.Batch) (func(tx *store.Tx) error, error) {
	var changes []Record
	var fromEdges []Record
	now := e.cfg.Now().UTC()
	for _, m := range b.Messages {
		switch m.Headers[anomaly.RecordHeader] {
		case anomaly.RecordAnomaly:
			var d anomaly.Detection
			if json.Unmarshal(m.Value, &d) != nil || d.Device == "" {
				continue
			}
			if r, ok := e.detected(d, b.Topic, now); ok {
				changes = append(changes, r)
				e.open[r.Key] = r
			}
		case RecordAlarm:
			if e.cfg.Edge || b.Topic == e.name {
				continue
			}
			var r Record
			if json.Unmarshal(m.Value, &r) != nil || r.ID == "" || r.Node != b.Topic {
				continue
			}
			fromEdges = append(fromEdges, r)
		}
	}
	if len(changes) == 0 && len(fromEdges) == 0 {
		return nil, nil
	}
	return func(tx *store.Tx) error {
		for _, r := range changes {
			cur, exists, err := getIn(tx, r.ID)
			if err != nil {
				return err
			}
			if exists {
				// Keep an acknowledgement made meanwhile.
				r.State, r.Acknowledged = cur.State, cur.Acknowledged
			}
			if err := e.put(tx, r); err != nil {
				return err
			}
		}
		for _, in := range fromEdges {
			cur, exists, err := getIn(tx, in.ID)
			if err != nil {
				return err
			}
			b, err := json.Marshal(Merge(cur, exists, in))
			if err != nil {
				return err
			}
			if _, err := tx.Put(AlarmsTable, in.ID, b); err != nil {
				return err
			}
		}
		return nil
	}, nil
}

// anomalyDetails are the details of an anomaly alarm.
type anomalyDetails struct {
	Score      float64   `json:"score"`
	Channel    string    `json:"channel"`
	Detector   string    `json:"detector"`
	Value      float64   `json:"value"`
	Detections int       `json:"detections"`
	Last       time.Time `json:"last"`
}

// detected is the anomaly alarm of device d.Device after detection d: a
// new one, or the open one updated (its severity raised to the worst
// detection's, its last detection moved). ok is false when nothing needs
// writing (a detection within a minute of the last one written, no
// worse).
func (e *Engine) detected(d anomaly.Detection, edge string, now time.Time) (Record, bool) {
	key := Anomaly + "/" + d.Device
	sev := AnomalySeverity(d.Score)
	at := d.At.UTC()
	if at.IsZero() || at.After(now) {
		at = now
	}
	r, ok := e.open[key]
	if !ok {
		det, _ := json.Marshal(anomalyDetails{Score: d.Score, Channel: d.Channel, Detector: d.Detector, Value: d.Value, Detections: 1, Last: at})
		return Record{
			Alarm: Alarm{ID: NewID(e.name, key, at), Type: Anomaly, Severity: sev, State: Active, Device: d.Device, Edge: edge,
				Raised: at, Details: det},
			Key: key, Node: e.name, Event: EventRaised, At: now,
		}, true
	}
	var det anomalyDetails
	_ = json.Unmarshal(r.Details, &det)
	worse := rank(sev) < rank(r.Severity)
	det.Detections++
	if !worse && at.Sub(det.Last) < time.Minute {
		e.open[key] = withDetails(r, det)
		return Record{}, false
	}
	if worse {
		r.Severity = sev
		det.Score, det.Channel, det.Detector, det.Value = d.Score, d.Channel, d.Detector, d.Value
	}
	if at.After(det.Last) {
		det.Last = at
	}
	r = withDetails(r, det)
	r.Event, r.By, r.At = EventUpdated, "", now
	return r, true
}

func withDetails(r Record, det anomalyDetails) Record {
	r.Details, _ = json.Marshal(det)
	return r
}

func rank(sev string) int {
	switch sev {
	case Critical:
		return 0
	case Major:
		return 1
	case Minor:
		return 2
	}
	return 3
}

// anomaliesGoingOn are the anomaly conditions that hold: the open anomaly
// alarms with a detection in the last AnomalyQuiet.
func (e *Engine) anomaliesGoingOn(now time.Time) []Condition {
	var out []Condition
	for _, r := range e.open {
		if r.Type != Anomaly {
			continue
		}
		var det anomalyDetails
		_ = json.Unmarshal(r.Details, &det)
		last := det.Last
		if last.IsZero() {
			last = r.Raised
		}
		if now.Sub(last) < e.cfg.AnomalyQuiet {
			out = append(out, Condition{Key: r.Key, Type: Anomaly, Severity: r.Severity, Device: r.Device, Edge: r.Edge, Details: r.Details})
		}
	}
	return out
}

func statfs(dir string) (free, total int64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), int64(st.Blocks) * int64(st.Bsize), nil
}

// nodeEdge is what the Edge member of the node's own alarms says: its
// name on an edge, nothing at the core.
func (e *Engine) nodeEdge() string {
	if e.cfg.Edge {
		return e.name
	}
	return ""
}

func jsonOf(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}

// driftingModels are the model versions whose drift is past
// ModelDriftAbove.
func (e *Engine) driftingModels() []Condition {
	var out []Condition
	for ref, d := range e.cfg.ModelDrift() {
		if d > e.cfg.ModelDriftAbove {
			out = append(out, Condition{Key: keyOf(ModelDrift, ref), Type: ModelDrift, Severity: Warning, Edge: e.nodeEdge(),
				Details: jsonOf(map[string]any{"model": ref, "drift": d, "above": e.cfg.ModelDriftAbove, "node": e.name})})
		}
	}
	slices.SortFunc(out, func(a, b Condition) int { return compare(a.Key, b.Key) })
	return out
}

func keyOf(parts ...string) string { return strings.Join(parts, "/") }
