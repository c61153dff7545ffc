package store

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// TestFullFilesystem runs the store on a small tmpfs that another writer
// fills: the store refuses writes with ErrDiskFull, still opens and reads
// everything it acknowledged, and takes writes again once space is freed.
// It needs root to mount the tmpfs.
func TestFullFilesystem(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=160m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", mnt).Run() })

	dir := filepath.Join(mnt, "store")
	cfg := Config{Dir: dir, MemTableSize: 4 << 20, RetentionInterval: -1} // reserve: 44 MiB
	ctx := context.Background()
	val := make([]byte, 32<<10) // random: compression must not help
	rand.Read(val)
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	const acked = 100
	for i := 0; i < acked; i++ {
		if _, err := s.Stream(EventsStream).Append(ctx, "e", Message{Value: val}); err != nil {
			t.Fatal(err)
		}
	}
	check := func(s *Store) {
		t.Helper()
		got, err := s.Stream(EventsStream).Read(ctx, "e", 0, 0, ReadOptions{Limit: 1000, MaxBytes: 1 << 30})
		if err != nil || len(got) != acked {
			t.Fatalf("read %d of %d acknowledged: %v", len(got), acked, err)
		}
	}

	// Another writer fills the file system to 8 MiB short of full.
	filler := filepath.Join(mnt, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	var st syscall.Statfs_t
	syscall.Statfs(mnt, &st)
	if err := syscall.Fallocate(int(f.Fd()), 0, 0, int64(st.Bavail)*int64(st.Bsize)-8<<20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	// Not a byte more: the store refuses, and an fsync'd write is never
	// acknowledged.
	if _, err := s.Stream(EventsStream).Append(ctx, "e", Message{Value: val}); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("append on a full disk: %v, want ErrDiskFull", err)
	}
	check(s)
	if err := s.Close(); err != nil {
		t.Fatalf("close on a full disk: %v", err)
	}
	if s, err = Open(cfg); err != nil {
		t.Fatalf("open on a full disk: %v", err)
	}
	defer s.Close()
	check(s)
	if _, err := s.Table(ShadowsTable).Put(ctx, "d", []byte(`{}`)); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("table put on a full disk: %v, want ErrDiskFull", err)
	}
	// Space comes back: writes go on, offsets dense.
	os.Remove(filler)
	pos, err := s.Stream(EventsStream).Append(ctx, "e", Message{Value: val})
	if err != nil || pos[0].Offset != acked {
		t.Fatalf("append after freeing space: %v %v, want offset %d", pos, err, acked)
	}
}
