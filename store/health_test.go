package store

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"
)

// TestWritable: Writable says why a write would be refused (space,
// inodes, a read-only file system, a closed store) and nil otherwise.
func TestWritable(t *testing.T) {
	var sp atomic.Pointer[Space]
	ok := Space{FreeBytes: 1 << 40, FreeInodes: 1 << 20}
	sp.Store(&ok)
	s, err := Open(Config{Dir: t.TempDir(), RetentionInterval: -1, Statfs: func(string) (Space, error) { return *sp.Load(), nil }})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Writable(); err != nil {
		t.Fatalf("with space: %v", err)
	}
	for _, c := range []struct {
		space Space
		why   string
	}{
		{Space{FreeBytes: 1 << 20, FreeInodes: 1 << 20}, "bytes free"},
		{Space{FreeBytes: 1 << 40, FreeInodes: 100}, "100 inodes free"},
		{Space{FreeBytes: 1 << 40, FreeInodes: 1 << 20, ReadOnly: true}, "read-only"},
	} {
		sp.Store(&c.space)
		if err := s.Writable(); !errors.Is(err, ErrDiskFull) || !strings.Contains(err.Error(), c.why) {
			t.Errorf("with %+v: %v, want ErrDiskFull saying %q", c.space, err, c.why)
		}
	}
	sp.Store(&ok)
	if err := s.Writable(); err != nil {
		t.Fatalf("with space back: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Writable(); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed: %v, want ErrClosed", err)
	}
}
