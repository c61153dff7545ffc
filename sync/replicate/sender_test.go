package replicate

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/weft-io/weft/store"
	"github.com/weft-io/weft/sync/wire"
)

// fakeReceiver answers a sender as a receiver that stores nothing: its
// positions are past the batches it got, every batch is acknowledged in
// full (at once, or when released). It keeps the batches in the order they came.
type fakeReceiver struct {
	c *wire.Conn

	mu      sync.Mutex
	batches []*wire.Batch
	held    []*wire.Ack
	hold    bool
	count   int               // messages received
	next    map[string]uint64 // per topic (partition 0), past the batches received
}

func startFake(t *testing.T, c net.Conn, hold bool) *fakeReceiver {
	f := &fakeReceiver{c: wire.NewConn(c, c), hold: hold, next: map[string]uint64{}}
	go func() {
		for {
			m, err := f.c.Recv()
			if err != nil {
				return
			}
			switch m := m.(type) {
			case *wire.Offer:
				p := &wire.Positions{}
				f.mu.Lock()
				for _, b := range m.Topics {
					p.Positions = append(p.Positions, wire.Position{Topic: b.Topic, Part: b.Part, Next: f.next[b.Topic]})
				}
				err = f.c.Send(p)
				f.mu.Unlock()
			case *wire.Batch:
				a := &wire.Ack{Topic: m.Topic, Part: m.Part, Next: m.First + uint64(m.Count), Applied: m.Count}
				f.mu.Lock()
				f.batches = append(f.batches, m)
				f.count += m.Count
				f.next[m.Topic] = max(f.next[m.Topic], m.First+uint64(m.Count))
				if f.hold {
					f.held = append(f.held, a)
				} else {
					err = f.c.Send(a)
				}
				f.mu.Unlock()
			}
			if err != nil {
				return
			}
		}
	}()
	return f
}

// release acknowledges the batches held, and those to come.
func (f *fakeReceiver) release() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hold = false
	for _, a := range f.held {
		f.c.Send(a)
	}
	f.held = nil
}

func (f *fakeReceiver) received() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.count
}

