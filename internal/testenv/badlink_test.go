package testenv

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/weft-io/weft/core"
	"github.com/weft-io/weft/edge"
	"github.com/weft-io/weft/store"
)

// writer appends to an edge's streams in the background: the uplink (one
// topic) and per-device histories (several topics).
type writer struct {
	st    *store.Store
	stop  chan struct{}
	done  chan struct{}
	mu    sync.Mutex
	n     int
	err   error
	pause sync.Mutex
}

func startWriter(st *store.Store, edgeName string, every time.Duration) *writer {
	w := &writer{st: st, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(every) // 21 messages each time
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
			w.pause.Lock()
			var reqs []store.AppendRequest
			var up []store.Message
			for j := range 20 {
				up = append(up, store.Message{Key: []byte("k"), Value: fmt.Appendf(nil, "uplink %d.%d %0100d", i, j, i)})
			}
			reqs = append(reqs, store.AppendRequest{Path: store.UplinkStream, Topic: edgeName, Partition: 0, Messages: up})
			dev := fmt.Sprintf("dev-%d", i%7)
			reqs = append(reqs, store.AppendRequest{Path: store.ByDeviceStream, Topic: dev, Partition: 0,
				Messages: []store.Message{{Key: []byte(dev), Value: fmt.Appendf(nil, "reading %d", i), Headers: map[string]string{"device": dev}}}})
			_, err := w.st.AppendMany(context.Background(), reqs)
			w.pause.Unlock()
			w.mu.Lock()
			w.n++
			if err != nil && w.err == nil {
				w.err = err
			}
			w.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return w
}

// writeAtLeast waits until n more appends were made.
func (w *writer) writeAtLeast(t *testing.T, n int) {
	t.Helper()
	w.mu.Lock()
	target := w.n + n
	w.mu.Unlock()
	WaitFor(t, 30*time.Second, fmt.Sprintf("%d appends", n), func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.err != nil {
			t.Fatalf("append: %v", w.err)
		}
		return w.n >= target
	})
}

func (w *writer) halt() {
	close(w.stop)
	<-w.done
}

// TestBadLinks puts a UDP proxy between edge and core that cuts the link,
// drops 30% of datagrams, delays and reorders them, while the edge keeps
// writing. During each phase the core's copy must be a dense prefix of the
// edge's at the same offsets; after it, equal: nothing lost, nothing applied
// twice.
func TestBadLinks(t *testing.T) {
	if testing.Short() {
		t.Skip("long network-fault test: run without -short")
	}
	f := New(t)
	c := f.StartCore("core1", core.Config{})
	p := NewProxy(t, c.SyncAddr().String())
	e := f.StartEdge("edge1", edge.Config{Core: p.Addr(), Replicate: []string{store.ByDeviceStream}})
	es, cs := e.Store(), c.Store()
	paths := []string{store.UplinkStream, store.ByDeviceStream}
	w := startWriter(es, "edge1", time.Millisecond)
	defer func() {
		select {
		case <-w.stop:
		default:
			w.halt()
		}
	}()
	checkPrefix := func(phase string) {
		t.Helper()
		for _, path := range paths {
			if err := Prefix(es, cs, path); err != nil {
				t.Fatalf("%s: %v", phase, err)
			}
		}
	}
	settle := func(phase string) {
		t.Helper()
		w.pause.Lock()
		defer w.pause.Unlock()
		WaitEqual(t, es, cs, 90*time.Second, paths...)
		checkPrefix(phase)
	}
	connected := func() bool {
		for _, l := range e.Links() {
			return l.Connected
		}
		return false
	}

	for _, ph := range []struct {
		name   string
		faults Faults
		writes int
	}{
		{"clean", Faults{}, 400},
		{"drop 30%", Faults{Drop: 0.3}, 1000},
		{"delay 40ms", Faults{Delay: 40 * time.Millisecond}, 400},
		{"delay and reorder", Faults{Delay: 2 * time.Millisecond, Jitter: 25 * time.Millisecond}, 1000},
		{"drop, delay and reorder", Faults{Drop: 0.1, Delay: 5 * time.Millisecond, Jitter: 10 * time.Millisecond}, 1000},
	} {
		t.Run(ph.name, func(t *testing.T) {
			p.Set(ph.faults)
			for range 4 {
				w.writeAtLeast(t, ph.writes/4)
				checkPrefix(ph.name)
			}
			settle(ph.name)
		})
	}

	t.Run("cut", func(t *testing.T) {
		p.Set(Faults{Drop: 1})
		// The edge notices the dead link within seconds.
		WaitFor(t, 20*time.Second, "the edge to notice the cut", func() bool { return !connected() })
		w.writeAtLeast(t, 200)
		checkPrefix("cut")
		p.Set(Faults{})
		WaitFor(t, 30*time.Second, "the link to come back", connected)
		settle("after the cut")
	})
	w.halt()
	WaitEqual(t, es, cs, 60*time.Second, paths...)
	fwd, dropped := p.Counts()
	for _, l := range c.Links() {
		for _, s := range l.Streams {
			if s.Path == store.UplinkStream && s.Direction == "receive" {
				t.Logf("core applied %d uplink messages in %d batches, skipped %d duplicates; %d reconnects; proxy forwarded %d datagrams, dropped %d",
					s.Messages, s.Batches, s.Duplicates, l.Reconnects, fwd, dropped)
			}
		}
	}
}
