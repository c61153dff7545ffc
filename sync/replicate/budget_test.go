package replicate

import (
	"fmt"
	"testing"
	"time"

	"github.com/weft-io/weft/sync/wire"
)

func TestBackoff(t *testing.T) {
	b := Backoff{Min: 100 * time.Millisecond, Max: time.Second}
	var got []time.Duration
	for range 6 {
		got = append(got, b.Next(1-1e-12)) // the top of each jitter range
	}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i := range want {
		if d := got[i].Round(time.Millisecond); d != want[i]*time.Millisecond {
			t.Errorf("attempt %d: %v, want %v", i, d, want[i]*time.Millisecond)
		}
	}
	if d := b.Next(0); d != 500*time.Millisecond {
		t.Errorf("bottom of the jitter range: %v, want half the step", d)
	}
	b.Reset()
	if d := b.Next(0); d != 50*time.Millisecond {
		t.Errorf("after Reset: %v", d)
	}
}

func TestLimiter(t *testing.T) {
	t0 := time.Unix(1000, 0)
	l := NewLimiter(1 << 20) // 1 MiB/s, burst 104857 bytes
	if d, ok := l.Reserve(t0, 100<<10, false); d != 0 || !ok {
		t.Fatalf("within the burst: wait %v", d)
	}
	// Send 10 MiB in 64 KiB pieces as fast as the waits allow: the clock
	// advances by each wait, and the total must be about 10 s.
	now := t0
	for sent := 0; sent < 10<<20; {
		d, ok := l.Reserve(now, 64<<10, false)
		now = now.Add(d)
		if ok {
			sent += 64 << 10
		}
	}
	if el := now.Sub(t0); el < 9800*time.Millisecond || el > 10100*time.Millisecond {
		t.Fatalf("10 MiB at 1 MiB/s took %v", el)
	}
	// In debt, bulk waits for the debt before it may reserve; urgent
	// frames reserve at once.
	l = NewLimiter(1 << 20)
	l.Reserve(t0, 1<<20, false) // 0.9 s of debt
	if d, ok := l.Reserve(t0, 1000, false); ok || d < 850*time.Millisecond {
		t.Fatalf("bulk in debt: %v %v", d, ok)
	}
	if _, ok := l.Reserve(t0, 1000, true); !ok {
		t.Fatal("urgent frame refused")
	}
	var none *Limiter
	if d, ok := none.Reserve(t0, 1<<30, false); d != 0 || !ok {
		t.Fatal("no limit must not wait")
	}
	if d, ok := NewLimiter(0).Reserve(t0, 1<<30, false); d != 0 || !ok {
		t.Fatal("no limit must not wait")
	}
}

func TestUrgency(t *testing.T) {
	if !(Urgency("") < Urgency("/updates/down") && Urgency("/updates/down") < Urgency("/shadows/changes") &&
		Urgency("/shadows/changes") < Urgency("/uplink/events") && Urgency("/uplink/events") < Urgency("/telemetry/by_device")) {
		t.Fatal("priorities out of order")
	}
}

