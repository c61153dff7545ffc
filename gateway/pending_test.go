package gateway

import (
	"net"
	"testing"
	"time"
)

// TestPendingTable feeds the pending table arrivals and releases and
// checks who gets a slot and whose slot is taken.
func TestPendingTable(t *testing.T) {
	tb := newPendingTable(4, 2)
	slots := map[string][]*pendingConn{}
	admit := func(key, wantReason string, wantVictim string) {
		t.Helper()
		slot, victim, reason := tb.admit(key, nil)
		if reason != wantReason {
			t.Fatalf("%s: reason %q, want %q", key, reason, wantReason)
		}
		switch {
		case wantVictim == "" && victim != nil:
			t.Fatalf("%s: took a slot of %s", key, victim.key)
		case wantVictim != "" && (victim == nil || victim.key != wantVictim):
			t.Fatalf("%s: victim %v, want one of %s", key, victim, wantVictim)
		}
		if victim != nil {
			if victim != slots[wantVictim][0] {
				t.Fatalf("%s: victim is not the oldest of %s", key, wantVictim)
			}
			slots[wantVictim] = slots[wantVictim][1:]
		}
		if slot != nil {
			slots[key] = append(slots[key], slot)
		}
	}
	admit("a", "", "")
	admit("a", "", "")
	admit("a", RefuseMaxPendingPerIP, "") // two per address
	admit("b", "", "")
	admit("c", "", "")               // full: a 2, b 1, c 1
	admit("d", "", "a")              // a holds the most: its oldest makes room
	admit("e", RefuseMaxPending, "") // a, b, c, d hold 1 each: no one holds more than e would
	if tb.total != 4 || tb.addrs() != 4 {
		t.Fatalf("total %d over %d addresses", tb.total, tb.addrs())
	}
	tb.release(slots["b"][0])
	tb.release(slots["b"][0]) // twice is once
	admit("e", "", "")
	for k, ss := range slots {
		for _, s := range ss {
			tb.release(s)
		}
		delete(slots, k)
	}
	if tb.total != 0 || tb.addrs() != 0 {
		t.Fatalf("left: total %d over %d addresses", tb.total, tb.addrs())
	}
}

func TestSourceKey(t *testing.T) {
	for _, c := range []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 4000}, "127.0.0.2"},
		{&net.TCPAddr{IP: net.ParseIP("::ffff:10.1.2.3"), Port: 1}, "10.1.2.3"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:aaaa::1"), Port: 1}, "2001:db8:1:2::/64"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:bbbb::9"), Port: 2}, "2001:db8:1:2::/64"},
		{&net.UnixAddr{Name: "@x", Net: "unix"}, "@x"},
	} {
		if got := sourceKey(c.addr); got != c.want {
			t.Errorf("sourceKey(%v) = %q, want %q", c.addr, got, c.want)
		}
	}
}

// TestLimitsKeptPerDevice checks that a device's connections share its
// buckets and that a limiter is forgotten only unused and full again.
func TestLimitsKeptPerDevice(t *testing.T) {
	t0 := time.Unix(1000, 0)
	cfg := &Config{MessageRate: 1, MessageBurst: 2, ByteRate: -1, ConnectRate: 1, ConnectBurst: 1}
	ls := newLimits(cfg)
	a := ls.acquire("d", t0)
	if a.allow(t0, 1) != "" || a.allow(t0, 1) != "" {
		t.Fatal("burst refused")
	}
	b := ls.acquire("d", t0) // a takeover: the same buckets
	if b != a || b.allow(t0, 1) != RefuseMessageRate {
		t.Fatal("second connection got a bucket of its own")
	}
	if !a.allowConnect(t0) || b.allowConnect(t0) {
		t.Fatal("connect burst of 1 not shared")
	}
	ls.release(a)
	ls.release(b)
	if ls.evict(t0.Add(time.Second)) != 0 {
		t.Fatal("evicted with its buckets not full")
	}
	c := ls.acquire("d", t0.Add(time.Second))
	if c != a || c.allow(t0.Add(time.Second), 1) != "" || c.allow(t0.Add(time.Second), 1) != RefuseMessageRate {
		t.Fatal("a reconnect refilled the bucket")
	}
	if ls.evict(t0.Add(time.Hour)) != 0 {
		t.Fatal("evicted while held")
	}
	ls.release(c)
	if ls.evict(t0.Add(time.Hour)) != 1 || ls.len() != 0 {
		t.Fatal("idle full limiter kept")
	}
}
