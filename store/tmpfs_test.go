package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// mountTmpfs mounts a tmpfs with opts at a new directory for the test, or
// skips the test where mounting is not allowed (not root, no
// CAP_SYS_ADMIN).
func mountTmpfs(t *testing.T, opts string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", opts, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir
}

// TestInodesRunOut: a store on a real tmpfs with few inodes, written
// until they run out, refuses the write with ErrDiskFull and the reason
// (no panic, nothing acknowledged that is not there), closes, and once
// the file system has inodes again it opens with every acknowledged
// message and takes writes.
func TestInodesRunOut(t *testing.T) {
	if testing.Short() {
		t.Skip("mounts a tmpfs and fills it")
	}
	dir := mountTmpfs(t, "size=512m,nr_inodes=40")
	cfg := Config{Dir: dir, Name: "edge1", MemTableSize: 1 << 20, MinFreeBytes: 8 << 20, MinFreeInodes: 8, RetentionInterval: -1}
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st := s.Stream(EventsStream)
	value := bytes.Repeat([]byte("r"), 2000) // kept in the LSM tree: every memtable flush makes files
	acked := 0
	var refusal error
	for i := 0; i < 200_000 && refusal == nil; i++ {
		msgs := make([]Message, 16)
		for j := range msgs {
			msgs[j] = Message{Value: append(fmt.Appendf(nil, "%08d-", acked+j), value...)}
		}
		if _, err := st.Append(ctx, "edge1", msgs...); err != nil {
			refusal = err
			break
		}
		acked += len(msgs)
	}
	if !errors.Is(refusal, ErrDiskFull) {
		t.Fatalf("after %d messages the inodes did not run out, or the write failed otherwise: %v", acked, refusal)
	}
	t.Logf("%d messages acknowledged, then: %v", acked, refusal)
	if _, err := st.Read(ctx, "edge1", 0, 0, ReadOptions{Limit: 10}); err != nil {
		t.Fatalf("reads must go on when writes are refused: %v", err)
	}
	s.Close() // bounded (docs: within 10 s whatever the disk does); the test's timeout is the bound here

	if out, err := exec.Command("mount", "-o", "remount,nr_inodes=4096", dir).CombinedOutput(); err != nil {
		t.Fatalf("remount: %v %s", err, out)
	}
	s, err = Open(cfg)
	if err != nil {
		t.Fatalf("open once inodes are back: %v", err)
	}
	defer s.Close()
	st = s.Stream(EventsStream)
	_, next, err := st.Bounds(ctx, "edge1", 0)
	if err != nil || next < uint64(acked) {
		t.Fatalf("after the reopen the topic ends at %d, %d were acknowledged: %v", next, acked, err)
	}
	for from := uint64(0); from < uint64(acked); {
		msgs, err := st.Read(ctx, "edge1", 0, from, ReadOptions{Limit: 1000})
		if err != nil || len(msgs) == 0 {
			t.Fatalf("read from %d: %d messages, %v", from, len(msgs), err)
		}
		from = msgs[len(msgs)-1].Offset + 1
	}
	if _, err := st.Append(ctx, "edge1", Message{Value: []byte("again")}); err != nil {
		t.Fatalf("writes must come back with the inodes: %v", err)
	}
}