// goSender runs sd until the test ends, and waits for it to stop before
// the stores close (close them with t.Cleanup, registered before; the
// connection must close first, by a defer, so that a send blocked on it
// returns).
func goSender(t *testing.T, ctx context.Context, sd *sender) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { sd.run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func testSender(log Log, path string, c net.Conn, stats *StreamStats, maxBytes int) *sender {
	return &sender{log: log, path: path, parts: 1, conn: wire.NewConn(c, c), stats: stats,
		window: defaultWindow, maxBytes: maxBytes, now: time.Now, logger: slog.New(slog.DiscardHandler)}
}

// appendRounds appends rounds of messages to topics: in round r, per[i]
// messages to topics[i], stamped base + r seconds (and a nanosecond per
// message within the round).
func appendRounds(t testing.TB, st *store.Store, path string, topics []string, per []int, rounds int, base time.Time) {
	ctx := context.Background()
	for r := range rounds {
		var reqs []store.AppendRequest
		for i, topic := range topics {
			var ms []store.Message
			for j := range per[i] {
				ms = append(ms, store.Message{Value: []byte(strings.Repeat("v", 100)),
					Timestamp: base.Add(time.Duration(r)*time.Second + time.Duration(j))})
			}
			reqs = append(reqs, store.AppendRequest{Path: path, Topic: topic, Messages: ms})
		}
		if _, err := st.AppendMany(ctx, reqs); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSenderServesOldestFirst gives a sender 150 topics with backlogs, seven
// of them twenty times the others' (the busy devices of a slow link), and
// checks the order of the batches: whenever a batch goes, every topic has
// sent all its messages more than a round older than the batch's first.
// Served in turn, a quiet topic's batch (many rounds of it) would go while
// the busy topics still held older rounds.
func TestSenderServesOldestFirst(t *testing.T) {
	st := openStore(t, filepath.Join(t.TempDir(), "edge"), "edge1")
	t.Cleanup(func() { st.Close() })
	const rounds = 30
	var topics []string
	var per []int
	for i := range 150 {
		topics = append(topics, fmt.Sprintf("dev-%03d", i))
		n := 1
		if i%21 == 3 {
			n = 20
		}
		per = append(per, n)
	}
	base := time.Unix(1_800_000_000, 0)
	appendRounds(t, st, store.ByDeviceStream, topics, per, rounds, base)

	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	f := startFake(t, b, false)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Batches of about twenty messages, as on a link capped so that a
	// batch is a twentieth of a second's worth.
	sd := testSender(st.Stream(store.ByDeviceStream), store.ByDeviceStream, a, &StreamStats{dir: DirSend}, 20*140)
	sd.limit = NewLinkLimiter(8<<20, nil) // the link's cap orders nothing: the sender does
	goSender(t, ctx, sd)
	total := 0
	for _, n := range per {
		total += n * rounds
	}
	waitFor(t, "every message sent", func() bool { return f.received() == total })

	f.mu.Lock()
	batches := f.batches
	f.mu.Unlock()
	stamp := func(topic int, off uint64) time.Time { // of message off of topic
		n := uint64(per[topic])
		return base.Add(time.Duration(off/n)*time.Second + time.Duration(off%n))
	}
	index := map[string]int{}
	for i, topic := range topics {
		index[topic] = i
	}
	sent := make([]uint64, len(topics)) // next offset to send, per topic
	for n, bt := range batches {
		i := index[bt.Topic]
		if bt.First != sent[i] {
			t.Fatalf("batch %d of %s starts at %d, want %d", n, bt.Topic, bt.First, sent[i])
		}
		first := stamp(i, bt.First)
		for j := range topics {
			if sent[j] < uint64(per[j]*rounds) && stamp(j, sent[j]).Before(first.Add(-time.Second)) {
				t.Fatalf("batch %d (%s from %v) went while %s still held %v", n, bt.Topic, first.Sub(base), topics[j], stamp(j, sent[j]).Sub(base))
			}
		}
		sent[i] += uint64(bt.Count)
	}
}

// TestSenderForgetsIdleTopics replicates a stream of 50,000 topics and
// checks that once they are caught up the sender keeps state for the few
// recently active only, and that news of a forgotten topic still goes.
func TestSenderForgetsIdleTopics(t *testing.T) {
	if testing.Short() {
		t.Skip("50,000 topics")
	}
	st := openStore(t, filepath.Join(t.TempDir(), "edge"), "edge1")
	t.Cleanup(func() { st.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const n = 50_000
	for i := 0; i < n; i += 2_000 {
		var reqs []store.AppendRequest
		for j := i; j < i+2_000; j++ {
			reqs = append(reqs, store.AppendRequest{Path: store.ByDeviceStream, Topic: fmt.Sprintf("dev-%06d", j), Messages: []store.Message{{Value: []byte("x")}}})
		}
		if _, err := st.AppendMany(ctx, reqs); err != nil {
			t.Fatal(err)
		}
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	f := startFake(t, b, false)
	stats := &StreamStats{dir: DirSend}
	sd := testSender(st.Stream(store.ByDeviceStream), store.ByDeviceStream, a, stats, readMaxBytes)
	goSender(t, ctx, sd)
	waitFor(t, "every topic sent and acknowledged", func() bool {
		s := stats.status(time.Now())
		return f.received() == n && s.LagMessages == 0 && stats.messages.Load() == n
	})
	sd.mu.Lock()
	kept, live := len(sd.t.topics), sd.t.live
	sd.mu.Unlock()
	if kept > defaultKeepIdle || live > defaultKeepIdle {
		t.Fatalf("the sender keeps %d topic partitions (%d live) after catching up, want at most %d", kept, live, defaultKeepIdle)
	}
	if _, err := st.Stream(store.ByDeviceStream).Append(ctx, "dev-000007", store.Message{Value: []byte("news")}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the news of a forgotten topic", func() bool { return f.received() == n+1 })
}

// TestLagIsExact checks the lag at both ends: during a catch-up (the
// sender's figures count what is unacknowledged, and every batch tells the
// receiver the stream's messages not yet sent), after it (0 at both ends,
// also after full batches), and with the link down.
func TestLagIsExact(t *testing.T) {
	dir := t.TempDir()
	src := openStore(t, filepath.Join(dir, "edge"), "edge1")
	t.Cleanup(func() { src.Close() })
	base := time.Unix(1_800_000_000, 0)
	topics := []string{"a", "b", "c", "d", "e"}
	appendRounds(t, src, store.ByDeviceStream, topics, []int{10, 10, 10, 10, 10}, 100, base)
	const total = 5 * 10 * 100

	t.Run("catch-up", func(t *testing.T) {
		a, b := net.Pipe()
		defer a.Close()
		defer b.Close()
		f := startFake(t, b, true)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		stats := &StreamStats{dir: DirSend}
		sd := testSender(src.Stream(store.ByDeviceStream), store.ByDeviceStream, a, stats, 4<<10)
		goSender(t, ctx, sd)
		waitFor(t, "every message sent", func() bool { return f.received() == total })
		f.mu.Lock()
		left := total
		for i, bt := range f.batches {
			left -= bt.Count
			if bt.Backlog != uint64(left) {
				f.mu.Unlock()
				t.Fatalf("batch %d says %d messages not sent, want %d", i, bt.Backlog, left)
			}
		}
		f.mu.Unlock()
		s := stats.status(base.Add(200 * time.Second))
		if s.LagMessages != total || s.LagSeconds != 200 || s.Topics != 5 {
			t.Fatalf("nothing acknowledged: %+v, want %d messages, 200 s", s, total)
		}
		f.release()
		waitFor(t, "no lag", func() bool { return stats.status(time.Now()).LagMessages == 0 })
		if s := stats.status(time.Now()); s.LagSeconds != 0 || s.Messages != total {
			t.Fatalf("caught up: %+v", s)
		}
	})

	t.Run("full batches", func(t *testing.T) {
		// 40,960 messages of one topic: ten full batches, the last of
		// them ending the backlog.
		var ms []store.Message
		for i := range 40960 {
			ms = append(ms, store.Message{Value: []byte("x"), Timestamp: base.Add(time.Duration(i))})
		}
		if _, err := src.Stream(store.ByDeviceStream).Append(context.Background(), "big", ms...); err != nil {
			t.Fatal(err)
		}
		dst := openStore(t, filepath.Join(dir, "core"), "core1")
		t.Cleanup(func() { dst.Close() })
		a, b := net.Pipe()
		defer a.Close()
		defer b.Close()
		ctx, cancel := context.WithCancel(context.Background())
		sstats, rstats := &StreamStats{dir: DirSend}, &StreamStats{dir: DirReceive}
		sd := testSender(src.Stream(store.ByDeviceStream), store.ByDeviceStream, a, sstats, readMaxBytes)
		rc := &receiver{replica: dst, log: dst.Stream(store.ByDeviceStream), path: store.ByDeviceStream, conn: wire.NewConn(b, b),
			stats: rstats, now: time.Now, logger: slog.New(slog.DiscardHandler)}
		sdone, rdone := make(chan error, 1), make(chan error, 1)
		go func() { sdone <- sd.run(ctx) }()
		go func() { rdone <- rc.run(ctx) }()
		waitSame(t, src, dst, store.ByDeviceStream)
		waitFor(t, "the last acknowledgement", func() bool { return sstats.status(time.Now()).LagMessages == 0 })
		if s := rstats.status(time.Now()); s.LagMessages != 0 || s.LagSeconds != 0 || s.ReportedAt.IsZero() {
			t.Fatalf("receiver after the catch-up: %+v", s)
		}

		// The link goes down; the source gets 50 more.
		cancel()
		a.Close()
		<-sdone
		<-rdone
		stop := time.Now()
		if _, err := src.Stream(store.ByDeviceStream).Append(context.Background(), "c", ms[:50]...); err != nil {
			t.Fatal(err)
		}
		if s := sstats.status(time.Now()); s.LagMessages != 50 {
			t.Fatalf("sender with the link down: %+v, want 50 messages", s)
		}
		if s := rstats.status(stop.Add(time.Minute)); s.LagSeconds < 60 {
			t.Fatalf("receiver a minute into an outage: %+v, want at least 60 s", s)
		}
	})
}

// TestFiguresDoNotWaitForTheSender holds a busy sender's lock and reads
// the figures: GET /api/v1/links and Prometheus' Collect answer anyway.
func TestFiguresDoNotWaitForTheSender(t *testing.T) {
	st := openStore(t, filepath.Join(t.TempDir(), "edge"), "edge1")
	t.Cleanup(func() { st.Close() })
	var topics []string
	var per []int
	for i := range 500 {
		topics = append(topics, fmt.Sprintf("dev-%03d", i))
		per = append(per, 20)
	}
	appendRounds(t, st, store.ByDeviceStream, topics, per, 5, time.Unix(1_800_000_000, 0))
	mon := NewMonitor("edge1", nil)
	stats := mon.Link("core1", "core").Stream(DirSend, store.ByDeviceStream)
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	f := startFake(t, b, true)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sd := testSender(st.Stream(store.ByDeviceStream), store.ByDeviceStream, a, stats, 4<<10)
	goSender(t, ctx, sd)
	waitFor(t, "a catch-up under way", func() bool { return f.received() > 1000 })

	sd.mu.Lock()
	done := make(chan string, 1)
	go func() {
		rec := httptest.NewRecorder()
		mon.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/api/v1/links", nil))
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(mon)
		if _, err := reg.Gather(); err != nil {
			done <- err.Error()
			return
		}
		done <- rec.Body.String()
	}()
	var body string
	select {
	case body = <-done:
	case <-time.After(time.Minute): // a deadline for a hang, not a timing
		t.Fatal("the figures wait for the sender")
	}
	sd.mu.Unlock()
	if !strings.Contains(body, `"lag_messages":50000`) {
		t.Fatalf("links: %s", body)
	}
	// The age is that of the oldest message of all 500 topics (it was
	// read off 100 of them).
	if s := stats.status(time.Unix(1_800_001_000, 0)); s.LagSeconds != 1000 {
		t.Fatalf("lag_seconds %v, want 1000", s.LagSeconds)
	}
	f.release()
}

// damagedLog is a stream whose topic bad cannot be read at offsets
// [at, at+10) until healed.
type damagedLog struct {
	*store.Stream
	bad    string
	at     uint64
	gap    bool
	healed atomic.Bool
}

func (l *damagedLog) Read(ctx context.Context, topic string, part int, from uint64, opts store.ReadOptions) ([]store.Message, error) {
	if topic != l.bad || l.healed.Load() || from >= l.at+10 {
		return l.Stream.Read(ctx, topic, part, from, opts)
	}
	if from == l.at || from > l.at {
		if l.gap {
			return nil, &store.GapError{Path: l.Path(), Topic: topic, Partition: part, From: l.at, To: l.at + 10}
		}
		return nil, &store.CorruptError{Path: l.Path(), Topic: topic, Partition: part, From: l.at, To: l.at + 10, Err: store.ErrCorrupt}
	}
	msgs, err := l.Stream.Read(ctx, topic, part, from, opts)
	for i, m := range msgs {
		if m.Offset >= l.at {
			return msgs[:i], err
		}
	}
	return msgs, err
}

// TestSenderSetsAsideDamage replicates a stream one of whose topics has a
// damaged range: the other topics go on, the stream's figures name the
// range, and once it reads again (say, quarantined and repaired) the topic
// goes on too.
func TestSenderSetsAsideDamage(t *testing.T) {
	for _, gap := range []bool{false, true} {
		t.Run(fmt.Sprintf("gap=%v", gap), func(t *testing.T) {
			dir := t.TempDir()
			src := openStore(t, filepath.Join(dir, "edge"), "edge1")
			t.Cleanup(func() { src.Close() })
			dst := openStore(t, filepath.Join(dir, "core"), "core1")
			t.Cleanup(func() { dst.Close() })
			topics := []string{"a", "b", "c"}
			appendRounds(t, src, store.ByDeviceStream, topics, []int{1, 1, 1}, 30, time.Unix(1_800_000_000, 0))
			log := &damagedLog{Stream: src.Stream(store.ByDeviceStream), bad: "b", at: 5, gap: gap}
			a, b := net.Pipe()
			defer a.Close()
			defer b.Close()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			stats := &StreamStats{dir: DirSend}
			sd := testSender(log, store.ByDeviceStream, a, stats, readMaxBytes)
			sd.recheck = 20 * time.Millisecond
			rc := &receiver{replica: dst, log: dst.Stream(store.ByDeviceStream), path: store.ByDeviceStream, conn: wire.NewConn(b, b),
				stats: &StreamStats{dir: DirReceive}, now: time.Now, logger: slog.New(slog.DiscardHandler)}
			sdone, rdone := make(chan error, 1), make(chan error, 1)
			go func() { sdone <- sd.run(ctx) }()
			go func() { rdone <- rc.run(ctx) }()
			t.Cleanup(func() { cancel(); <-sdone; <-rdone })
			next := func(topic string) uint64 {
				_, n, _ := dst.Stream(store.ByDeviceStream).Bounds(ctx, topic, 0)
				return n
			}
			waitFor(t, "the sound topics, and the damaged one up to the damage", func() bool {
				return next("a") == 30 && next("c") == 30 && next("b") == 5 && stats.messages.Load() == 65
			})
			s := stats.status(time.Now())
			if len(s.Failed) != 1 || s.Failed[0].Topic != "b" || s.Failed[0].From != 5 || s.Failed[0].To != 15 || s.LagMessages != 25 {
				t.Fatalf("figures with a damaged range: %+v", s)
			}
			// More news for the sound topics still goes.
			if _, err := src.Stream(store.ByDeviceStream).Append(ctx, "a", store.Message{Value: []byte("more")}); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "news past the damage", func() bool { return next("a") == 31 })
			if len(sdone) > 0 {
				t.Fatal("the sender stopped")
			}
			log.healed.Store(true)
			waitFor(t, "the healed topic", func() bool { return next("b") == 30 })
			waitFor(t, "the failure cleared", func() bool { return len(stats.status(time.Now()).Failed) == 0 })
		})
	}
}

// TestNewsDuringCatchUp appends to a new topic while a capped link is
// still catching up: the sender looks at the news before the backlog is
// sent (its figures count it; it takes its turn by age).
func TestNewsDuringCatchUp(t *testing.T) {
	st := openStore(t, filepath.Join(t.TempDir(), "edge"), "edge1")
	t.Cleanup(func() { st.Close() })
	base := time.Now().Add(-time.Hour)
	var topics []string
	var per []int
	for i := range 20 {
		topics = append(topics, fmt.Sprintf("dev-%03d", i))
		per = append(per, 5)
	}
	appendRounds(t, st, store.ByDeviceStream, topics, per, 20, base) // 2,000 records, ~300 KB
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	f := startFake(t, b, false)
	stats := &StreamStats{dir: DirSend}
	sd := testSender(st.Stream(store.ByDeviceStream), store.ByDeviceStream, a, stats, 16<<10)
	sd.limit = NewLinkLimiter(20_000, nil) // the backlog takes some 12 s
	ctx := context.Background()
	goSender(t, ctx, sd)
	waitFor(t, "the catch-up under way", func() bool { return f.received() > 0 })
	if _, err := st.Stream(store.ByDeviceStream).Append(ctx, "news", store.Message{Value: []byte("n"), Timestamp: time.Now()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the news counted", func() bool { return stats.status(time.Now()).Topics == 21 })
	if n := f.received(); n >= 2000 {
		t.Fatalf("the news was looked at only after the backlog (%d records sent)", n)
	}
}
