package core

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weft-io/weft/internal/testenv/wait"
	"github.com/weft-io/weft/store"
)

func TestDeviceUpdatesGoToTheirEdge(t *testing.T) {
	st, err := store.Open(store.Config{Dir: filepath.Join(t.TempDir(), "d"), Name: "core1", MinFreeBytes: -1, RetentionInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	if _, err := st.Table(store.ShadowsTable).Put(ctx, "pump-1", json.RawMessage(`{"edge":"truck-7","class":"pump"}`)); err != nil {
		t.Fatal(err)
	}
	rule := deviceUpdates(st)
	for _, c := range []struct {
		edge, path, topic string
		ok                bool
	}{
		{"truck-7", store.UpdatesStream, "device/pump-1", true},
		{"truck-8", store.UpdatesStream, "device/pump-1", false},
		{"truck-7", store.UpdatesStream, "device/pump-2", false}, // never seen
		{"truck-8", store.UpdatesStream, "all", true},
		{"truck-8", store.UpdatesStream, "class/pump", true},
		{"truck-8", "/updates/other", "device/pump-1", true},
	} {
		if err := rule(c.edge, c.path, c.topic); (err == nil) != c.ok {
			t.Errorf("%s %s to %s: %v, want allowed %v", c.path, c.topic, c.edge, err, c.ok)
		}
	}
}

// TestFollowerSkipsMalformedChanges: a change whose document is not a JSON
// object is skipped with a warning; the changes after it are applied.
func TestFollowerSkipsMalformedChanges(t *testing.T) {
	st, err := store.Open(store.Config{Dir: filepath.Join(t.TempDir(), "d"), Name: "core1", MinFreeBytes: -1, RetentionInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	var msgs []store.Message
	for _, c := range []store.Change{
		{Key: "d1", Op: "put", Doc: json.RawMessage(`[1,2]`)},
		{Key: "d1", Op: "put", Doc: json.RawMessage(`{"reported":{"temp":21},"reported_ts":{"temp":"2026-01-01T00:00:00Z"}}`)},
	} {
		b, _ := json.Marshal(c)
		msgs = append(msgs, store.Message{Key: []byte(c.Key), Value: b})
	}
	changes := st.Stream(store.ShadowChanges)
	if _, err := changes.Append(ctx, "edge1", msgs...); err != nil {
		t.Fatal(err)
	}
	f := &follower{store: st, self: "core1", log: slog.New(slog.DiscardHandler)}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- f.run(rctx) }()
	defer func() { cancel(); <-done }()
	wait.For(t, 0, "the good change applied after the bad one", func() bool {
		d, err := st.Table(store.ShadowsTable).Get(ctx, "d1")
		return err == nil && strings.Contains(string(d.Value), `"reported_ts":{"temp":"2026-01-01T00:00:00Z"}`)
	})
}

// TestFollowerFollowsEveryPartition: an edge's changes spread over several
// partitions of the change stream are all applied.
func TestFollowerFollowsEveryPartition(t *testing.T) {
	st, err := store.Open(store.Config{Dir: filepath.Join(t.TempDir(), "d"), Name: "core1", MinFreeBytes: -1, RetentionInterval: -1,
		Partitions: map[string]int{store.ShadowChanges: 4}})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	var msgs []store.Message
	for i := range 20 {
		c := store.Change{Key: fmt.Sprintf("d%02d", i), Op: "put", Doc: json.RawMessage(`{"reported":{"temp":21}}`)}
		b, _ := json.Marshal(c)
		msgs = append(msgs, store.Message{Key: []byte(c.Key), Value: b})
	}
	if _, err := st.Stream(store.ShadowChanges).Append(ctx, "edge1", msgs...); err != nil {
		t.Fatal(err)
	}
	f := &follower{store: st, self: "core1", log: slog.New(slog.DiscardHandler)}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- f.run(rctx) }()
	defer func() { cancel(); <-done }()
	for i := range 20 {
		wait.For(t, 0, fmt.Sprintf("d%02d applied", i), func() bool {
			_, err := st.Table(store.ShadowsTable).Get(ctx, fmt.Sprintf("d%02d", i))
			return err == nil
		})
	}
}
