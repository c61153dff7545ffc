package testenv

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/device"
	"github.com/weft-io/weft/store"
)

// TestReportCrashes kills an edge with SIGKILL at random points while a
// device sends shadow reports, ten times. A report used to be two commits
// (the shadow, then its history) and a third at the watcher; it is one
// now. After the last restart every acknowledged report is in the
// device's history, and every change of its shadow has the history record
// of the report that made it: no shadow change without history.
func TestReportCrashes(t *testing.T) {
	if testing.Short() {
		t.Skip("kills child processes")
	}
	f := New(t)
	f.IssueNode(certs.EdgeNode, "edge1")
	f.IssueGateway("edge1")
	edgeP := &proc{t: t, name: "edge", args: []string{"edge", "--data", f.DataDir("edge1"), "--certs", f.Certs, "--name", "edge1",
		"--mqtt", "127.0.0.1:0", "--http", "127.0.0.1:0", "--log-level", "debug"}}
	edgeP.start()
	defer edgeP.signal(syscall.SIGKILL)
	mqttAddr := edgeP.addr("mqtt")
	creds, pool, err := device.Credentials(f.Certs, []string{"pump-1"}, "pump")
	if err != nil {
		t.Fatal(err)
	}

	// The device reports {"n": i} for i = 0, 1, ..., reconnecting while
	// the edge is down; acked is the highest report acknowledged.
	var acked atomic.Int64
	acked.Store(-1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		n := 0
		for ctx.Err() == nil {
			cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
			dev, err := device.Connect(cctx, device.DialConfig{Addr: mqttAddr, Roots: pool}, "pump-1", creds[0], true, nil)
			ccancel()
			if err != nil {
				time.Sleep(20 * time.Millisecond) // the edge is down: try again shortly
				continue
			}
			for ctx.Err() == nil {
				pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
				_, err := dev.Publish(pctx, &paho.Publish{Topic: "devices/pump-1/shadow/reported", QoS: 1, Payload: fmt.Appendf(nil, `{"n":%d}`, n)})
				pcancel()
				if err != nil {
					break
				}
				acked.Store(int64(n))
				n++
			}
			dev.Disconnect(&paho.Disconnect{})
		}
	}()
	defer func() { cancel(); <-done }()

	rnd := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 11))
	for round := range 10 {
		base := acked.Load()
		target := base + 1 + int64(rnd.IntN(200))
		WaitFor(t, 60*time.Second, fmt.Sprintf("round %d: report %d acknowledged", round, target), func() bool { return acked.Load() >= target })
		edgeP.signal(syscall.SIGKILL)
		edgeP.start()
	}
	WaitFor(t, 60*time.Second, "reports after the last restart", func() bool { return acked.Load() > 0 })
	cancel()
	<-done
	last := acked.Load()
	edgeP.signal(syscall.SIGTERM)

	st, err := store.Open(store.Config{Dir: f.DataDir("edge1"), Name: "edge1", MinFreeBytes: -1, RetentionInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	history := map[int64]bool{}
	for _, m := range readAll(t, st.Stream(store.ByDeviceStream), "pump-1") {
		var r struct{ N int64 }
		if json.Unmarshal(m.Value, &r) == nil {
			history[r.N] = true
		}
	}
	for n := int64(0); n <= last; n++ {
		if !history[n] {
			t.Fatalf("report %d was acknowledged (up to %d) but is not in the history", n, last)
		}
	}
	changes := 0
	for _, m := range readAll(t, st.Stream(store.ShadowChanges), "edge1") {
		var c store.Change
		if json.Unmarshal(m.Value, &c) != nil || c.Key != "pump-1" || c.Op == "delete" {
			continue
		}
		var doc struct {
			Reported   struct{ N *int64 }
			ReportedTS map[string]string `json:"reported_ts"`
		}
		if err := json.Unmarshal(c.Doc, &doc); err != nil || doc.Reported.N == nil {
			continue // a change of the connection state only
		}
		changes++
		if !history[*doc.Reported.N] {
			t.Fatalf("shadow change at offset %d reports n=%d, which has no history record", m.Offset, *doc.Reported.N)
		}
		if doc.ReportedTS["n"] == "" {
			t.Fatalf("shadow change at offset %d has no reported_ts for n: %s", m.Offset, c.Doc)
		}
	}
	if changes <= int(last) {
		t.Fatalf("%d shadow changes for %d acknowledged reports", changes, last+1)
	}
}

// readAll reads every message of a topic's partitions.
func readAll(t *testing.T, s *store.Stream, topic string) []store.Message {
	t.Helper()
	ctx := context.Background()
	var out []store.Message
	for part := 0; ; part++ {
		low, next, err := s.Bounds(ctx, topic, part)
		if err != nil {
			break // no such partition
		}
		for from := low; from < next; {
			msgs, err := s.Read(ctx, topic, part, from, store.ReadOptions{Limit: 1000})
			if err != nil {
				t.Fatal(err)
			}
			if len(msgs) == 0 {
				break
			}
			out = append(out, msgs...)
			from = msgs[len(msgs)-1].Offset + 1
		}
	}
	return out
}
