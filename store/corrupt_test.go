package store

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
)

// fillStream writes batches of per messages of size bytes each to topic
// "t" of EventsStream in a store in dir and closes it: small memtables, so
// that the data sits in several tables.
func fillStream(t *testing.T, dir string, batches, per, size int) {
	t.Helper()
	s, err := Open(Config{Dir: dir, MemTableSize: 1 << 20, RetentionInterval: -1, MinFreeBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range batches {
		msgs := make([]Message, per)
		for j := range msgs {
			v := make([]byte, size)
			rand.Read(v)
			msgs[j] = Message{Key: []byte(fmt.Sprint(i)), Value: v}
		}
		if _, err := s.Stream(EventsStream).Append(ctx, "t", msgs...); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// copyDir copies the files of src into a new directory.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		in, err := os.Open(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out, err := os.Create(filepath.Join(dst, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(out, in); err != nil {
			t.Fatal(err)
		}
		in.Close()
		out.Close()
	}
	return dst
}

// flip inverts n bytes of file at offset off.
func flip(t *testing.T, file string, off int64, n int) {
	t.Helper()
	f, err := os.OpenFile(file, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = ^b[i]
	}
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// filesOf lists the files of dir with the suffix, largest first.
func filesOf(t *testing.T, dir, suffix string) []string {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	var out []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), suffix) {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	size := func(p string) int64 { fi, _ := os.Stat(p); return fi.Size() }
	sort.Slice(out, func(i, j int) bool { return size(out[i]) > size(out[j]) })
	return out
}

// readAll reads topic "t" from 0 as a reader that must not miss a message
// unknowingly: offsets must come dense until the end (total) or until an
// error naming where they stop.
func readAll(t *testing.T, s *Store, total uint64) (got uint64, err error) {
	t.Helper()
	ctx := context.Background()
	for got < total {
		msgs, err := s.Stream(EventsStream).Read(ctx, "t", 0, got, ReadOptions{Limit: 5000})
		if err != nil {
			return got, err
		}
		if len(msgs) == 0 {
			t.Fatalf("read from %d of %d: no messages and no error: a silent gap", got, total)
		}
		for _, m := range msgs {
			if m.Offset != got {
				t.Fatalf("read offset %d after %d: a silent gap", m.Offset, got-1)
			}
			got++
		}
	}
	return got, nil
}

// quarantineAll reads past every damaged range, quarantining each, and
// checks that what is read and what is given up add up to total.
func quarantineAll(t *testing.T, s *Store, total uint64) (quarantined uint64) {
	t.Helper()
	ctx := context.Background()
	st := s.Stream(EventsStream)
	for from := uint64(0); from < total; {
		msgs, _, err := st.ReadPast(ctx, "t", 0, from, ReadOptions{Limit: 5000})
		var ce *CorruptError
		if errors.As(err, &ce) {
			g, err := st.Quarantine(ctx, "t", 0, ce.From)
			if err != nil {
				t.Fatalf("quarantine %v: %v", ce, err)
			}
			quarantined += g.To - g.From
			continue
		}
		if err != nil {
			t.Fatalf("read past from %d: %v", from, err)
		}
		if len(msgs) == 0 {
			break
		}
		from = msgs[len(msgs)-1].Offset + 1
	}
	// A reader stepping over the gaps reads the rest and counts the loss.
	var read, lost uint64
	for from := uint64(0); from < total; {
		msgs, start, err := st.ReadPast(ctx, "t", 0, from, ReadOptions{Limit: 5000})
		if err != nil {
			t.Fatalf("read past from %d: %v", from, err)
		}
		lost += start - from
		if len(msgs) == 0 {
			if start < total {
				t.Fatalf("read past from %d stops at %d of %d without an error", from, start, total)
			}
			break
		}
		if msgs[0].Offset != start {
			t.Fatalf("read past from %d starts at %d, says %d", from, msgs[0].Offset, start)
		}
		read += uint64(len(msgs))
		from = msgs[len(msgs)-1].Offset + 1
	}
	if read+lost != total || lost != quarantined {
		t.Fatalf("read %d and stepped over %d of %d; quarantined %d", read, lost, total, quarantined)
	}
	info, err := s.Stat(ctx, EventsStream)
	if err != nil || uint64(info.Quarantined) != quarantined {
		t.Fatalf("stream counts %d quarantined (%v), want %d", info.Quarantined, err, quarantined)
	}
	return quarantined
}

// TestCorruptTable flips 16 bytes in the middle of each table of a store
// in turn: the store either refuses to open, naming the table, or its
// reads stop at the damage with an error naming the range, never with a
// silent gap; Verify finds it, and once the ranges are quarantined readers
// step over them and count them.
func TestCorruptTable(t *testing.T) {
	src := t.TempDir()
	const batches, per = 1500, 100
	total := uint64(batches * per)
	fillStream(t, src, batches, per, 40)
	ssts := filesOf(t, src, ".sst")
	if len(ssts) < 2 {
		t.Fatalf("%d tables, want several", len(ssts))
	}
	damaged := 0
	for i, sst := range ssts[:min(len(ssts), 4)] {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			dir := copyDir(t, src)
			file := filepath.Join(dir, filepath.Base(sst))
			fi, _ := os.Stat(file)
			flip(t, file, fi.Size()/2, 16)
			s, err := Open(Config{Dir: dir, RetentionInterval: -1, MinFreeBytes: -1})
			if err != nil {
				if !strings.Contains(err.Error(), ".sst") {
					t.Fatalf("open fails without naming the table: %v", err)
				}
				return
			}
			defer s.Close()
			r, err := s.Verify(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if r.Tables == nil {
				t.Fatalf("verify finds no damaged table")
			}
			got, err := readAll(t, s, total)
			if err == nil {
				return // the damage was in data no longer live
			}
			damaged++
			var ce *CorruptError
			if !errors.As(err, &ce) || !errors.Is(err, ErrCorrupt) || ce.From > got || ce.Topic != "t" || !strings.Contains(err.Error(), fmt.Sprint(ce.From)) {
				t.Fatalf("read stops at %d with %v, want a corrupt range from there", got, err)
			}
			if len(r.Damaged) == 0 {
				t.Fatalf("verify reports no damaged range; the read found %v", err)
			}
			t.Logf("read %d of %d, then %v", got, total, err)
			quarantineAll(t, s, total)
			if r, err := s.Verify(context.Background()); err != nil || len(r.Damaged) != 0 || len(r.Quarantined) == 0 {
				t.Fatalf("verify after quarantine: %+v, %v", r, err)
			}
		})
	}
	if damaged == 0 {
		t.Fatalf("no damaged table made a read fail")
	}
}

