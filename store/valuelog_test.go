package store

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// vlogBytes is the size of the value log files in dir.
func vlogBytes(t *testing.T, dir string) int64 {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.vlog"))
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		n += st.Size()
	}
	return n
}

// TestValueLogCollected checks that large values trimmed from a stream give
// their space back, and that what is kept still reads.
func TestValueLogCollected(t *testing.T) {
	dir := t.TempDir()
	// No background compaction: the test compacts when the deletions are
	// past the discard timestamp.
	cfg := func(c *Config) {
		c.Dir = dir
		c.tune = func(o *badger.Options) {
			o.ValueLogFileSize, o.NumCompactors, o.NumLevelZeroTables = 2<<20, 0, 1
		}
	}
	s := openTest(t, cfg)
	ctx := context.Background()
	if err := s.CreateStream(ctx, "/telemetry/big", StreamOptions{MaxBytes: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("x"), 200<<10)
	for i := range 100 {
		big[0] = byte(i)
		if _, err := s.Stream("/telemetry/big").Append(ctx, "t", Message{Value: big}); err != nil {
			t.Fatal(err)
		}
	}
	before := vlogBytes(t, dir)
	if before < 16<<20 {
		t.Fatalf("value log holds %d bytes after 20 MB of 200 KiB values; want them there", before)
	}
	s.Close()
	s = openTest(t, cfg)
	if err := s.EnforceRetention(ctx); err != nil {
		t.Fatal(err)
	}
	// Closing flushes the memtable: the data and the deletions are now two
	// level 0 tables for compaction to merge.
	s.Close()
	s = openTest(t, cfg)
	s.db.SetDiscardTs(s.ts.Load())
	if err := s.db.Flatten(1); err != nil {
		t.Fatal(err)
	}
	if n := s.collectValueLog(); n == 0 {
		t.Fatal("no value log file was rewritten")
	}
	after := vlogBytes(t, dir)
	if after > before/2 {
		t.Fatalf("value log %d bytes after trimming to 1 MiB, was %d", after, before)
	}
	low, next, err := s.Stream("/telemetry/big").Bounds(ctx, "t", 0)
	if err != nil || next != 100 || low == 0 || low > 96 {
		t.Fatalf("bounds %d..%d, %v", low, next, err)
	}
	got, err := s.Stream("/telemetry/big").Read(ctx, "t", 0, low, ReadOptions{Limit: 10, MaxBytes: 8 << 20})
	if err != nil || len(got) != int(next-low) || got[len(got)-1].Value[0] != 99 || len(got[0].Value) != len(big) {
		t.Fatalf("read after collection: %d messages, %v", len(got), err)
	}
}
