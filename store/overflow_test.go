package store

import (
	"bytes"
	"context"
	"testing"
	"time"
)

// checkDense reads a partition from its low-water mark to its end and
// checks that the offsets are dense and the values are the ones appended
// (their first 8 bytes hold the offset).
func checkDense(t *testing.T, s *Store, path, topic string) (low, next uint64) {
	t.Helper()
	ctx := context.Background()
	st := s.Stream(path)
	low, next, err := st.Bounds(ctx, topic, 0)
	if err != nil {
		t.Fatal(err)
	}
	for at := low; at < next; {
		got, err := st.Read(ctx, topic, 0, at, ReadOptions{Limit: 1000, MaxBytes: 8 << 20})
		if err != nil || len(got) == 0 {
			t.Fatalf("%s %s: read at %d of %d..%d: %d messages, %v", path, topic, at, low, next, len(got), err)
		}
		for _, m := range got {
			if m.Offset != at || string(m.Value[:8]) != string(seqValue(at, 8)) {
				t.Fatalf("%s %s: message at %d has offset %d, value %q", path, topic, at, m.Offset, m.Value[:8])
			}
			at++
		}
	}
	return low, next
}

func seqValue(i uint64, size int) []byte {
	v := bytes.Repeat([]byte{'.'}, size)
	copy(v, []byte{byte(i >> 56), byte(i >> 48), byte(i >> 40), byte(i >> 32), byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)})
	return v
}

func appendSeq(t *testing.T, s *Store, path, topic string, from, n uint64, size int, ts time.Time) {
	t.Helper()
	for i := from; i < from+n; i++ {
		pos, err := s.Stream(path).Append(context.Background(), topic, Message{Value: seqValue(i, size), Timestamp: ts})
		if err != nil {
			t.Fatalf("append %d to %s: %v", i, path, err)
		}
		if pos[0].Offset != i {
			t.Fatalf("append %d to %s landed at %d", i, path, pos[0].Offset)
		}
	}
}

// TestDropOldest fills a volume that drops its oldest data five times over:
// no append is refused, the volume stays within its quota, the low
// priority stream loses its oldest messages first and the high priority
// one only once the low one is empty, every drop is counted, and what is
// left is dense.
func TestDropOldest(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, func(c *Config) { c.Dir = dir })
	ctx := context.Background()
	const quota = 1 << 20
	if err := s.CreateVolume(ctx, "backlog", VolumeOptions{Quota: quota, DropOldest: true}); err != nil {
		t.Fatal(err)
	}
	for path, prio := range map[string]int{"/backlog/low": 0, "/backlog/high": 1} {
		if err := s.CreateStream(ctx, path, StreamOptions{Priority: prio}); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	appendSeq(t, s, "/backlog/high", "h", 0, 100, 2000, now) // ~200 KiB
	appendSeq(t, s, "/backlog/low", "l", 0, 2500, 2000, now) // ~5 MB
	if vi, _ := s.Volume("backlog"); vi.Used > quota {
		t.Fatalf("volume uses %d bytes, quota %d", vi.Used, quota)
	}
	if low, next := checkDense(t, s, "/backlog/high", "h"); low != 0 || next != 100 {
		t.Fatalf("high priority stream %d..%d, want 0..100 untouched", low, next)
	}
	low, next := checkDense(t, s, "/backlog/low", "l")
	if next != 2500 || low < 2000 {
		t.Fatalf("low priority stream %d..%d, want its newest few hundred of 2500", low, next)
	}
	info, err := s.Stat(ctx, "/backlog/low")
	if err != nil || info.Dropped != int64(low) || info.DroppedBytes < int64(low)*2000 {
		t.Fatalf("low stream counts %d dropped (%d bytes), %v; want %d", info.Dropped, info.DroppedBytes, err, low)
	}

	// The high priority stream alone outgrows the quota: its own oldest
	// data goes, once the low one has nothing left.
	appendSeq(t, s, "/backlog/high", "h", 100, 1000, 2000, now)
	if low, next := checkDense(t, s, "/backlog/low", "l"); low != next {
		t.Fatalf("low priority stream still holds %d..%d", low, next)
	}
	hlow, hnext := checkDense(t, s, "/backlog/high", "h")
	if hlow == 0 || hnext != 1100 {
		t.Fatalf("high priority stream %d..%d, want its oldest dropped", hlow, hnext)
	}

	// The counts and marks survive a restart.
	s.Close()
	s = openTest(t, func(c *Config) { c.Dir = dir })
	if info, err := s.Stat(ctx, "/backlog/high"); err != nil || info.Dropped != int64(hlow) {
		t.Fatalf("after restart, high stream counts %d dropped, %v; want %d", info.Dropped, err, hlow)
	}
	if l, n := checkDense(t, s, "/backlog/high", "h"); l != hlow || n != hnext {
		t.Fatalf("after restart high stream %d..%d, want %d..%d", l, n, hlow, hnext)
	}
	if vi, _ := s.Volume("backlog"); vi.Used > quota || !vi.DropOldest {
		t.Fatalf("after restart volume %+v", vi)
	}
}

// TestDropOldestAcrossTopics checks that among streams of one priority the
// oldest messages go first, whatever their topic.
func TestDropOldestAcrossTopics(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	if err := s.CreateVolume(ctx, "backlog", VolumeOptions{Quota: 1 << 20, DropOldest: true}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateStream(ctx, "/backlog/a", StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateStream(ctx, "/backlog/b", StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	appendSeq(t, s, "/backlog/b", "new", 0, 150, 2000, time.Now())
	appendSeq(t, s, "/backlog/a", "old", 0, 150, 2000, old)
	appendSeq(t, s, "/backlog/a", "newer", 0, 300, 2000, time.Now())
	if low, _ := checkDense(t, s, "/backlog/a", "old"); low == 0 {
		t.Fatal("the oldest topic lost nothing")
	}
	if low, _ := checkDense(t, s, "/backlog/b", "new"); low != 0 {
		t.Fatalf("a newer topic lost %d messages while older ones were left", low)
	}
}

// TestQuotaWithoutDrop checks that a volume without DropOldest still
// refuses.
func TestQuotaRefusesWithoutDrop(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	if err := s.CreateVolume(ctx, "full", VolumeOptions{Quota: 64 << 10}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateStream(ctx, "/full/s", StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		_, err = s.Stream("/full/s").Append(ctx, "t", Message{Value: make([]byte, 2000)})
	}
	if err == nil {
		t.Fatal("200 KB went into a 64 KiB volume")
	}
	if info, _ := s.Stat(ctx, "/full/s"); info.Dropped != 0 {
		t.Fatalf("%d messages dropped without DropOldest", info.Dropped)
	}
}
