package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// TestSpaceRefused feeds the store's reserve check figures of a file
// system short of space, of inodes, and read-only: writes are refused
// with ErrDiskFull and the reason, reads go on, and writes come back with
// the space.
func TestSpaceRefused(t *testing.T) {
	var sp atomic.Pointer[Space]
	sp.Store(&Space{FreeBytes: 1 << 40, FreeInodes: 1 << 20})
	s, err := Open(Config{Dir: t.TempDir(), RetentionInterval: -1, Statfs: func(string) (Space, error) { return *sp.Load(), nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if _, err := s.Stream(EventsStream).Append(ctx, "e", Message{Value: []byte("a")}); err != nil {
		t.Fatal(err)
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
		_, err := s.Stream(EventsStream).Append(ctx, "e", Message{Value: []byte("b")})
		if !errors.Is(err, ErrDiskFull) || !strings.Contains(err.Error(), c.why) {
			t.Fatalf("append with %+v: %v, want ErrDiskFull saying %q", c.space, err, c.why)
		}
		if _, err := s.File("/models/m").Write(ctx, strings.NewReader("x")); !errors.Is(err, ErrDiskFull) {
			t.Fatalf("file write with %+v: %v", c.space, err)
		}
		if msgs, err := s.Stream(EventsStream).Read(ctx, "e", 0, 0, ReadOptions{}); err != nil || len(msgs) != 1 {
			t.Fatalf("read with %+v: %d %v", c.space, len(msgs), err)
		}
	}
	sp.Store(&Space{FreeBytes: 1 << 40, FreeInodes: 1 << 20})
	pos, err := s.Stream(EventsStream).Append(ctx, "e", Message{Value: []byte("c")})
	if err != nil || pos[0].Offset != 1 {
		t.Fatalf("append with space back: %v %v", pos, err)
	}
}

// TestReadOnlyDirectory makes the data directory read-only: a store does
// not open there, and one open refuses writes. chmod does not bind root,
// so the test needs another user.
func TestReadOnlyDirectory(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("running as root: permissions do not make a directory read-only")
	}
	dir := filepath.Join(t.TempDir(), "data")
	s, err := Open(Config{Dir: dir, RetentionInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o555)
	t.Cleanup(func() { os.Chmod(dir, 0o700) })
	if _, err := s.Stream(EventsStream).Append(context.Background(), "e", Message{Value: []byte("a")}); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("append in a read-only directory: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Config{Dir: dir, RetentionInterval: -1}); !errors.Is(err, ErrDiskFull) || !strings.Contains(err.Error(), "not writable") {
		t.Fatalf("open of a read-only directory: %v", err)
	}
}
