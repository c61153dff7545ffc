package link

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/weft-io/weft/store"
	"github.com/weft-io/weft/sync/replicate"
)

// TestBacklogReportedWhileStalled: an edge whose link carries a batch
// every ten minutes (a 100 B/s cap and 64 KiB messages: after the first
// batch nothing moves) reports its backlog over the link, and the core
// shows it — messages, bytes and the age of the oldest — and follows it as
// the edge's backlog grows, while no batch arrives.
func TestBacklogReportedWhileStalled(t *testing.T) {
	f := newFabric(t, ServerConfig{})
	ctx := context.Background()
	old := time.Now().Add(-time.Hour)
	add := func(n int) {
		for range n {
			v := make([]byte, 64<<10)
			rand.Read(v)
			if _, err := f.edge.Stream(store.UplinkStream).Append(ctx, "edge1", store.Message{Value: v, Timestamp: old}); err != nil {
				t.Fatal(err)
			}
		}
	}
	add(100)
	link, _ := f.startLink(ClientConfig{RateLimit: 100, backlogEvery: 100 * time.Millisecond})
	core := func() replicate.StreamStatus {
		return streamStatus(f.srv.Monitor(), "edge1", replicate.DirReceive, store.UplinkStream)
	}
	edge := func() replicate.StreamStatus {
		return streamStatus(link.Monitor(), "core1", replicate.DirSend, store.UplinkStream)
	}
	waitFor(t, "the core showing the edge's backlog", func() bool {
		c := core()
		return c.LagMessages >= 99 && c.BacklogBytes >= 99*60000 && c.LagSeconds >= 3000 && !c.ReportedAt.IsZero()
	})
	before := core().Batches
	add(50)
	waitFor(t, "the core following the edge's backlog", func() bool {
		c, e := core(), edge()
		return c.LagMessages == e.LagMessages && e.LagMessages > 140 && c.BacklogBytes > 140*60000 && c.LagSeconds >= 3000
	})
	if c := core(); c.Batches != before {
		t.Logf("a batch arrived meanwhile (%d, then %d): the link was not stalled after all", before, c.Batches)
	}
	// The edge's own figures (its /api/v1/links and metrics) say the same.
	if e := edge(); e.LagSeconds < 3000 || e.BacklogBytes < 149*60000 {
		t.Fatalf("the edge's own figures: %+v", e)
	}
}

// TestBacklogAtRest: with backlog reports on, a link whose messages are
// acknowledged at once reads 0 at both ends once caught up (that no frame
// is sent then is TestReportBacklogOnlyWhenLasting's).
func TestBacklogAtRest(t *testing.T) {
	f := newFabric(t, ServerConfig{})
	link, _ := f.startLink(ClientConfig{backlogEvery: 50 * time.Millisecond})
	for range 5 {
		appendN(t, f.edge, store.UplinkStream, "edge1", 10, 100, "live")
		waitSame(t, f.edge, f.core, store.UplinkStream)
	}
	waitFor(t, "no lag at either end", func() bool {
		c := streamStatus(f.srv.Monitor(), "edge1", replicate.DirReceive, store.UplinkStream)
		e := streamStatus(link.Monitor(), "core1", replicate.DirSend, store.UplinkStream)
		return c.LagMessages == 0 && e.LagMessages == 0 && c.Messages == 50
	})
	if c := streamStatus(f.srv.Monitor(), "edge1", replicate.DirReceive, store.UplinkStream); c.LagSeconds != 0 || c.BacklogBytes != 0 {
		t.Fatalf("core's figures at rest: %+v", c)
	}
}