func TestTracker(t *testing.T) {
	tr := newTracker(100)
	a, b := tp{"a", 0}, tp{"b", 0}
	tr.position(b, 5, 20)
	tr.position(a, 0, 30)
	if !tr.known(a) || tr.known(tp{"c", 0}) {
		t.Fatal("known")
	}
	if tr.lag != 45 || tr.unsent != 45 || tr.live != 2 {
		t.Fatalf("sums: lag %d unsent %d live %d", tr.lag, tr.unsent, tr.live)
	}
	// Not known how old: in the order they came.
	if k, _ := tr.pick(); k != b {
		t.Fatalf("first pick %v", k)
	}
	// Oldest data first: b's next is newer than a's unknown.
	tr.sent(b, 5, 3, 60, 100, 200)
	if k, _ := tr.pick(); k != a {
		t.Fatalf("pick after b sent %v", k)
	}
	tr.sent(a, 0, 10, 60, 50, 150)
	if k, _ := tr.pick(); k != a {
		t.Fatalf("a's data (150) is older than b's (200): picked %v", k)
	}
	if !tr.full() || tr.next(a) != 10 || tr.next(b) != 8 || tr.unsent != 32 || tr.lag != 45 {
		t.Fatalf("after sending: full %v next a %d b %d unsent %d lag %d", tr.full(), tr.next(a), tr.next(b), tr.unsent, tr.lag)
	}
	if o := tr.oldest(); o != 100 {
		t.Fatalf("oldest %d, want 100 (the first batch in flight)", o)
	}
	// A partition with nothing more leaves the picks until touched.
	tr.done(a)
	if k, _ := tr.pick(); k != b {
		t.Fatalf("pick after a is done: %v", k)
	}
	tr.touch(a, 40, 300)
	tr.touch(tp{"unknown", 0}, 9, 0)
	if tr.dirty.Len() != 2 || tr.topics[a].end != 40 {
		t.Fatalf("after touching a and an unknown partition: %d dirty, a ends at %d", tr.dirty.Len(), tr.topics[a].end)
	}

	// Acks come in order; one for another topic is a protocol error.
	if _, err := tr.ack(&wire.Ack{Topic: "a", Next: 10}); err == nil {
		t.Fatal("out-of-order ack accepted")
	}
	tr2 := newTracker(100)
	tr2.position(a, 0, 30)
	tr2.sent(a, 0, 10, 60, 1, 1)
	tr2.sent(a, 10, 10, 60, 2, 2)
	tr2.sent(a, 20, 10, 60, 3, 3)
	// The receiver lost what it had: it is at 4, the first batch gaps.
	tr2.done(a)
	r, err := tr2.ack(&wire.Ack{Topic: "a", Next: 4, Gap: true})
	if k, ok := tr2.pick(); err != nil || !r.rewound || tr2.next(a) != 4 || !ok || k != a {
		t.Fatalf("gap: %+v %v next %d, picked %v", r, err, tr2.next(a), k)
	}
	// The resend from 4 goes out; then the gaps of the older batches
	// must not rewind again.
	tr2.sent(a, 4, 26, 60, 1, 3)
	for range 2 {
		r, err := tr2.ack(&wire.Ack{Topic: "a", Next: 4, Gap: true})
		if err != nil || r.rewound {
			t.Fatalf("old gap rewound again: %+v %v", r, err)
		}
	}
	if tr2.next(a) != 30 {
		t.Fatalf("next %d after old gaps, want 30", tr2.next(a))
	}
	if r, err := tr2.ack(&wire.Ack{Topic: "a", Next: 30, Applied: 26}); err != nil || r.count != 26 {
		t.Fatalf("resend ack: %+v %v", r, err)
	}
	tr2.done(a)
	if tr2.inflight != 0 || tr2.lag != 0 || tr2.live != 1 || tr2.topics[a].acked != 30 || tr2.oldest() != 0 {
		t.Fatalf("inflight %d, lag %d of %d, acked %d", tr2.inflight, tr2.lag, tr2.live, tr2.topics[a].acked)
	}
	if _, err := tr2.ack(&wire.Ack{Topic: "a", Next: 30}); err == nil {
		t.Fatal("ack with nothing in flight accepted")
	}
	// Trimmed source: skip forward.
	tr2.touch(a, 60, 0)
	if n := tr2.skip(a, 50); n != 20 || tr2.next(a) != 50 || tr2.unsent != 10 || tr2.lag != 30 {
		t.Fatalf("skip %d next %d unsent %d lag %d", n, tr2.next(a), tr2.unsent, tr2.lag)
	}
	// A data error sets a partition aside until retried.
	tr2.fail(a, "corrupt")
	if _, ok := tr2.pick(); ok || tr2.lag != 30 {
		t.Fatal("a failed partition is picked")
	}
	tr2.retry()
	if k, ok := tr2.pick(); !ok || k != a {
		t.Fatal("a retried partition is not picked")
	}
}

// TestTrackerKeepsOnlyBusy checks that a tracker lets go of caught-up
// partitions beyond the few recently active it keeps.
func TestTrackerKeepsOnlyBusy(t *testing.T) {
	tr := newTracker(1 << 30)
	tr.keepIdle = 10
	for i := range 1000 {
		k := tp{fmt.Sprint(i), 0}
		tr.position(k, uint64(i%3), 2)
		if i%3 < 2 {
			tr.sent(k, uint64(i%3), 2-i%3, 1, 1, 1)
			tr.done(k)
		}
	}
	for len(tr.queue) > 0 {
		f := tr.queue[0]
		if _, err := tr.ack(&wire.Ack{Topic: f.key.topic, Next: f.first + uint64(f.count)}); err != nil {
			t.Fatal(err)
		}
	}
	if len(tr.topics) != 10 || tr.live != 10 || tr.lag != 0 || tr.unsent != 0 || len(tr.idle) > 4*10+64 {
		t.Fatalf("%d partitions kept (%d live, lag %d, %d idle entries), want 10", len(tr.topics), tr.live, tr.lag, len(tr.idle))
	}
}
