package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weft-io/weft/store"
)

// dirSize is the total size of the files in dir.
func dirSize(dir string) int64 {
	var n int64
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && !e.IsDir() {
			n += fi.Size()
		}
	}
	return n
}

// TestFsPutKilled kills weft fs put with SIGKILL after it has stored
// several amounts of a file: when the store opens again, the chunks of the
// write that never ended are gone, counted, and the volume's usage is that
// of the live files.
func TestFsPutKilled(t *testing.T) {
	for _, mib := range []int{0, 1, 3, 6} {
		t.Run(fmt.Sprintf("%dMiB", mib), func(t *testing.T) {
			dir := t.TempDir()
			data := filepath.Join(dir, "data")
			step{args: []string{"fs", "put", "-", "/models/live"}, stdin: "a live file\n"}.run(t, dir)
			s, err := store.Open(store.Config{Dir: data, MinFreeBytes: -1, RetentionInterval: -1})
			if err != nil {
				t.Fatal(err)
			}
			vi, _ := s.Volume("models")
			want := vi.Used
			s.Close()
			before := dirSize(data)

			cmd := exec.Command(weftBin, "fs", "put", "--data", data, "-", "/models/big")
			in, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 1<<20)
			for range mib {
				rand.Read(buf)
				if _, err := in.Write(buf); err != nil {
					t.Fatal(err)
				}
			}
			// Wait until what was sent is in the store's files (the
			// chunks go to the value log, written at each commit).
			deadline := time.Now().Add(30 * time.Second)
			for mib > 0 && dirSize(data) < before+int64(mib-1)<<20 {
				if time.Now().After(deadline) {
					t.Fatalf("the store holds %d bytes more after sending %d MiB", dirSize(data)-before, mib)
				}
				time.Sleep(10 * time.Millisecond)
			}
			cmd.Process.Kill()
			cmd.Wait()
			in.Close()

			s, err = store.Open(store.Config{Dir: data, MinFreeBytes: -1, RetentionInterval: -1})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			vi, _ = s.Volume("models")
			if vi.Used != want {
				t.Fatalf("models uses %d bytes after the killed put, %d before (unfinished: %+v)", vi.Used, want, s.Unfinished())
			}
			if _, err := s.Stat(context.Background(), "/models/big"); err == nil {
				t.Fatal("the killed put left a file")
			}
			if mib > 1 {
				u := s.Unfinished()
				if len(u) != 1 || u[0].Path != "/models/big" || u[0].Chunks < 4*(mib-1) {
					t.Fatalf("unfinished writes %+v, want /models/big with at least %d chunks", u, 4*(mib-1))
				}
			}
			// Removed for good: a second open finds nothing more.
			s.Close()
			s, err = store.Open(store.Config{Dir: data, MinFreeBytes: -1, RetentionInterval: -1})
			if err != nil {
				t.Fatal(err)
			}
			if len(s.Unfinished()) != 0 {
				t.Fatalf("second open removes %+v again", s.Unfinished())
			}
			rc, _, err := s.File("/models/live").Open(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(rc)
			if err != nil || string(b) != "a live file\n" {
				t.Fatalf("live file: %q %v", b, err)
			}
		})
	}
}

// TestStoreVerifyQuarantine damages a batch of a store, as a torn write
// or a bad sector would, and has weft store verify find it, weft store
// quarantine give it up and weft stream read go on past it.
func TestStoreVerifyQuarantine(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	s, err := store.Open(store.Config{Dir: data, MinFreeBytes: -1, RetentionInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	big := make([]byte, 100<<10) // value log entries
	for range 20 {
		rand.Read(big)
		if _, err := s.Stream(store.EventsStream).Append(ctx, "e", store.Message{Value: big}); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	step{args: []string{"store", "verify", data}, noData: true}.run(t, dir)

	// Damage the value log in the middle.
	var vlog string
	var size int64
	ents, _ := os.ReadDir(data)
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && strings.HasSuffix(e.Name(), ".vlog") && fi.Size() > size {
			vlog, size = filepath.Join(data, e.Name()), fi.Size()
		}
	}
	f, err := os.OpenFile(vlog, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt(make([]byte, 16), size/2)
	f.Close()

	var from string
	step{args: []string{"store", "verify", data}, noData: true, fail: true, check: func(t *testing.T, dir, stdout string) {
		for _, line := range strings.Split(stdout, "\n") {
			if f := strings.Split(line, "\t"); f[0] == "corrupt" && f[1] == store.EventsStream && f[2] == "e" && from == "" {
				from, _, _ = strings.Cut(f[4], "-")
			}
		}
		if from == "" {
			t.Fatalf("verify names no corrupt range:\n%s", stdout)
		}
	}}.run(t, dir)
	step{args: []string{"stream", "read", store.EventsStream, "--topic", "e", "--limit", "100"}, fail: true, stderr: "store: corrupt batch"}.run(t, dir)
	for range 20 {
		var out strings.Builder
		cmd := exec.Command(weftBin, "store", "verify", data)
		cmd.Stdout = &out
		if cmd.Run() == nil {
			break
		}
		from = ""
		for _, line := range strings.Split(out.String(), "\n") {
			if f := strings.Split(line, "\t"); f[0] == "corrupt" && from == "" {
				from, _, _ = strings.Cut(f[4], "-")
			}
		}
		if from == "" {
			t.Fatalf("verify fails naming no range:\n%s", out.String())
		}
		step{args: []string{"store", "quarantine", data, "--stream", store.EventsStream, "--topic", "e", "--from", from}, noData: true}.run(t, dir)
	}
	step{args: []string{"store", "verify", data}, noData: true, check: func(t *testing.T, dir, stdout string) {
		if !strings.Contains(stdout, "quarantined\t") {
			t.Fatalf("verify lists no quarantined range:\n%s", stdout)
		}
	}}.run(t, dir)
	// A read stops at the gap and names it.
	step{args: []string{"stream", "read", store.EventsStream, "--topic", "e", "--limit", "100"}, fail: true, stderr: "store: offsets quarantined"}.run(t, dir)
}
