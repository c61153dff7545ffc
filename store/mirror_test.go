package store

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// TestMirrorPublishesAtOnce mirrors a volume from one store into another:
// the delta between two snapshots of the source, staged over several
// calls and a restart of the destination, becomes visible all at once.
func TestMirrorPublishesAtOnce(t *testing.T) {
	ctx := context.Background()
	src := openTest(t)
	dstDir := t.TempDir()
	dst, err := Open(Config{Dir: dstDir, MinFreeBytes: -1, RetentionInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { dst.Close() }()

	// Version 1 of the source, mirrored whole.
	big := bytes.Repeat([]byte("0123456789abcdef"), ChunkSize/4) // 4 chunks
	src.File("/models/pump/v1.onnx").Write(ctx, bytes.NewReader(big))
	src.CreateTable(ctx, "/models/registry", TableOptions{})
	src.Table("/models/registry").Put(ctx, "pump", []byte(`{"version":1}`))
	src.CreateSnapshot(ctx, "models", "s1")
	mirror := func(dst *Store, from, to string, batch int, stop int) (*Mirror, int) {
		t.Helper()
		m, err := dst.BeginMirror(ctx, "models", to)
		if err != nil {
			t.Fatal(err)
		}
		var pending []DeltaEntry
		n := 0
		err = src.Delta(ctx, "models", from, to, func(e DeltaEntry) error {
			if p := m.Progress().Pos; p != nil && bytes.Compare(e.Key, p) <= 0 {
				return nil // applied before a restart
			}
			pending = append(pending, e)
			if len(pending) == batch {
				if err := m.Apply(ctx, pending); err != nil {
					return err
				}
				pending, n = nil, n+batch
				if stop > 0 && n >= stop {
					return io.EOF
				}
			}
			return nil
		})
		if errors.Is(err, io.EOF) {
			return m, n
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Apply(ctx, pending); err != nil {
			t.Fatal(err)
		}
		return m, n + len(pending)
	}
	m, _ := mirror(dst, "", "s1", 3, 0)
	if _, err := dst.Stat(ctx, "/models/pump/v1.onnx"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("staged file visible before publish: %v", err)
	}
	if err := m.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	readFile := func(s *Store, p string) []byte {
		r, _, err := s.File(p).Open(ctx)
		if err != nil {
			t.Fatalf("open %s: %v", p, err)
		}
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if !bytes.Equal(readFile(dst, "/models/pump/v1.onnx"), big) {
		t.Fatal("mirrored file differs")
	}

	// Version 2: a new file, a changed table row, the old file deleted.
	big2 := bytes.Repeat([]byte("v2"), 3*ChunkSize/2)
	src.File("/models/pump/v2.onnx").Write(ctx, bytes.NewReader(big2))
	src.Table("/models/registry").Put(ctx, "pump", []byte(`{"version":2}`))
	src.Delete(ctx, "/models/pump/v1.onnx")
	src.CreateSnapshot(ctx, "models", "s2")

	// Stage part of it, then restart the destination mid-update.
	_, n := mirror(dst, "s1", "s2", 2, 2)
	if n == 0 {
		t.Fatal("nothing staged before the restart")
	}
	dst.Stream(EventsStream).Append(ctx, "e", Message{Value: []byte("ordinary write while staging")})
	dst.Close()
	if dst, err = Open(Config{Dir: dstDir, MinFreeBytes: -1, RetentionInterval: -1}); err != nil {
		t.Fatal(err)
	}
	if d, _ := dst.Table("/models/registry").Get(ctx, "pump"); string(d.Value) != `{"version":1}` {
		t.Fatalf("after restart the mirror shows %s before publish", d.Value)
	}
	if got, _ := dst.Stream(EventsStream).Read(ctx, "e", 0, 0, ReadOptions{}); len(got) != 1 {
		t.Fatalf("ordinary write lost across the restart: %d", len(got))
	}
	pos, err := dst.Stream(EventsStream).Append(ctx, "e", Message{Value: []byte("after restart")})
	if err != nil || pos[0].Offset != 1 {
		t.Fatalf("append after restart: %v %v", pos, err)
	}
	// A reader looking at a consistent moment sees the old mirror or the
	// new one, never a mix.
	stop := make(chan struct{})
	readerDone := make(chan error)
	go func() {
		seen := 0
		for {
			select {
			case <-stop:
				if seen == 0 {
					readerDone <- errors.New("reader never ran")
					return
				}
				readerDone <- nil
				return
			default:
			}
			v := &View{s: dst, ts: dst.ts.Load()}
			d, err := v.Table("/models/registry").Get(ctx, "pump")
			if err != nil {
				readerDone <- err
				return
			}
			_, e1 := v.Stat(ctx, "/models/pump/v1.onnx")
			_, e2 := v.Stat(ctx, "/models/pump/v2.onnx")
			old := string(d.Value) == `{"version":1}` && e1 == nil && errors.Is(e2, ErrNotFound)
			neu := string(d.Value) == `{"version":2}` && errors.Is(e1, ErrNotFound) && e2 == nil
			if !old && !neu {
				readerDone <- errors.New("a reader saw half a mirror: " + string(d.Value))
				return
			}
			seen++
		}
	}()
	m, _ = mirror(dst, "s1", "s2", 2, 0) // resumes after its progress
	if d, _ := dst.Table("/models/registry").Get(ctx, "pump"); string(d.Value) != `{"version":1}` {
		t.Fatal("staged row visible before publish")
	}
	if err := m.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	close(stop)
	if err := <-readerDone; err != nil {
		t.Fatal(err)
	}
	if d, _ := dst.Table("/models/registry").Get(ctx, "pump"); string(d.Value) != `{"version":2}` {
		t.Fatalf("after publish: %s", d.Value)
	}
	if !bytes.Equal(readFile(dst, "/models/pump/v2.onnx"), big2) {
		t.Fatal("mirrored v2 differs")
	}
	if _, err := dst.Stat(ctx, "/models/pump/v1.onnx"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted file still there: %v", err)
	}
	if _, _, err := dst.File("/models/pump/v1.onnx").Open(ctx); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted file still opens (stale cached metadata): %v", err)
	}
	srcVol, _ := src.Volume("models")
	dstVol, _ := dst.Volume("models")
	if srcVol.Used != dstVol.Used {
		t.Fatalf("volume usage %d at the source, %d at the mirror", srcVol.Used, dstVol.Used)
	}
	// Another update with a different id is refused while one is pending.
	if _, err := dst.BeginMirror(ctx, "models", "s3"); err != nil {
		t.Fatal(err)
	}
	if _, err := dst.BeginMirror(ctx, "models", "other"); !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), "pending") {
		t.Fatalf("second pending update: %v", err)
	}
}

// TestAbandonMirror stages part of an update (a new file, a changed row, a
// deleted one), restarts, abandons it: nothing visible changes, LastMirror
// stays, usage is as before, and another update then starts and publishes.
func TestAbandonMirror(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	open := func() *Store {
		s, err := Open(Config{Dir: dir, MinFreeBytes: -1, RetentionInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := open()
	defer func() { s.Close() }()
	if err := s.CreateTable(ctx, "/models/registry", TableOptions{}); err != nil {
		t.Fatal(err)
	}
	tbl := func() *Table { return s.Table("/models/registry") }
	tbl().Put(ctx, "keep", []byte(`{"v":1}`))
	tbl().Put(ctx, "gone", []byte(`{"v":1}`))
	before, _ := s.Volume("models")

	// The pending update's staged keys, relative to the volume: find them
	// from a second store that holds what the update would bring.
	other := openTest(t)
	other.CreateTable(ctx, "/models/registry", TableOptions{})
	other.Table("/models/registry").Put(ctx, "keep", []byte(`{"v":2}`))
	other.File("/models/new.onnx").Write(ctx, bytes.NewReader(bytes.Repeat([]byte("x"), 3*ChunkSize)))
	other.CreateSnapshot(ctx, "models", "x")
	var staged []DeltaEntry
	if err := other.Delta(ctx, "models", "", "x", func(e DeltaEntry) error {
		staged = append(staged, e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	staged = append(staged, DeltaEntry{Key: tableRowKeyRel(t, s, "gone"), Delete: true})
	m, err := s.BeginMirror(ctx, "models", "x")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Apply(ctx, staged); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open()
	if _, ok, _ := s.PendingMirror("models"); !ok {
		t.Fatal("no pending update after the restart")
	}
	if err := s.AbandonMirror(ctx, "models"); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		for key, want := range map[string]string{"keep": `{"v":1}`, "gone": `{"v":1}`} {
			if d, err := tbl().Get(ctx, key); err != nil || string(d.Value) != want {
				t.Fatalf("%s: row %s = %s, %v; want %s", when, key, d.Value, err, want)
			}
		}
		if _, err := s.Stat(ctx, "/models/new.onnx"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("%s: the abandoned update's file is visible: %v", when, err)
		}
		if vi, _ := s.Volume("models"); vi.Used != before.Used {
			t.Fatalf("%s: volume uses %d bytes, %d before", when, vi.Used, before.Used)
		}
	}
	check("after abandoning")
	if _, ok, _ := s.PendingMirror("models"); ok {
		t.Fatal("still pending after abandoning")
	}
	if last, _ := s.LastMirror("models"); last != "" {
		t.Fatalf("LastMirror %q after an abandoned first update", last)
	}
	s.Close()
	s = open()
	check("after a restart")

	// A new update starts afresh.
	m, err = s.BeginMirror(ctx, "models", "y")
	if err != nil {
		t.Fatal(err)
	}
	row := encodeRow(9, time.Now(), []byte(`{"v":3}`))
	if err := m.Apply(ctx, []DeltaEntry{{Key: tableRowKeyRel(t, s, "keep"), Value: row}}); err != nil {
		t.Fatal(err)
	}
	if err := m.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	if d, err := tbl().Get(ctx, "keep"); err != nil || !strings.Contains(string(d.Value), `"v":3`) {
		t.Fatalf("after the next update: %s, %v", d.Value, err)
	}
	if _, err := s.Stat(ctx, "/models/new.onnx"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the abandoned update's file came back: %v", err)
	}
}

// tableRowKeyRel is the key of row key of /models/registry relative to the
// models volume, as a mirror delta names it.
func tableRowKeyRel(t *testing.T, s *Store, key string) []byte {
	t.Helper()
	return objKey("models", kindRow, "registry", key)[len(volPrefix("models")):]
}
