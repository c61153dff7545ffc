package edge

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/weft-io/weft/anomaly"
	sig "github.com/weft-io/weft/internal/signed"
	"github.com/weft-io/weft/models"
	"github.com/weft-io/weft/models/external"
	"github.com/weft-io/weft/shadow"
	"github.com/weft-io/weft/store"
)

// modelsGroup is the consumer group under which the model runner follows
// the edge's events.
const modelsGroup = "models"

// Models is the shell of the edge's model runner (models.Runner): every
// Every it reads the edge's mirror of /models and the classes of its
// devices, has the runner verify what is new, and appends the runner's
// status records to /uplink/events (topic: the edge's name, key: the
// model's name) when they changed or ReportEvery passed; meanwhile it
// feeds the runner the devices' telemetry from /telemetry/events, from
// its end on (a model warms up like the defaults do). Refusals are
// logged with their reason and counted (weft_models_versions).
type Models struct {
	// Store is the edge's store. Required.
	Store *store.Store
	// Edge is the edge's name: its topic in /telemetry/events and
	// /uplink/events. Required.
	Edge string
	// KeyFile is the pinned model key, the core's model.pub.json (read at
	// each check). Missing: every model is refused as unknown_key.
	KeyFile string
	// Every is how often the mirror is checked. Default 30s.
	Every time.Duration
	// Deadline is how long a live model has to answer a reading before
	// the next in its class's schedule, or the defaults, answer, when the
	// class's schedule set at the core (/models/schedules.json) gives it
	// none. Default models.DefaultDeadline (10ms).
	Deadline time.Duration
	// Dir is where external models' executables are unpacked, each
	// checked against its manifest, and where the runner's state is kept
	// across restarts. Default <the store's directory>/models.
	Dir string
	// Launch runs external models. Default models/external's Launcher,
	// logging to Logger.
	Launch models.Launch
	// Decoy samples the readings archived for training (models.Decoy: one
	// in 1,000 of a class, at most 10 a minute, by default).
	Decoy models.Decoy
	// ReportEvery is the longest between two reports of an unchanged
	// state. Default 5m.
	ReportEvery time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives the runner's logs. Nil discards them.
	Logger *slog.Logger

	mu       sync.Mutex
	runner   models.Runner
	reported map[string]string // model -> last reported versions (JSON)
	last     time.Time
	logged   map[string]string // name@version -> reason logged
	keyErr   string
	// routed is set when the edge's scorer runs the rendezvous on its
	// batches (route); Run then follows no stream of its own.
	routed  bool
	minutes map[models.Ref]*minute
	// unpacked caches the executables unpacked, by store path.
	unpacked map[string]unpackedExec
	// restored is set once the runner's state saved before a restart was
	// read.
	restored bool
	// routedAny is set once route fed the runner a reading.
	routedAny bool
}

// stateFile is the runner's state (models.State) in Dir, written at each
// check and when the edge stops, read at start.
const stateFile = "state.json"

// unpackedExec is an executable unpacked from the store: the stored
// file's digest it was unpacked from, and what was written.
type unpackedExec struct {
	stored string
	exec   models.Exec
}

var _ prometheus.Collector = (*Models)(nil)

func (m *Models) defaults() {
	if m.Every <= 0 {
		m.Every = 30 * time.Second
	}
	if m.ReportEvery <= 0 {
		m.ReportEvery = 5 * time.Minute
	}
	if m.Now == nil {
		m.Now = time.Now
	}
	if m.Logger == nil {
		m.Logger = slog.New(slog.DiscardHandler)
	}
	if m.reported == nil {
		m.reported, m.logged = map[string]string{}, map[string]string{}
	}
	if m.runner.Clock == nil {
		m.runner.Clock = time.Now
	}
	m.runner.Deadline = m.Deadline
	if m.Dir == "" {
		m.Dir = filepath.Join(m.Store.Dir(), "models")
	}
	if abs, err := filepath.Abs(m.Dir); err == nil {
		m.Dir = abs
	}
	if m.Launch == nil {
		m.Launch = external.Launcher(external.Config{Logger: m.Logger})
	}
	m.runner.Launch = m.Launch
	if m.unpacked == nil {
		m.unpacked = map[string]unpackedExec{}
	}
}

// Run checks the mirror and scores telemetry until ctx ends.
func (m *Models) Run(ctx context.Context) error {
	m.mu.Lock()
	m.defaults()
	routed := m.routed
	m.mu.Unlock()
	if err := ensureScores(ctx, m.Store); err != nil {
		return fmt.Errorf("edge: %s: %w", models.ScoresStream, err)
	}
	defer m.stop()
	if routed {
		return m.check(ctx, true)
	}
	events := m.Store.Stream(store.EventsStream)
	c, err := events.Consumer(store.ConsumerConfig{Group: modelsGroup, Start: store.StartNewest,
		Skip: func(topic string) bool { return topic != m.Edge }, Limit: batchSize, Logger: m.Logger})
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := c.Run(ctx, m.handle); err != nil && ctx.Err() == nil {
			m.Logger.Error("model scoring stopped", "err", err)
		}
	})
	defer wg.Wait()
	return m.check(ctx, false)
}

