package shadow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/weft-io/weft/store"
)

// DefaultWatcherGroup is the consumer group under which a Watcher records
// how far it has followed /shadows/changes.
const DefaultWatcherGroup = "shadow-watcher"

// WatcherConfig configures a Watcher. Store is required; the zero value of
// every other field works.
type WatcherConfig struct {
	// Store holds the shadows. Required.
	Store *store.Store
	// Group is the consumer group of the watcher's cursors in
	// /shadows/changes. Default DefaultWatcherGroup.
	Group string
	// Logger receives the watcher's logs. Nil discards them.
	Logger *slog.Logger
}

// Watcher keeps every shadow's delta, reported_ts and firmware up to date
// as reported state changes: it follows /shadows/changes (every topic and
// partition, waking on each commit to the stream, never polling) and
// reconciles each device whose shadow changed. Its position is a consumer
// cursor per topic and partition, so a restart resumes where it stopped;
// on a topic it has no cursor for yet, it reconciles every shadow once and
// starts at the end.
//
// Its own writes are changes too: reconciling them again finds nothing to
// change and writes nothing, so the watcher does not loop.
type Watcher struct {
	cfg    WatcherConfig
	log    *slog.Logger
	st     *store.Stream
	pos    map[partKey]uint64
	primed bool
	passes atomic.Uint64
	writes atomic.Uint64
}

type partKey struct {
	topic string
	part  int
}

// NewWatcher checks cfg and applies its defaults.
func NewWatcher(cfg WatcherConfig) (*Watcher, error) {
	if cfg.Store == nil {
		return nil, errors.New("shadow: watcher needs a store")
	}
	if cfg.Group == "" {
		cfg.Group = DefaultWatcherGroup
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Watcher{
		cfg: cfg,
		log: cfg.Logger.With("component", "shadow-watcher"),
		st:  cfg.Store.Stream(store.ShadowChanges),
		pos: map[partKey]uint64{},
	}, nil
}

// Passes is how many passes over the change stream the watcher has
// completed; a pass that started after a change has reconciled it.
func (w *Watcher) Passes() uint64 { return w.passes.Load() }

// Writes is how many shadows the watcher has rewritten.
func (w *Watcher) Writes() uint64 { return w.writes.Load() }

// Run follows the change stream until ctx ends, then returns nil. A failed
// pass (an I/O error, a panic) is logged and retried with backoff.
func (w *Watcher) Run(ctx context.Context) error {
	failures := 0
	for {
		changed := w.st.Changed()
		err := w.safePass(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var retry <-chan time.Time
		if err != nil {
			failures++
			w.log.Warn("shadow watcher pass failed; retrying", "err", err, "failures", failures)
			retry = time.After(min(time.Duration(failures)*time.Second, 30*time.Second))
			changed = nil
		} else {
			failures = 0
			w.passes.Add(1)
		}
		select {
		case <-changed:
		case <-retry:
		case <-ctx.Done():
			return nil
		}
	}
}

func (w *Watcher) safePass(ctx context.Context) (err error) {
	defer func() {
		if r := recover(); r != nil {
			w.pos, w.primed = map[partKey]uint64{}, false // start again from the cursors
			err = fmt.Errorf("shadow: watcher panicked: %v\n%s", r, debug.Stack())
		}
	}()
	return w.pass(ctx)
}

// pass reconciles the devices of every change since the last pass.
func (w *Watcher) pass(ctx context.Context) error {
	info, err := w.cfg.Store.Stat(ctx, store.ShadowChanges)
	if err != nil {
		return err
	}
	parts := max(info.Partitions, 1)
	rescan := false
	after := ""
	for {
		const page = 1000
		topics, err := w.st.Topics(ctx, "", after, page)
		if err != nil {
			return err
		}
		for _, t := range topics {
			for p := range parts {
				k := partKey{t, p}
				if _, ok := w.pos[k]; ok {
					continue
				}
				off, ok, err := w.st.Cursor(ctx, w.cfg.Group, t, p)
				if err != nil {
					return err
				}
				if !ok {
					// Unknown to the watcher: when it starts, what came
					// before is covered by a full reconcile; a topic that
					// appears later is read from its beginning.
					low, next, err := w.st.Bounds(ctx, t, p)
					if err != nil {
						return err
					}
					off = low
					if !w.primed {
						off, rescan = next, true
					}
				}
				w.pos[k] = off
			}
		}
		if len(topics) < page {
			break
		}
		after = topics[len(topics)-1]
	}
	w.primed = true
	if rescan {
		if err := w.reconcileAll(ctx); err != nil {
			return err
		}
		for k, off := range w.pos {
			if err := w.st.SetCursor(ctx, w.cfg.Group, k.topic, k.part, off); err != nil {
				return err
			}
		}
	}
	for k := range w.pos {
		if err := w.follow(ctx, k); err != nil {
			return err
		}
	}
	return nil
}

// follow reconciles the devices of the changes in one partition, from the
// watcher's position to the end, recording its cursor after each page.
func (w *Watcher) follow(ctx context.Context, k partKey) error {
	for {
		from := w.pos[k]
		msgs, err := w.st.Read(ctx, k.topic, k.part, from, store.ReadOptions{Limit: 1000})
		if errors.Is(err, store.ErrTrimmed) {
			// Changes were dropped by retention before they were seen:
			// reconcile everything, then go on from the low-water mark.
			low, _, berr := w.st.Bounds(ctx, k.topic, k.part)
			if berr != nil {
				return berr
			}
			w.log.Warn("shadow changes trimmed before they were followed; reconciling every shadow", "topic", k.topic, "from", from, "low", low)
			if err := w.reconcileAll(ctx); err != nil {
				return err
			}
			w.pos[k] = low
			continue
		}
		if err != nil {
			return err
		}
		if len(msgs) == 0 {
			return nil
		}
		// The latest record of each device in the page stands for the
		// others: every change writes one.
		latest := map[string]store.Change{}
		var order []string
		for _, m := range msgs {
			var c store.Change
			if err := json.Unmarshal(m.Value, &c); err != nil || c.Key == "" {
				continue
			}
			if _, seen := latest[c.Key]; !seen {
				order = append(order, c.Key)
			}
			latest[c.Key] = c
		}
		for _, id := range order {
			c := latest[id]
			if c.Op == "delete" {
				continue
			}
			wrote, err := reconcileDoc(ctx, w.cfg.Store, store.Doc{Key: c.Key, Version: c.Version, Updated: c.TS, Value: c.Doc})
			if err != nil {
				return err
			}
			if wrote {
				w.writes.Add(1)
			}
		}
		next := msgs[len(msgs)-1].Offset + 1
		if err := w.st.SetCursor(ctx, w.cfg.Group, k.topic, k.part, next); err != nil {
			return err
		}
		w.pos[k] = next
	}
}

// reconcileAll reconciles every shadow.
func (w *Watcher) reconcileAll(ctx context.Context) error {
	t := w.cfg.Store.Table(store.ShadowsTable)
	after, n := "", 0
	for {
		docs, next, err := t.Scan(ctx, "", after, 500)
		if err != nil {
			return err
		}
		for _, d := range docs {
			wrote, err := reconcileDoc(ctx, w.cfg.Store, d)
			if err != nil {
				return err
			}
			if wrote {
				w.writes.Add(1)
				n++
			}
		}
		if next == "" {
			break
		}
		after = next
	}
	w.log.Info("shadows reconciled", "rewritten", n)
	return nil
}
