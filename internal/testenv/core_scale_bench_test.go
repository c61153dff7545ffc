package testenv

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/weft-io/weft/core"
	"github.com/weft-io/weft/edge"
	"github.com/weft-io/weft/shadow"
	"github.com/weft-io/weft/store"
	"github.com/weft-io/weft/sync/replicate"
)

// BenchmarkCoreScale measures what one core node takes in from many edges
// at once (docs/scale.md): every edge holds a backlog written while the
// core was away, then the core starts and every link catches up together.
//
//   - uplink: 200-byte records of /uplink/events (the gateway's envelope
//     is about that size), reported as records/s
//     replicated into the core (all edges together);
//   - shadows: device reports at the edges (shadow.Report, one device
//     each), reported as shadow updates/s replicated in and folded into
//     the core's /shadows/devices by its follower.
//
// The time runs from core.Start's return (listeners open, store opened)
// to the last record held (uplink) or the last change folded (shadows), so
// it includes each link's handshake; the store's opening is reported apart
// (s-core-start).
// Edges, core and this loop share one process and the machine's cores.
//
//	go test ./internal/testenv -run '^$' -bench CoreScale -benchtime 1x -count 2
func BenchmarkCoreScale(b *testing.B) {
	// The same totals however many edges send them, so that the rows
	// compare: 1.6M records, 40,000 devices.
	const (
		uplinkTotal  = 1_600_000
		devicesTotal = 40_000
	)
	for _, kind := range []string{"uplink", "shadows"} {
		for _, edges := range []int{1, 4, 16} {
			b.Run(fmt.Sprintf("%s/edges=%d", kind, edges), func(b *testing.B) {
				n := uplinkTotal / edges
				if kind == "shadows" {
					n = devicesTotal / edges
				}
				var rate, start float64
				for range b.N {
					up, d := coreCatchUp(b, kind, edges, n)
					rate = float64(edges*n) / d.Seconds()
					start = up.Seconds()
				}
				b.ReportMetric(0, "ns/op")
				b.ReportMetric(start, "s-core-start")
				if kind == "uplink" {
					b.ReportMetric(rate, "records/s")
				} else {
					b.ReportMetric(rate, "shadow-updates/s")
				}
			})
		}
	}
}

// coreCatchUp builds the backlog of edges edges with the core away, then
// starts the core and returns how long it took to start and then to hold
// all of it.
func coreCatchUp(b *testing.B, kind string, edges, n int) (startup, catchUp time.Duration) {
	b.Helper()
	ctx := context.Background()
	f := New(b)
	c := f.StartCore("core1", core.Config{})
	addr := c.SyncAddr().String()
	if err := c.Shutdown(ctx); err != nil {
		b.Fatal(err)
	}
	// Hold the core's port while it is away, so that no other test on
	// the machine takes it meanwhile.
	hold, err := net.ListenPacket("udp", addr)
	if err != nil {
		b.Fatal(err)
	}
	nodes := make([]*edge.Node, edges)
	var wg sync.WaitGroup
	for i := range nodes {
		name := fmt.Sprintf("edge%02d", i)
		cfg := edge.Config{Core: addr}
		cfg.Link.Backoff = replicate.Backoff{Min: 5 * time.Millisecond, Max: 20 * time.Millisecond}
		nodes[i] = f.StartEdge(name, cfg)
		st := nodes[i].Store()
		wg.Go(func() {
			if kind == "uplink" {
				appendN(b, st, store.UplinkStream, name, n, 200, name)
				return
			}
			reportN(b, st, name, n)
		})
	}
	wg.Wait()

	hold.Close()
	t0 := time.Now()
	c = f.StartCore("core1", core.Config{Listen: addr})
	start := time.Now()
	cs := c.Store()
	WaitFor(b, 10*time.Minute, "every edge's backlog at the core", func() bool {
		for i := range nodes {
			name := fmt.Sprintf("edge%02d", i)
			if kind == "uplink" {
				_, next, err := cs.Stream(store.UplinkStream).Bounds(ctx, name, 0)
				if err != nil || next < uint64(n) {
					return false
				}
				continue
			}
			if _, err := shadow.Get(ctx, cs, name+"-last"); err != nil {
				return false
			}
		}
		return true
	})
	return start.Sub(t0), time.Since(start)
}

// reportN reports n devices of edge name at its store, 32 at a time, then
// one last device alone: its change is the last of the edge's
// /shadows/changes, so once the core shows it every change was folded.
func reportN(b *testing.B, st *store.Store, name string, n int) {
	b.Helper()
	ctx := context.Background()
	src := shadow.Source{Class: "pump", Edge: name}
	ids := make(chan int)
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for i := range ids {
				id := fmt.Sprintf("%s-d%05d", name, i)
				rep := fmt.Appendf(nil, `{"temp":%d,"rpm":%d,"fw":"1.0.%d"}`, 20+i%7, 1000+i%13, i%3)
				if _, err := shadow.Report(ctx, st, id, rep, src, time.Now(), nil); err != nil {
					b.Error(err)
				}
			}
		})
	}
	for i := range n {
		ids <- i
	}
	close(ids)
	wg.Wait()
	if _, err := shadow.Report(ctx, st, name+"-last", []byte(`{"done":true}`), src, time.Now(), nil); err != nil {
		b.Fatal(err)
	}
}
