package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/weft-io/weft/core"
	"github.com/weft-io/weft/edge"
	"github.com/weft-io/weft/store"
	"github.com/weft-io/weft/sync/replicate"
)

// TestLagAtBothEnds: an edge whose core was away catches up 40,960
// messages (ten full batches); then both ends' GET /api/v1/links read 0
// messages of lag, not the 1 the core kept showing. With the edge gone,
// the core's lag_seconds counts the outage instead of reading 0; with the
// core gone, the edge counts what it writes meanwhile, exactly.
func TestLagAtBothEnds(t *testing.T) {
	f := New(t)
	c := f.StartCore("core1", core.Config{})
	addr := c.SyncAddr().String()
	if err := c.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	e := f.StartEdge("edge1", edge.Config{Core: addr})
	appendN(t, e.Store(), store.UplinkStream, "edge1", 40960, 100, "offline")
	c = f.StartCore("core1", core.Config{Listen: addr})
	WaitEqual(t, e.Store(), c.Store(), 60*time.Second, store.UplinkStream)

	lag := func(node, peer, dir string) replicate.StreamStatus {
		na := e.HTTPAddr().String()
		if node == "core1" {
			na = c.HTTPAddr().String()
		}
		s, _ := findStream(getLinks(t, f, na), peer, dir, store.UplinkStream)
		return s
	}
	WaitFor(t, 30*time.Second, "no lag at either end", func() bool {
		up, down := lag("edge1", "core1", replicate.DirSend), lag("core1", "edge1", replicate.DirReceive)
		return up.Messages == 40960 && up.LagMessages == 0 && down.Messages == 40960 && down.LagMessages == 0
	})
	if s := lag("core1", "edge1", replicate.DirReceive); s.LagSeconds != 0 || s.ReportedAt.IsZero() {
		t.Fatalf("the core's figures after the catch-up: %+v", s)
	}

	// The core goes; the edge writes 50 more.
	if err := c.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	appendN(t, e.Store(), store.UplinkStream, "edge1", 50, 100, "while down")
	WaitFor(t, 30*time.Second, "the edge's lag to count what the core lacks", func() bool {
		return lag("edge1", "core1", replicate.DirSend).LagMessages >= 50
	})
	if s := lag("edge1", "core1", replicate.DirSend); s.LagMessages != 50 {
		t.Fatalf("the edge's figures with the core away: %+v, want 50 messages", s)
	}

	// The core is back and catches up; then the edge goes: the core's
	// lag_seconds grows instead of reading 0.
	c = f.StartCore("core1", core.Config{Listen: addr})
	WaitEqual(t, e.Store(), c.Store(), 60*time.Second, store.UplinkStream)
	if err := e.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	WaitFor(t, 30*time.Second, "the core's lag_seconds to count the outage", func() bool {
		return lag("core1", "edge1", replicate.DirReceive).LagSeconds >= 1
	})
}
