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
// from the edge; the core's desired side stays. It is a store.Consumer:
// each batch of changes and the cursor past it commit together.
type follower struct {
	store *store.Store
	self  string // the core's own topic: its own changes, skipped
	log   *slog.Logger
}

func (f *follower) run(ctx context.Context) error {
	c, err := f.store.Stream(store.ShadowChanges).Consumer(store.ConsumerConfig{
		Group:  followerGroup,
		Skip:   func(topic string) bool { return topic == f.self },
		Logger: f.log,
	})
	if err != nil {
		return err
	}
	return c.Run(ctx, f.handle)
}

// handle applies a batch of one edge's shadow changes, skipping (with a
// warning) those that are malformed.
func (f *follower) handle(_ context.Context, b store.Batch) (func(tx *store.Tx) error, error) {
	var changes []store.Change
	for _, m := range b.Messages {
		var c store.Change
		err := json.Unmarshal(m.Value, &c)
		if err == nil && c.Key != "" && c.Op != "delete" && !isObject(c.Doc) {
			err = store.ErrBadDocument
		}
		if err != nil || c.Key == "" {
			f.log.Warn("skipping a malformed shadow change", "edge", b.Topic, "offset", m.Offset, "err", err)
			continue
		}
		changes = append(changes, c)
	}
	return func(tx *store.Tx) error {
		for _, c := range changes {
			if err := shadow.ApplyEdgeIn(tx, c); err != nil {
				return fmt.Errorf("core: shadow %q from %s: %w", c.Key, b.Topic, err)
			}
		}
		return nil
	}, nil
}

// isObject reports whether b is a JSON object.
func isObject(b []byte) bool {
	var m map[string]json.RawMessage
	return json.Unmarshal(b, &m) == nil && m != nil
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