// check runs Check every Every until ctx ends; with warm, the first
// check is followed by a warm-up.
func (m *Models) check(ctx context.Context, warm bool) error {
	t := time.NewTicker(m.Every)
	defer t.Stop()
	for {
		if err := m.Check(ctx); err != nil && ctx.Err() == nil {
			m.Logger.Warn("models not checked", "err", err)
		} else if warm {
			if err := m.warm(ctx); err != nil && ctx.Err() == nil {
				m.Logger.Warn("models not warmed up", "err", err)
			}
		}
		warm = false
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// stop saves the runner's state and ends the programs of external
// models.
func (m *Models) stop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.restored {
		if err := m.save(m.runner.State(m.Now())); err != nil {
			m.Logger.Warn("model state not saved", "err", err)
		}
	}
	m.runner.Close()
}

// restore gives the runner the state saved before a restart, once.
func (m *Models) restore() {
	if m.restored {
		return
	}
	m.restored = true
	b, err := os.ReadFile(filepath.Join(m.Dir, stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	var st models.State
	if err == nil {
		err = json.Unmarshal(b, &st)
	}
	if err != nil {
		m.Logger.Warn("model state unreadable: counters start again", "err", err)
		return
	}
	m.runner.Restore(st)
	m.Logger.Info("model state restored", "saved", st.Saved, "versions", len(st.Versions))
}

// save writes the runner's state to Dir, replacing the last one whole.
func (m *Models) save(st models.State) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(m.Dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(m.Dir, ".state-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err = f.Write(b); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(f.Name(), filepath.Join(m.Dir, stateFile))
}

// warm feeds the running versions the recent events before the edge's
// scorer's cursor (at most warmReplay a partition), as the scorer warms
// the defaults up, so that after a restart a model does not answer from
// a cold start. It does nothing once the rendezvous has scored a
// reading: older readings must not follow newer ones.
func (m *Models) warm(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.routedAny {
		return nil
	}
	events := m.Store.Stream(store.EventsStream)
	info, err := m.Store.Stat(ctx, store.EventsStream)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	total := 0
	for part := range max(info.Partitions, 1) {
		until, ok, err := events.Cursor(ctx, scoreGroup, m.Edge, part)
		if err != nil || !ok {
			return err
		}
		low, _, err := events.Bounds(ctx, m.Edge, part)
		if err != nil {
			return err
		}
		for from := max(low, until-min(until, warmReplay)); from < until; {
			msgs, err := events.Read(ctx, m.Edge, part, from, store.ReadOptions{Limit: batchSize})
			if err != nil || len(msgs) == 0 {
				return err
			}
			for _, msg := range msgs {
				if msg.Offset >= until {
					break
				}
				t := telemetry(msg)
				if vals := models.Values(t.Device, t.Topic, t.Payload); len(vals) > 0 {
					m.runner.Learn(t.Device, t.Class, t.At, vals)
					total++
				}
			}
			from = msgs[len(msgs)-1].Offset + 1
		}
	}
	if total > 0 {
		m.Logger.Info("models warmed up from the recent events", "readings", total)
	}
	return nil
}

// handle feeds a batch of events to the runner; it commits nothing of
// its own.
func (m *Models) handle(_ context.Context, b store.Batch) (func(tx *store.Tx) error, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, msg := range b.Messages {
		t := telemetry(msg)
		if vals := models.Values(t.Device, t.Topic, t.Payload); len(vals) > 0 {
			m.runner.Observe(t.Device, t.Class, t.At, vals)
		}
	}
	return nil, nil
}

// Check reads the mirror and the devices' classes, syncs the runner and
// reports what changed.
func (m *Models) Check(ctx context.Context) error {
	m.mu.Lock()
	m.defaults()
	m.mu.Unlock()
	arts, err := m.artifacts(ctx)
	if err != nil {
		return err
	}
	scheds, err := models.ReadSchedules(ctx, m.Store)
	if err != nil {
		m.Logger.Warn("model schedules unreadable", "err", err)
	}
	sum, err := shadow.Summarize(ctx, m.Store, shadow.Filter{}, m.Now())
	if err != nil {
		return err
	}
	classes := map[string]bool{}
	for _, c := range sum.Classes {
		if c.Devices > 0 {
			classes[c.Name] = true
		}
	}
	var keys []sig.Key
	keyErr := ""
	if k, err := models.ReadPublicKey(m.KeyFile); err == nil {
		keys = []sig.Key{k}
	} else if len(arts) > 0 {
		keyErr = err.Error()
	}
	m.mu.Lock()
	if keyErr != "" && keyErr != m.keyErr {
		m.Logger.Warn("no model key pinned: every model is refused", "file", m.KeyFile, "err", keyErr)
	}
	m.keyErr = keyErr
	m.runner.Keys = keys
	m.runner.Schedules = scheds.Classes
	m.restore()
	m.runner.Sync(arts, classes)
	now := m.Now()
	recs := m.runner.Status(m.Edge, now)
	var out []store.Message
	due := now.Sub(m.last) >= m.ReportEvery
	for _, r := range recs {
		for v, st := range r.Versions {
			ref := r.Model + "@" + v
			if st.State == models.StateRefused && m.logged[ref] != st.Reason {
				m.Logger.Warn("model refused", "model", ref, "class", r.Class, "reason", st.Reason, "detail", st.Detail)
			}
			if st.State == models.StateRunning && m.logged[ref] != models.StateRunning {
				m.Logger.Info("model running", "model", ref, "class", r.Class)
			}
			m.logged[ref] = st.Reason
			if st.State == models.StateRunning {
				m.logged[ref] = models.StateRunning
			}
		}
		vb, _ := json.Marshal(r.Versions)
		if !due && m.reported[r.Model] == string(vb) {
			continue
		}
		b, err := json.Marshal(r)
		if err != nil {
			m.mu.Unlock()
			return err
		}
		out = append(out, store.Message{Key: []byte(r.Model), Value: b, Timestamp: now,
			Headers: map[string]string{anomaly.RecordHeader: models.RecordStatus}})
		m.reported[r.Model] = string(vb)
	}
	if due {
		m.last = now
	}
	state := m.runner.State(now)
	m.mu.Unlock()
	if err := m.save(state); err != nil {
		m.Logger.Warn("model state not saved", "err", err)
	}
	if len(out) == 0 {
		return nil
	}
	if _, err := m.Store.Stream(store.UplinkStream).Append(ctx, m.Edge, out...); err != nil {
		return fmt.Errorf("edge: model status to the uplink: %w", err)
	}
	return nil
}

// artifacts reads every version under /models with its stage; a file
// not (yet) there is nil.
func (m *Models) artifacts(ctx context.Context) ([]models.Artifact, error) {
	names, err := m.Store.List(ctx, "/"+models.Volume)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	reg := &models.Registry{Store: m.Store}
	var out []models.Artifact
	for _, n := range names {
		name := path.Base(n.Path)
		if n.Kind != store.KindDir || !models.ValidName(name) {
			continue
		}
		stages, err := reg.Stages(ctx, name)
		if err != nil {
			m.Logger.Warn("model stages unreadable", "model", name, "err", err)
			continue
		}
		vers, err := m.Store.List(ctx, n.Path)
		if err != nil {
			return nil, err
		}
		for _, d := range vers {
			v, err := models.ParseVersion(path.Base(d.Path))
			if err != nil || d.Kind != store.KindDir {
				continue
			}
			a := models.Artifact{Name: name, Version: v, Stage: stages.Stage(v)}
			if a.Stage != models.StageCandidate && a.Stage != models.StageLive {
				out = append(out, a)
				continue
			}
			if a.Manifest, err = readLimited(ctx, m.Store, d.Path+"/"+models.ManifestFile, models.MaxManifestSize); err != nil {
				return nil, err
			}
			if a.Params, err = readLimited(ctx, m.Store, d.Path+"/"+models.ParamsName, models.MaxParamsSize); err != nil {
				return nil, err
			}
			if a.Exec, err = m.unpack(ctx, name, v, d.Path+"/"+models.ExecFile); err != nil {
				return nil, err
			}
			out = append(out, a)
		}
	}
	m.prune(out)
	return out, nil
}

// prune removes from Dir the executables of versions no longer
// candidate or live (a program still running from one keeps its file
// open until it is stopped).
func (m *Models) prune(arts []models.Artifact) {
	keep := map[string]bool{}
	for _, a := range arts {
		if a.Exec != nil {
			keep[filepath.Dir(a.Exec.Path)] = true
		}
	}
	names, _ := os.ReadDir(m.Dir)
	for _, n := range names {
		if !n.IsDir() || !models.ValidName(n.Name()) {
			continue
		}
		vers, _ := os.ReadDir(filepath.Join(m.Dir, n.Name()))
		left := len(vers)
		for _, v := range vers {
			dir := filepath.Join(m.Dir, n.Name(), v.Name())
			if _, err := models.ParseVersion(v.Name()); err != nil || !v.IsDir() || keep[dir] {
				continue
			}
			if os.RemoveAll(dir) == nil {
				left--
				m.mu.Lock()
				for p, u := range m.unpacked {
					if filepath.Dir(u.exec.Path) == dir {
						delete(m.unpacked, p)
					}
				}
				m.mu.Unlock()
			}
		}
		if left == 0 {
			os.Remove(filepath.Join(m.Dir, n.Name()))
		}
	}
}

// unpack writes the executable stored at p (if any) under Dir, once per
// stored content, and returns what it wrote: its path, SHA-256 and size,
// which the runner verifies against the manifest before the program may
// run. Nil when there is no such file.
func (m *Models) unpack(ctx context.Context, name string, v uint64, p string) (*models.Exec, error) {
	rc, info, err := m.Store.File(p).Open(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	m.mu.Lock()
	done, ok := m.unpacked[p]
	m.mu.Unlock()
	if ok && done.stored == info.SHA256 {
		if fi, err := os.Stat(done.exec.Path); err == nil && fi.Size() == done.exec.Size {
			return &done.exec, nil
		}
	}
	dir := filepath.Join(m.Dir, name, strconv.FormatUint(v, 10))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("edge: unpack %s: %w", p, err)
	}
	tmp, err := os.CreateTemp(dir, ".exec-*")
	if err != nil {
		return nil, fmt.Errorf("edge: unpack %s: %w", p, err)
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(rc, models.MaxExecSize+1))
	if err == nil {
		err = tmp.Chmod(0o500)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	target := filepath.Join(dir, models.ExecFile)
	if err == nil {
		err = os.Rename(tmp.Name(), target)
	}
	if err != nil {
		return nil, fmt.Errorf("edge: unpack %s: %w", p, err)
	}
	x := models.Exec{Path: target, Size: n}
	h.Sum(x.SHA256[:0])
	m.mu.Lock()
	m.unpacked[p] = unpackedExec{stored: info.SHA256, exec: x}
	m.mu.Unlock()
	return &x, nil
}

// readLimited reads a file of at most limit bytes (one more is read, so
// that a larger file fails verification); nil when it does not exist.
func readLimited(ctx context.Context, st *store.Store, p string, limit int64) ([]byte, error) {
	rc, _, err := st.File(p).Open(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(io.LimitReader(rc, limit+1))
}

// ModelKeyFile is where an edge finds the pinned model key in its
// certificate directory.
func ModelKeyFile(certsDir string) string { return filepath.Join(certsDir, models.PublicKeyFile) }

var modelVersionsDesc = prometheus.NewDesc("weft_models_versions",
	"Model versions of the edge's device classes by state (running, refused, stopped) and refusal reason.", []string{"state", "reason"}, nil)

var modelDriftDesc = prometheus.NewDesc("weft_models_drift",
	"Drift of a running model version: the largest Kolmogorov-Smirnov statistic of its recent scores against its training scores and of its channels' recent readings against their training summary (0 to 1).", []string{"model"}, nil)

// Drifts returns the drift of each running version, by NAME@VERSION.
func (m *Models) Drifts() map[string]float64 {
	m.mu.Lock()
	recs := m.runner.Status(m.Edge, time.Time{})
	m.mu.Unlock()
	out := map[string]float64{}
	for _, r := range recs {
		for v, st := range r.Versions {
			if st.State == models.StateRunning {
				out[r.Model+"@"+v] = st.Drift
			}
		}
	}
	return out
}

var modelFaultsDesc = prometheus.NewDesc("weft_models_faults_total",
	"Answers of a running model version not used because it was slow, panicked, crashed (an external model's program) or returned garbage (each isolates the version for a while).", []string{"model", "fault"}, nil)

func (m *Models) Describe(ch chan<- *prometheus.Desc) {
	ch <- modelVersionsDesc
	ch <- modelFaultsDesc
	ch <- modelDriftDesc
}

func (m *Models) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	recs := m.runner.Status(m.Edge, time.Time{})
	faults := m.runner.Faults()
	m.mu.Unlock()
	for ref, f := range faults {
		for kind, n := range f {
			ch <- prometheus.MustNewConstMetric(modelFaultsDesc, prometheus.CounterValue, float64(n), ref.String(), kind)
		}
	}
	n := map[[2]string]int{}
	for _, r := range recs {
		for v, st := range r.Versions {
			n[[2]string{st.State, st.Reason}]++
			if st.State == models.StateRunning {
				ch <- prometheus.MustNewConstMetric(modelDriftDesc, prometheus.GaugeValue, st.Drift, r.Model+"@"+v)
			}
		}
	}
	for k, c := range n {
		ch <- prometheus.MustNewConstMetric(modelVersionsDesc, prometheus.GaugeValue, float64(c), k[0], k[1])
	}
}