// TestCorruptValueLog flips 16 bytes in the middle of the value log, which
// holds the large batches: the batches there are reported by their range
// (Badger also cuts the log at the damage when it opens, and what follows
// is reported as well), and quarantined they are reported to a consumer
// as lost.
func TestCorruptValueLog(t *testing.T) {
	src := t.TempDir()
	const batches = 60
	fillStream(t, src, batches, 1, 100<<10) // one 100 KiB message a batch: in the value log
	dir := copyDir(t, src)
	vlogs := filesOf(t, dir, ".vlog")
	fi, _ := os.Stat(vlogs[0])
	flip(t, vlogs[0], fi.Size()/2, 16)
	s, err := Open(Config{Dir: dir, RetentionInterval: -1, MinFreeBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := readAll(t, s, batches)
	var ce *CorruptError
	if !errors.As(err, &ce) || ce.From != got || ce.To != got+1 {
		t.Fatalf("read stops at %d with %v, want offset %d named corrupt", got, err, got)
	}
	r, err := s.Verify(context.Background())
	if err != nil || !slices.ContainsFunc(r.Damaged, func(d *CorruptError) bool { return d.From == got }) {
		t.Fatalf("verify: %+v %v", r, err)
	}
	q := quarantineAll(t, s, batches)
	// A consumer is told of the gap as of retention's.
	c, err := s.Stream(EventsStream).Consumer(ConsumerConfig{Group: "g"})
	if err != nil {
		t.Fatal(err)
	}
	var seen, lost uint64
	ctx := context.Background()
	for {
		more, err := c.Pass(ctx, func(ctx context.Context, b Batch) (func(*Tx) error, error) {
			if b.Topic == "t" {
				seen += uint64(len(b.Messages))
				lost += b.Lost
			}
			return nil, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if !more {
			break
		}
	}
	if seen != batches-q || lost != q {
		t.Fatalf("consumer saw %d messages and %d lost, want %d and %d", seen, lost, batches-q, q)
	}
	// The quarantine is audited.
	audit, err := s.Stream(AuditStream).Read(ctx, s.Name(), 0, 0, ReadOptions{})
	if err != nil || !strings.Contains(string(audit[len(audit)-1].Value), "stream.quarantine") {
		t.Fatalf("audit: %v", err)
	}
}

// TestCorruptManifest flips bytes in the middle of the MANIFEST: the store
// refuses to open and says why.
func TestCorruptManifest(t *testing.T) {
	src := t.TempDir()
	fillStream(t, src, 300, 100, 40)
	dir := copyDir(t, src)
	m := filepath.Join(dir, "MANIFEST")
	fi, _ := os.Stat(m)
	flip(t, m, fi.Size()/2, 16)
	s, err := Open(Config{Dir: dir, RetentionInterval: -1, MinFreeBytes: -1})
	if err == nil {
		s.Close()
		t.Fatal("a store with a damaged MANIFEST opens")
	}
	if !strings.Contains(err.Error(), "anifest") {
		t.Fatalf("open: %v, want it to name the manifest", err)
	}
}

// TestQuarantineRefusesReadable: only damage can be quarantined.
func TestQuarantineRefusesReadable(t *testing.T) {
	s, err := Open(Config{Dir: t.TempDir(), RetentionInterval: -1, MinFreeBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if _, err := s.Stream(EventsStream).Append(ctx, "t", Message{Value: []byte("a")}, Message{Value: []byte("b")}); err != nil {
		t.Fatal(err)
	}
	for _, from := range []uint64{0, 1, 2} {
		if _, err := s.Stream(EventsStream).Quarantine(ctx, "t", 0, from); !errors.Is(err, ErrInvalid) {
			t.Fatalf("quarantine from %d: %v, want ErrInvalid", from, err)
		}
	}
}
