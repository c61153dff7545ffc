package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weft-io/weft/store"
)

// TestStoreBackupRestore: weft store backup writes a full and then an
// incremental backup of a data directory; weft store restore loads both
// into an empty directory, which then holds every message; restoring
// into a used directory is refused.
func TestStoreBackupRestore(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	appendN := func(from, n int) {
		t.Helper()
		s, err := store.Open(store.Config{Dir: data, MinFreeBytes: -1, RetentionInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		for i := from; i < from+n; i++ {
			if _, err := s.Stream(store.EventsStream).Append(context.Background(), "edge1", store.Message{Value: []byte{byte(i)}}); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	run := func(args ...string) string {
		t.Helper()
		cmd := newStoreCmd()
		var stderr strings.Builder
		cmd.SetErr(&stderr)
		cmd.SetOut(&strings.Builder{})
		cmd.SetArgs(args)
		if err := cmd.Execute(); err != nil {
			t.Fatalf("weft store %v: %v", args, err)
		}
		return stderr.String()
	}
	appendN(0, 10)
	full, incr := filepath.Join(dir, "full.bak"), filepath.Join(dir, "incr.bak")
	msg := run("backup", data, "-o", full)
	_, next, ok := strings.Cut(msg, "--since ")
	if !ok {
		t.Fatalf("backup said %q, want the version for --since", msg)
	}
	appendN(10, 5)
	run("backup", data, "--since", strings.TrimSuffix(strings.TrimSpace(next), ")"), "-o", incr)

	restored := filepath.Join(dir, "restored")
	run("restore", restored, full, incr)
	s, err := store.Open(store.Config{Dir: restored, MinFreeBytes: -1, RetentionInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := s.Stream(store.EventsStream).Read(context.Background(), "edge1", 0, 0, store.ReadOptions{Limit: 100})
	s.Close()
	if err != nil || len(msgs) != 15 || msgs[14].Value[0] != 14 {
		t.Fatalf("restored: %d messages, %v", len(msgs), err)
	}

	cmd := newStoreCmd()
	cmd.SetErr(&strings.Builder{})
	cmd.SetArgs([]string{"restore", data, full})
	if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("restore over a store: %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*.bak.*")); len(left) > 0 {
		t.Fatalf("temporary files left beside the backups: %v", left)
	}
}
