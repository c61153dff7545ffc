package replicate

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weft-io/weft/store"
	"github.com/weft-io/weft/sync/wire"
)

// TestReceiverAppliesOnce feeds a receiver batches directly: the same batch
// twice, an overlapping one, and one past a gap.
func TestReceiverAppliesOnce(t *testing.T) {
	st := openStore(t, filepath.Join(t.TempDir(), "core"), "core1")
	defer st.Close()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	r := &receiver{replica: st, log: st.Stream(store.UplinkStream), path: store.UplinkStream, conn: wire.NewConn(a, a),
		stats: &StreamStats{dir: DirReceive}, now: time.Now, logger: slog.New(slog.DiscardHandler)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.run(ctx)
	c := wire.NewConn(b, b)
	batch := func(first, n int) *wire.Batch {
		var ms []store.Message
		for i := first; i < first+n; i++ {
			ms = append(ms, store.Message{Offset: uint64(i), Value: fmt.Appendf(nil, "m%d", i), Timestamp: time.Unix(int64(i), 0)})
		}
		bt, err := wire.NewBatch("edge1", 0, 0, ms, true)
		if err != nil {
			t.Fatal(err)
		}
		return bt
	}
	for _, tc := range []struct {
		name     string
		first, n int
		want     wire.Ack
	}{
		{"new", 0, 10, wire.Ack{Topic: "edge1", Next: 10, Applied: 10}},
		{"again", 0, 10, wire.Ack{Topic: "edge1", Next: 10, Dups: 10}},
		{"overlap", 5, 10, wire.Ack{Topic: "edge1", Next: 15, Applied: 5, Dups: 5}},
		{"gap", 20, 5, wire.Ack{Topic: "edge1", Next: 15, Gap: true}},
		{"old", 2, 3, wire.Ack{Topic: "edge1", Next: 5, Dups: 3}},
	} {
		if err := c.Send(batch(tc.first, tc.n)); err != nil {
			t.Fatal(err)
		}
		m, err := c.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := m.(*wire.Ack); !ok || *got != tc.want {
			t.Fatalf("%s: got %+v, want %+v", tc.name, m, tc.want)
		}
	}
	// A batch too big for one transaction of this store (16 MiB
	// memtable) is applied in pieces.
	var big []store.Message
	for i := 15; i < 115; i++ {
		big = append(big, store.Message{Offset: uint64(i), Value: bytes.Repeat([]byte{byte(i)}, 64<<10), Timestamp: time.Unix(int64(i), 0)})
	}
	bb, err := wire.NewBatch("edge1", 0, 0, big, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Send(bb); err != nil {
		t.Fatal(err)
	}
	if m, err := c.Recv(); err != nil || *m.(*wire.Ack) != (wire.Ack{Topic: "edge1", Next: 115, Applied: 100}) {
		t.Fatalf("big batch: %+v %v", m, err)
	}
	if _, err := st.Stream(store.UplinkStream).Read(ctx, "edge1", 0, 15, store.ReadOptions{Limit: 200, MaxBytes: 64 << 20}); err != nil {
		t.Fatal(err)
	}

	// Positions are the replica's own next offsets.
	if err := c.Send(&wire.Offer{Topics: []wire.Bound{{Topic: "edge1", Next: 30}, {Topic: "other", Next: 3}}}); err != nil {
		t.Fatal(err)
	}
	m, err := c.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := m.(*wire.Positions); !ok || len(p.Positions) != 2 || p.Positions[0].Next != 115 || p.Positions[1].Next != 0 {
		t.Fatalf("positions %+v", m)
	}
	msgs, err := st.Stream(store.UplinkStream).Read(ctx, "edge1", 0, 0, store.ReadOptions{Limit: 15})
	if err != nil || len(msgs) != 15 {
		t.Fatalf("replica holds %d messages, %v", len(msgs), err)
	}
	for i, m := range msgs {
		if m.Offset != uint64(i) || string(m.Value) != fmt.Sprintf("m%d", i) {
			t.Fatalf("message %d: %d %q", i, m.Offset, m.Value)
		}
	}
	s := r.stats.status(time.Now())
	if s.Messages != 115 || s.Duplicates != 18 || s.Batches != 5 {
		t.Fatalf("figures %+v", s)
	}

	// A corrupt batch ends the stream with a corrupt-batch error.
	bad := batch(115, 3)
	bad.CRC++
	done := make(chan error, 1)
	r2 := &receiver{replica: st, log: st.Stream(store.UplinkStream), path: store.UplinkStream, conn: wire.NewConn(a, a),
		stats: &StreamStats{dir: DirReceive}, now: time.Now, logger: slog.New(slog.DiscardHandler)}
	cancel()
	a2, b2 := net.Pipe()
	defer a2.Close()
	defer b2.Close()
	r2.conn = wire.NewConn(a2, a2)
	go func() { done <- r2.run(context.Background()) }()
	wire.NewConn(b2, b2).Send(bad)
	if err := <-done; wire.CodeOf(err) != wire.CodeCorrupt {
		t.Fatalf("corrupt batch: %v", err)
	}
}

// countingLog counts the reads and listings a sender makes.
type countingLog struct {
	*store.Stream
	reads, listings atomic.Int64
}

func (l *countingLog) Read(ctx context.Context, topic string, part int, from uint64, opts store.ReadOptions) ([]store.Message, error) {
	l.reads.Add(1)
	return l.Stream.Read(ctx, topic, part, from, opts)
}

func (l *countingLog) Topics(ctx context.Context, prefix, after string, limit int) ([]string, error) {
	l.listings.Add(1)
	return l.Stream.Topics(ctx, prefix, after, limit)
}

// TestSenderLooksOnlyAtNews replicates a stream of 5,000 topics between a
// sender and a receiver, then appends to one topic: the sender reads that
// topic, not the 5,000 (the store's change log tells it which).
func TestSenderLooksOnlyAtNews(t *testing.T) {
	dir := t.TempDir()
	src := openStore(t, filepath.Join(dir, "edge"), "edge1")
	defer src.Close()
	dst := openStore(t, filepath.Join(dir, "core"), "core1")
	defer dst.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var reqs []store.AppendRequest
	for i := range 5000 {
		reqs = append(reqs, store.AppendRequest{Path: store.ByDeviceStream, Topic: fmt.Sprintf("dev-%05d", i), Partition: 0, Messages: []store.Message{{Value: []byte("first")}}})
	}
	if _, err := src.AppendMany(ctx, reqs); err != nil {
		t.Fatal(err)
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	log := &countingLog{Stream: src.Stream(store.ByDeviceStream)}
	quiet := slog.New(slog.DiscardHandler)
	sd := &sender{log: log, path: store.ByDeviceStream, parts: 1, conn: wire.NewConn(a, a), stats: &StreamStats{dir: DirSend},
		window: defaultWindow, maxBytes: readMaxBytes, now: time.Now, logger: quiet}
	rc := &receiver{replica: dst, log: dst.Stream(store.ByDeviceStream), path: store.ByDeviceStream, conn: wire.NewConn(b, b),
		stats: &StreamStats{dir: DirReceive}, now: time.Now, logger: quiet}
	go sd.run(ctx)
	go rc.run(ctx)
	waitSame(t, src, dst, store.ByDeviceStream)

	reads, listings := log.reads.Load(), log.listings.Load()
	if _, err := src.Stream(store.ByDeviceStream).Append(ctx, "dev-02500", store.Message{Value: []byte("news")}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the news at the receiver", func() bool {
		_, next, _ := dst.Stream(store.ByDeviceStream).Bounds(ctx, "dev-02500", 0)
		return next == 2
	})
	if r, l := log.reads.Load()-reads, log.listings.Load()-listings; r > 10 || l != 0 {
		t.Fatalf("one append cost %d reads and %d topic listings", r, l)
	}
}

// TestEnsureReplica creates a replica whose volume is missing, and refuses
// one whose partitions differ, saying why.
func TestEnsureReplica(t *testing.T) {
	st := openStore(t, filepath.Join(t.TempDir(), "core"), "core1")
	defer st.Close()
	ctx := context.Background()
	if n, err := EnsureReplica(ctx, st, "/training/edge1", 3, nil); err != nil || n != 3 {
		t.Fatalf("replica in a missing volume: %d, %v", n, err)
	}
	if _, err := st.Volume("training"); err != nil {
		t.Fatalf("volume not made: %v", err)
	}
	if n, err := EnsureReplica(ctx, st, "/training/edge1", 0, nil); err != nil || n != 3 {
		t.Fatalf("existing replica: %d, %v", n, err)
	}
	if _, err := EnsureReplica(ctx, st, "/training/edge1", 2, nil); wire.CodeOf(err) != wire.CodeStream || !strings.Contains(err.Error(), "partitions") {
		t.Fatalf("other partitions: %v", err)
	}
	if _, err := EnsureReplica(ctx, st, "/nowhere/x", 0, nil); wire.CodeOf(err) != wire.CodeStream {
		t.Fatalf("a replica the sender does not make: %v", err)
	}
}
