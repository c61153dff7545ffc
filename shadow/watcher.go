package shadow

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync/atomic"

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

// Watcher keeps every shadow's delta and firmware up to date: it follows
// /shadows/changes with a store.Consumer (every topic and partition, woken
// by each commit, never polling) and reconciles each device whose shadow
// changed, in the same commit as its cursor, so a restart resumes where it
// stopped. When it first runs (no cursor yet) it reconciles every shadow
// once and starts at the end; a topic that appears later is read from its
// beginning; changes removed by retention before it read them make it
// reconcile every shadow again.
//
// Its own writes are changes too: reconciling them again finds nothing to
// change and writes nothing, so the watcher does not loop.
type Watcher struct {
	cfg    WatcherConfig
	log    *slog.Logger
	writes atomic.Uint64
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
	return &Watcher{cfg: cfg, log: cfg.Logger.With("component", "shadow-watcher")}, nil
}

// Writes is how many shadows the watcher has rewritten.
func (w *Watcher) Writes() uint64 { return w.writes.Load() }

// Run follows the change stream until ctx ends, then returns nil. A failed
// pass (an I/O error, a panic) is logged and retried with backoff.
func (w *Watcher) Run(ctx context.Context) error {
	c, err := w.cfg.Store.Stream(store.ShadowChanges).Consumer(store.ConsumerConfig{
		Group:  w.cfg.Group,
		Start:  store.StartNewest,
		Fresh:  w.reconcileAll,
		Limit:  1000,
		Logger: w.log,
	})
	if err != nil {
		return err
	}
	return c.Run(ctx, w.handle)
}

// handle reconciles the devices of a batch of changes: the latest change
// of each device in the batch stands for the others, since every change
// writes one.
func (w *Watcher) handle(ctx context.Context, b store.Batch) (func(tx *store.Tx) error, error) {
	if b.Lost > 0 {
		w.log.Warn("shadow changes removed before they were followed; reconciling every shadow", "topic", b.Topic, "lost", b.Lost)
		if err := w.reconcileAll(ctx); err != nil {
			return nil, err
		}
	}
	var keys []string
	seen := map[string]bool{}
	for _, m := range b.Messages {
		var c store.Change
		if err := json.Unmarshal(m.Value, &c); err != nil || c.Key == "" || seen[c.Key] {
			continue
		}
		seen[c.Key] = true
		keys = append(keys, c.Key)
	}
	return func(tx *store.Tx) error {
		n := 0
		for _, key := range keys {
			wrote, err := reconcileIn(tx, key)
			if err != nil {
				return err
			}
			if wrote {
				n++
			}
		}
		w.writes.Add(uint64(n)) // a replayed stage counts again: a figure, not a ledger
		return nil
	}, nil
}

// reconcileAll reconciles every shadow, a page per commit.
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
