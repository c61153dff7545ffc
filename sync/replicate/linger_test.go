package replicate

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weft-io/weft/store"
	"github.com/weft-io/weft/sync/wire"
)

// TestLingerBatchesNews appends ten records in ten commits while a
// lingering sender waits: they go in one batch.
func TestLingerBatchesNews(t *testing.T) {
	st := openStore(t, filepath.Join(t.TempDir(), "edge"), "edge1")
	t.Cleanup(func() { st.Close() })
	ctx := context.Background()
	s := st.Stream(store.ByDeviceStream)
	if _, err := s.Append(ctx, "dev", store.Message{Value: []byte("first")}); err != nil {
		t.Fatal(err)
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	f := startFake(t, b, false)
	sd := testSender(s, store.ByDeviceStream, a, &StreamStats{dir: DirSend}, readMaxBytes)
	sd.linger = time.Hour
	gate := make(chan time.Time)
	lingering := make(chan struct{}, 16)
	sd.after = func(time.Duration) <-chan time.Time { lingering <- struct{}{}; return gate }
	goSender(t, ctx, sd)
	waitFor(t, "the first record", func() bool { return f.received() == 1 })
	for i := range 10 {
		if _, err := s.Append(ctx, "dev", store.Message{Value: fmt.Appendf(nil, "news %d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	<-lingering // the sender saw the news and waits
	close(gate)
	waitFor(t, "the news", func() bool { return f.received() == 11 })
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.batches) != 2 || f.batches[1].Count != 10 {
		t.Fatalf("%d batches, the last of %d records: the news did not go together", len(f.batches), f.batches[len(f.batches)-1].Count)
	}
}

func TestSessionLinger(t *testing.T) {
	capped := NewLinkLimiter(32<<10, nil)
	for _, tc := range []struct {
		linger time.Duration
		limit  *LinkLimiter
		path   string
		want   time.Duration
	}{
		{0, nil, store.UplinkStream, UncappedLinger},
		{0, nil, store.ShadowChanges, 0},
		{0, capped, store.UplinkStream, DefaultLinger},
		{0, capped, store.ByDeviceStream, DefaultLinger},
		{0, capped, store.ShadowChanges, 0},
		{0, capped, store.UpdatesStream, 0},
		{-1, capped, store.UplinkStream, 0},
		{time.Second, nil, store.UplinkStream, time.Second},
	} {
		s := &Session{Linger: tc.linger, Limit: tc.limit}
		if got := s.linger(tc.path); got != tc.want {
			t.Errorf("linger %v, cap %d, %s: %v, want %v", tc.linger, tc.limit.Rate(), tc.path, got, tc.want)
		}
	}
}

// countingWriter counts the bytes and writes through it.
type countingWriter struct {
	w             io.Writer
	bytes, writes atomic.Int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.bytes.Add(int64(len(p)))
	c.writes.Add(1)
	return c.w.Write(p)
}

// envelope is a record like those the gateway stores: a small JSON
// payload and the envelope's headers, about 190 bytes on the wire.
func envelope(i int, at time.Time) store.Message {
	return store.Message{
		Value: fmt.Appendf(nil, `{"temp":%d.%d,"hum":%d,"seq":%d}`, 20+i%7, i%10, 40+i%13, i),
		Headers: map[string]string{"device": fmt.Sprintf("dev-%04d", i%1000), "class": "sensor", "gateway": "truck-7",
			"topic": fmt.Sprintf("devices/dev-%04d/telemetry", i%1000), "qos": "1"},
		Timestamp: at,
	}
}

// BenchmarkBytesPerRecord replicates b.N records between two stores over
// an in-memory connection and reports the frame bytes per record each
// way, and the frames (writes) per record: records trickling in one every
// 5 ms on an idle link, or a backlog; over one topic or fifty; linger off
// or on (200 ms).
func BenchmarkBytesPerRecord(b *testing.B) {
	for _, load := range []string{"idle", "backlog"} {
		for _, topics := range []int{1, 50} {
			for _, linger := range []time.Duration{0, DefaultLinger} {
				b.Run(fmt.Sprintf("%s/topics=%d/linger=%v", load, topics, linger), func(b *testing.B) {
					benchBytes(b, load == "backlog", topics, linger)
				})
			}
		}
	}
}

func benchBytes(b *testing.B, backlog bool, topics int, linger time.Duration) {
	dir := b.TempDir()
	src := openStore(b, filepath.Join(dir, "edge"), "edge1")
	defer src.Close()
	dst := openStore(b, filepath.Join(dir, "core"), "core1")
	defer dst.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	path := store.ByDeviceStream
	s := src.Stream(path)
	n := b.N
	put := func(i int) {
		if _, err := s.Append(ctx, fmt.Sprintf("dev-%04d", i%topics), envelope(i, time.Now())); err != nil {
			b.Fatal(err)
		}
	}
	if backlog {
		for i := range n {
			put(i)
		}
	}
	a, c := net.Pipe()
	defer a.Close()
	defer c.Close()
	up, down := &countingWriter{w: a}, &countingWriter{w: c}
	quiet := slog.New(slog.DiscardHandler)
	sd := &sender{log: s, path: path, parts: 1, conn: wire.NewConn(a, up), stats: &StreamStats{dir: DirSend},
		window: defaultWindow, maxBytes: readMaxBytes, compress: true, linger: linger, now: time.Now, logger: quiet}
	rc := &receiver{replica: dst, log: dst.Stream(path), path: path, conn: wire.NewConn(c, down),
		stats: &StreamStats{dir: DirReceive}, now: time.Now, logger: quiet}
	go sd.run(ctx)
	go rc.run(ctx)
	b.ResetTimer()
	if !backlog {
		tick := time.NewTicker(5 * time.Millisecond)
		for i := range n {
			<-tick.C
			put(i)
		}
		tick.Stop()
	}
	deadline := time.Now().Add(time.Minute)
	for rc.stats.messages.Load() < int64(n) {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d records replicated", rc.stats.messages.Load(), n)
		}
		time.Sleep(time.Millisecond) // polling with a deadline
	}
	b.StopTimer()
	raw, err := wire.NewBatch("dev-0000", 0, 0, []store.Message{envelope(0, time.Now())}, false)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(raw.RawLen), "record-B")
	b.ReportMetric(float64(up.bytes.Load())/float64(n), "up-B/rec")
	b.ReportMetric(float64(down.bytes.Load())/float64(n), "ack-B/rec")
	b.ReportMetric(float64(up.writes.Load()+down.writes.Load())/float64(n), "frames/rec")
}
