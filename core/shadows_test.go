package core

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/weft-io/weft/store"
)

func TestFollowerKeepsTheCoresFields(t *testing.T) {
	st, err := store.Open(store.Config{Dir: filepath.Join(t.TempDir(), "d"), Name: "core1", MinFreeBytes: -1, RetentionInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	f := &follower{store: st, self: "core1", log: slog.New(slog.DiscardHandler)}
	tbl := st.Table(store.ShadowsTable)
	if _, err := tbl.Put(ctx, "d1", json.RawMessage(`{"desired":{"temp":18},"desired_ts":{"temp":"2026-01-01T00:00:00Z"},"reported":{"temp":1},"old":true}`)); err != nil {
		t.Fatal(err)
	}
	doc := func() map[string]any {
		t.Helper()
		d, err := tbl.Get(ctx, "d1")
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		json.Unmarshal(d.Value, &m)
		return m
	}
	// An edge's change: its fields replace the core's, but not desired.
	edgeDoc := `{"reported":{"temp":21},"connected":true,"desired":{"temp":99},"delta":{"x":1}}`
	if err := f.apply(ctx, store.Change{Key: "d1", Op: "patch", Doc: json.RawMessage(edgeDoc), TS: time.Now()}); err != nil {
		t.Fatal(err)
	}
	got := doc()
	if got["reported"].(map[string]any)["temp"] != 21.0 || got["desired"].(map[string]any)["temp"] != 18.0 ||
		got["connected"] != true || got["old"] != nil || got["delta"] != nil || got["desired_ts"] == nil {
		t.Fatalf("after the edge's change: %v", got)
	}
	// Applying it again changes nothing but the version.
	if err := f.apply(ctx, store.Change{Key: "d1", Op: "patch", Doc: json.RawMessage(edgeDoc)}); err != nil {
		t.Fatal(err)
	}
	if again := doc(); len(again) != len(got) {
		t.Fatalf("applied twice: %v", again)
	}
	// The edge deletes its shadow: the core's desired side stays.
	if err := f.apply(ctx, store.Change{Key: "d1", Op: "delete"}); err != nil {
		t.Fatal(err)
	}
	if got := doc(); len(got) != 2 || got["desired"] == nil {
		t.Fatalf("after the edge's delete: %v", got)
	}
	// A device the core sets nothing for goes entirely.
	if err := f.apply(ctx, store.Change{Key: "d2", Op: "put", Doc: json.RawMessage(`{"reported":{}}`)}); err != nil {
		t.Fatal(err)
	}
	if err := f.apply(ctx, store.Change{Key: "d2", Op: "delete"}); err != nil {
		t.Fatal(err)
	}
	if _, err := tbl.Get(ctx, "d2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("d2 after delete: %v", err)
	}
	// Deleting what the core never had is nothing.
	if err := f.apply(ctx, store.Change{Key: "d3", Op: "delete"}); err != nil {
		t.Fatal(err)
	}
	if _, err := tbl.Get(ctx, "d3"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("d3: %v", err)
	}
}

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
