package replicate

import (
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
	tr.position(b, 5)
	tr.position(a, 0)
	if !tr.known(a) || tr.known(tp{"c", 0}) {
		t.Fatal("known")
	}
	if p := tr.pass(); len(p) != 2 || p[0] != a || p[1] != b {
		t.Fatalf("first pass %v", p)
	}
	if p := tr.pass(); p[0] != b {
		t.Fatalf("second pass starts at %v: passes must rotate", p[0])
	}
	// A partition with nothing more leaves the passes until touched.
	tr.done(a)
	if p := tr.pass(); len(p) != 1 || p[0] != b {
		t.Fatalf("pass after a is done: %v", p)
	}
	tr.touch(a)
	tr.touch(tp{"unknown", 0})
	if p := tr.pass(); len(p) != 2 {
		t.Fatalf("pass after touching a and an unknown partition: %v", p)
	}
	tr.sent(a, 0, 10, 60)
	tr.sent(b, 5, 3, 60)
	if !tr.full() || tr.next(a) != 10 || tr.next(b) != 8 {
		t.Fatalf("after sending: full %v next a %d b %d", tr.full(), tr.next(a), tr.next(b))
	}
	tr.sent(a, 10, 5, 10)

	// Acks come in order; one for another topic is a protocol error.
	if _, err := tr.ack(&wire.Ack{Topic: "b", Next: 8}); err == nil {
		t.Fatal("out-of-order ack accepted")
	}
	tr2 := newTracker(100)
	tr2.position(a, 0)
	tr2.sent(a, 0, 10, 60)
	tr2.sent(a, 10, 10, 60)
	tr2.sent(a, 20, 10, 60)
	// The receiver lost what it had: it is at 4, the first batch gaps.
	tr2.done(a)
	r, err := tr2.ack(&wire.Ack{Topic: "a", Next: 4, Gap: true})
	if err != nil || !r.rewound || tr2.next(a) != 4 || !tr2.dirty[a] {
		t.Fatalf("gap: %+v %v next %d, in the passes %v", r, err, tr2.next(a), tr2.dirty[a])
	}
	// The resend from 4 goes out; then the gaps of the older batches
	// must not rewind again.
	tr2.sent(a, 4, 26, 60)
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
	if behind, live := tr2.behind(false); tr2.inflight != 0 || len(behind) != 0 || live != 1 || tr2.topics[a].acked != 30 {
		t.Fatalf("inflight %d, behind %v of %d, acked %d", tr2.inflight, behind, live, tr2.topics[a].acked)
	}
	if behind, _ := tr2.behind(true); behind[a] != 30 {
		t.Fatalf("all behind: %v", behind)
	}
	if _, err := tr2.ack(&wire.Ack{Topic: "a", Next: 30}); err == nil {
		t.Fatal("ack with nothing in flight accepted")
	}
	// Trimmed source: skip forward.
	if n := tr2.skip(a, 50); n != 20 || tr2.next(a) != 50 {
		t.Fatalf("skip %d next %d", n, tr2.next(a))
	}
}
