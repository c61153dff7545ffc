package core

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/weft-io/weft/shadow"
	"github.com/weft-io/weft/store"
)

// followerGroup is the consumer group under which the core records how far
// it has folded each edge's shadow changes into its own shadows.
const followerGroup = "core-shadows"

// follower folds the shadow changes its edges replicate to
// /shadows/changes (one topic per edge) into the core's /shadows/devices
// with shadow.ApplyEdge: every edge-owned field, times included, comes
// from the edge; the core's desired side stays. Its position per edge is
// a consumer cursor; a change applied twice (after a crash between the
// table write and the cursor) writes the same fields again.
type follower struct {
	store *store.Store
	self  string // the core's own topic: its own changes, skipped
	log   *slog.Logger
}

func (f *follower) run(ctx context.Context) error {
	changes := f.store.Stream(store.ShadowChanges)
	for {
		changed := changes.Changed()
		busy, err := f.pass(ctx, changes)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		if busy {
			continue
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// pass folds what every edge topic holds past its cursor, a page at a time;
// busy reports that there may be more.
func (f *follower) pass(ctx context.Context, changes *store.Stream) (busy bool, err error) {
	info, err := f.store.Stat(ctx, store.ShadowChanges)
	if err != nil {
		return false, err
	}
	after := ""
	for {
		topics, err := changes.Topics(ctx, "", after, 1000)
		if err != nil {
			return false, err
		}
		for _, topic := range topics {
			if topic == f.self {
				continue
			}
			for part := range max(info.Partitions, 1) {
				more, err := f.partition(ctx, changes, topic, part)
				if err != nil {
					return false, err
				}
				busy = busy || more
			}
		}
		if len(topics) < 1000 {
			return busy, nil
		}
		after = topics[len(topics)-1]
	}
}

// partition folds one partition of an edge's topic past its cursor, a
// page at a time; more reports that there may be more.
func (f *follower) partition(ctx context.Context, changes *store.Stream, topic string, part int) (more bool, err error) {
	from, _, err := changes.Cursor(ctx, followerGroup, topic, part)
	if err != nil {
		return false, err
	}
	msgs, err := changes.Read(ctx, topic, part, from, store.ReadOptions{Limit: 500})
	if errors.Is(err, store.ErrTrimmed) {
		low, _, berr := changes.Bounds(ctx, topic, part)
		if berr != nil {
			return false, berr
		}
		f.log.Warn("shadow changes trimmed before they were applied", "edge", topic, "from", from, "to", low)
		from = low
		msgs, err = changes.Read(ctx, topic, part, from, store.ReadOptions{Limit: 500})
	}
	if err != nil || len(msgs) == 0 {
		return false, err
	}
	for _, m := range msgs {
		var c store.Change
		if err := json.Unmarshal(m.Value, &c); err != nil || c.Key == "" {
			f.log.Warn("skipping a malformed shadow change", "edge", topic, "offset", m.Offset, "err", err)
			continue
		}
		err := shadow.ApplyEdge(ctx, f.store, c)
		if errors.Is(err, store.ErrBadDocument) {
			f.log.Warn("skipping a shadow change that is not a JSON object", "edge", topic, "device", c.Key, "offset", m.Offset)
			continue
		}
		if err != nil {
			return false, fmt.Errorf("core: shadow %q from %s at %d: %w", c.Key, topic, m.Offset, err)
		}
	}
	next := msgs[len(msgs)-1].Offset + 1
	if err := changes.SetCursor(ctx, followerGroup, topic, part, next); err != nil {
		return false, err
	}
	return len(msgs) == 500, nil
}

// deviceUpdates is the core's rule for what of /updates/down goes to which
// edge: the topics for all devices and for classes go everywhere; a
// device's own topic only to the edge its shadow says it is behind, so an
// edge never holds another edge's device commands.
func deviceUpdates(st *store.Store) func(edge, path, topic string) error {
	return func(edge, path, topic string) error {
		id, ok := strings.CutPrefix(topic, shadow.DeviceTopic(""))
		if path != store.UpdatesStream || !ok {
			return nil
		}
		doc, err := shadow.Get(context.Background(), st, id)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return fmt.Errorf("device %s has not been seen behind any edge", id)
		case err != nil:
			return fmt.Errorf("device %s: %w", id, err)
		case doc.Edge != edge:
			return fmt.Errorf("device %s is behind edge %q", id, doc.Edge)
		}
		return nil
	}
}
