package gateway

import (
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	cfg := &Config{MessageRate: 10, MessageBurst: 3, ByteRate: 1000, ByteBurst: 1500}
	steps := []struct {
		ms   int
		size int
		want string
	}{
		{0, 100, ""},
		{0, 100, ""},
		{0, 100, ""},
		{0, 100, RefuseMessageRate}, // burst of 3 spent
		{99, 100, RefuseMessageRate},
		{100, 100, ""},                // one token back after 100 ms
		{300, 1500, RefuseByteRate},   // 1400 bytes in the bucket
		{300, 1400, ""},               // fits
		{400, 500, RefuseByteRate},    // 100 bytes back
		{800, 500, ""},                // 500 bytes after 0.4 s more
		{10000, 1500, ""},             // full again
		{10000, 1, RefuseByteRate},    // and empty
		{10000, 0, ""},                // empty payloads cost a message only
		{20000, 1600, RefuseByteRate}, // never more than the burst
	}
	l := newLimiter(cfg, t0)
	for i, s := range steps {
		if got := l.allow(at(s.ms), s.size); got != s.want {
			t.Fatalf("step %d (%d ms, %d bytes): %q, want %q", i, s.ms, s.size, got, s.want)
		}
	}
}

func TestLimiterOff(t *testing.T) {
	l := newLimiter(&Config{MessageRate: -1, ByteRate: -1, ConnectRate: -1}, time.Unix(0, 0))
	for i := range 10000 {
		if r := l.allow(time.Unix(0, 0), 1<<20); r != "" || !l.allowConnect(time.Unix(0, 0)) {
			t.Fatalf("message %d refused: %s", i, r)
		}
	}
}

// BenchmarkLimiterAllow is what the per-device limits add to each
// publish: the message and byte buckets of a device, behind its lock.
func BenchmarkLimiterAllow(b *testing.B) {
	l := newLimiter(&Config{MessageRate: 1e9, MessageBurst: 1e9, ByteRate: 1e12, ByteBurst: 1e12}, time.Unix(0, 0))
	now := time.Unix(1, 0)
	b.ReportAllocs()
	for b.Loop() {
		if l.allow(now, 200) != "" {
			b.Fatal("refused")
		}
	}
}
