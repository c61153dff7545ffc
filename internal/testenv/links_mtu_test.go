package testenv

import (
	"context"
	"crypto/rand"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weft-io/weft/core"
	"github.com/weft-io/weft/edge"
	"github.com/weft-io/weft/store"
	"github.com/weft-io/weft/sync/link"
)

// logRecorder keeps the messages of the records logged through it.
type logRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *logRecorder) WithGroup(string) slog.Handler            { return r }
func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	var b strings.Builder
	b.WriteString(rec.Message)
	rec.Attrs(func(a slog.Attr) bool {
		b.WriteString(" " + a.String())
		return true
	})
	r.mu.Lock()
	r.msgs = append(r.msgs, b.String())
	r.mu.Unlock()
	return nil
}

// find returns the first message logged that contains s.
func (r *logRecorder) find(s string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range r.msgs {
		if strings.Contains(m, s) {
			return m, true
		}
	}
	return "", false
}

// bulkWriter appends incompressible messages of 2 KiB to an edge's uplink
// until stopped, so that the link sends full-size packets.
func bulkWriter(t *testing.T, st *store.Store, edgeName string) (stop func()) {
	t.Helper()
	done, quit := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				return
			case <-tick.C:
			}
			v := make([]byte, 2048)
			rand.Read(v)
			if _, err := st.AppendMany(context.Background(), []store.AppendRequest{{Path: store.UplinkStream, Topic: edgeName,
				Messages: []store.Message{{Key: []byte("k"), Value: v}}}}); err != nil {
				t.Errorf("append: %v", err)
				return
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(quit); <-done }) }
}

// TestLinkAtPathMTU1280 runs a link over a path of MTU 1280 (the IPv6
// minimum) from the start: the link comes up and replicates, path MTU
// discovery finding no more than the path carries.
func TestLinkAtPathMTU1280(t *testing.T) {
	f := New(t)
	c := f.StartCore("core1", core.Config{})
	p := NewProxy(t, c.SyncAddr().String())
	p.Set(Faults{MaxDatagram: PathMTU(1280)})
	e := f.StartEdge("edge1", edge.Config{Core: p.Addr()})
	stop := bulkWriter(t, e.Store(), "edge1")
	defer stop()
	WaitFor(t, 60*time.Second, "200 KiB replicated over the path", func() bool {
		_, next, _ := c.Store().Stream(store.UplinkStream).Bounds(context.Background(), "edge1", 0)
		return next >= 100
	})
	stop()
	WaitEqual(t, e.Store(), c.Store(), 60*time.Second, store.UplinkStream)
	if l := p.Largest(); l > PathMTU(1280) {
		t.Fatalf("the proxy forwarded a datagram of %d bytes over a path of %d", l, PathMTU(1280))
	}
	t.Logf("largest datagram forwarded %d bytes, %d larger ones dropped (path MTU discovery probes)", p.Largest(), p.TooBig())
}

// TestLinkPathMTUFalls lowers the path MTU of a live link from 1500 to
// 1280 while the edge keeps writing: the datagrams path MTU discovery had
// grown are dropped while keepalives still pass. The edge notices the
// stall within its StallTimeout, says so in its log, and re-establishes
// the link with small packets; replication goes on, nothing lost or
// applied twice.
func TestLinkPathMTUFalls(t *testing.T) {
	f := New(t)
	c := f.StartCore("core1", core.Config{})
	p := NewProxy(t, c.SyncAddr().String())
	p.Set(Faults{MaxDatagram: PathMTU(1500)})
	logs := &logRecorder{}
	e := f.StartEdge("edge1", edge.Config{Core: p.Addr(), Link: link.ClientConfig{StallTimeout: 3 * time.Second, Logger: slog.New(logs)}})
	es, cs := e.Store(), c.Store()
	stop := bulkWriter(t, es, "edge1")
	defer stop()
	// Path MTU discovery grows packets past what the lowered path carries.
	WaitFor(t, 60*time.Second, "packets larger than 1280 bytes of path MTU", func() bool { return p.ForwardedOver(PathMTU(1280)) >= 200 })
	p.Set(Faults{MaxDatagram: PathMTU(1280)})
	dropped := p.TooBig()
	WaitFor(t, 60*time.Second, "the stall logged", func() bool { _, ok := logs.find("path stalled"); return ok })
	msg, _ := logs.find("path stalled")
	t.Logf("edge log: %s", msg)
	if p.TooBig() == dropped {
		t.Fatal("no datagram was too big for the lowered path")
	}
	// Replication goes on over the new connection.
	_, mark, _ := es.Stream(store.UplinkStream).Bounds(context.Background(), "edge1", 0)
	WaitFor(t, 60*time.Second, "replication past the stall", func() bool {
		_, next, _ := cs.Stream(store.UplinkStream).Bounds(context.Background(), "edge1", 0)
		return next > mark
	})
	stop()
	WaitEqual(t, es, cs, 60*time.Second, store.UplinkStream)
	for _, l := range e.Links() {
		if l.Reconnects < 1 {
			t.Fatalf("the link was not re-established: %+v", l)
		}
	}
}
