package mirror

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/weft-io/weft/store"
)

// audited is how many audit records s holds.
func audited(t *testing.T, s *store.Store) uint64 {
	t.Helper()
	_, next, err := s.Stream(store.AuditStream).Bounds(context.Background(), s.Name(), 0)
	if err != nil {
		t.Fatal(err)
	}
	return next
}

// TestIdleOfferWritesNothing: once the destination has the volume, an
// Offer while nothing changed takes no snapshot and writes no audit
// record; each kind of change after it is offered, and the destination
// ends equal to the source.
func TestIdleOfferWritesNothing(t *testing.T) {
	ctx := context.Background()
	srcStore := openStore(t, t.TempDir())
	defer srcStore.Close()
	dstStore := openStore(t, t.TempDir())
	defer dstStore.Close()
	src := &Source{Store: srcStore, Volume: "models", Now: stepClock()}
	dst := &Dest{Store: dstStore, Volume: "models"}
	write := func(path, body string) {
		t.Helper()
		if _, err := srcStore.File(path).Write(ctx, strings.NewReader(body)); err != nil {
			t.Fatal(err)
		}
	}
	write("/models/pump/v1.bin", "one")
	write("/models/readme.txt", "hello")
	if sent, err := transfer(t, src, dst, 0); err != nil || !sent {
		t.Fatalf("first update: %v %v", sent, err)
	}
	idle := func(what string) {
		t.Helper()
		st, err := dst.State(ctx)
		if err != nil {
			t.Fatal(err)
		}
		snaps, _ := srcStore.Snapshots(ctx, "models")
		before := audited(t, srcStore)
		for range 3 {
			if _, ok, err := src.Offer(ctx, st); err != nil || ok {
				t.Fatalf("%s: an unchanged volume offered an update (%v, %v)", what, ok, err)
			}
		}
		if after := audited(t, srcStore); after != before {
			t.Fatalf("%s: idle offers wrote %d audit records", what, after-before)
		}
		if now, _ := srcStore.Snapshots(ctx, "models"); len(now) != len(snaps) {
			t.Fatalf("%s: idle offers left snapshots %v (before %v)", what, now, snaps)
		}
	}
	idle("after the first update")

	for _, c := range []struct {
		what   string
		change func() error
	}{
		{"a file rewritten with the same bytes", func() error {
			_, err := srcStore.File("/models/readme.txt").Write(ctx, strings.NewReader("hello"))
			return err
		}},
		{"a new file deep down", func() error {
			_, err := srcStore.File("/models/pump/2026/v2.bin").Write(ctx, io.LimitReader(rand.Reader, 600<<10))
			return err
		}},
		{"a file deleted", func() error { return srcStore.Delete(ctx, "/models/pump/v1.bin") }},
		{"an empty directory made", func() error { return srcStore.Mkdir(ctx, "/models/fan") }},
		{"a table made", func() error { return srcStore.CreateTable(ctx, "/models/registry", store.TableOptions{}) }},
		{"a row put in the table", func() error {
			_, err := srcStore.Table("/models/registry").Put(ctx, "pump", []byte(`{"version":2}`))
			return err
		}},
	} {
		if err := c.change(); err != nil {
			t.Fatalf("%s: %v", c.what, err)
		}
		if sent, err := transfer(t, src, dst, 0); err != nil || !sent {
			t.Fatalf("%s: not sent (%v, %v)", c.what, sent, err)
		}
		want, _ := files(t, srcStore, "/models")
		got, _ := files(t, dstStore, "/models")
		if len(got) != len(want) {
			t.Fatalf("%s: destination %v, source %v", c.what, got, want)
		}
		if st, _ := dstStore.Stat(ctx, "/models/fan"); c.what == "an empty directory made" && st.Kind != store.KindDir {
			t.Fatalf("%s: the destination has %+v", c.what, st)
		}
		if sent, err := transfer(t, src, dst, 0); err != nil || sent {
			t.Fatalf("%s, then nothing: sent %v (%v)", c.what, sent, err)
		}
		if !strings.Contains(c.what, "table") && !strings.Contains(c.what, "row") {
			idle(c.what)
		}
	}
	if d, err := dstStore.Table("/models/registry").Get(ctx, "pump"); err != nil || string(d.Value) != `{"version":2}` {
		t.Fatalf("registry row %s, %v", d.Value, err)
	}
}

// TestLatestLookShared: destinations asking within latestFor of each
// other share one look at the volume, so a change made meanwhile is
// offered once latestFor has passed, not lost.
func TestLatestLookShared(t *testing.T) {
	ctx := context.Background()
	srcStore := openStore(t, t.TempDir())
	defer srcStore.Close()
	dstStore := openStore(t, t.TempDir())
	defer dstStore.Close()
	now := time.Now()
	src := &Source{Store: srcStore, Volume: "models", Now: func() time.Time { return now }}
	dst := &Dest{Store: dstStore, Volume: "models"}
	if _, err := srcStore.File("/models/a.bin").Write(ctx, strings.NewReader("a")); err != nil {
		t.Fatal(err)
	}
	if sent, err := transfer(t, src, dst, 0); err != nil || !sent {
		t.Fatalf("first update: %v %v", sent, err)
	}
	if sent, err := transfer(t, src, dst, 0); err != nil || sent {
		t.Fatalf("unchanged: sent %v, %v", sent, err)
	}
	if _, err := srcStore.File("/models/b.bin").Write(ctx, strings.NewReader("b")); err != nil {
		t.Fatal(err)
	}
	now = now.Add(latestFor / 2)
	if sent, err := transfer(t, src, dst, 0); err != nil || sent {
		t.Fatalf("within latestFor of the last look: sent %v, %v", sent, err)
	}
	now = now.Add(latestFor / 2)
	if sent, err := transfer(t, src, dst, 0); err != nil || !sent {
		t.Fatalf("latestFor after the last look: sent %v, %v", sent, err)
	}
	if got, _ := files(t, dstStore, "/models"); len(got) != 2 {
		t.Fatalf("destination %v", got)
	}
}

// BenchmarkIdleOffer: one round of an idle mirror at the source, for a
// volume of n files: Offer as it is (metadata compared, no snapshot;
// metadata: the volume looked at afresh each time, metadata-shared: many
// destinations within latestFor) against the former way (snapshot,
// delta, delete the snapshot: two durable commits and two audit records).
func BenchmarkIdleOffer(b *testing.B) {
	for _, n := range []int{10, 1000} {
		ctx := context.Background()
		srcStore := openStore(b, b.TempDir())
		dstStore := openStore(b, b.TempDir())
		src := &Source{Store: srcStore, Volume: "models", Now: stepClock()}
		dst := &Dest{Store: dstStore, Volume: "models"}
		for i := range n {
			if _, err := srcStore.File(fmt.Sprintf("/models/m%d/part-%04d.bin", i%10, i)).Write(ctx, io.LimitReader(rand.Reader, 4<<10)); err != nil {
				b.Fatal(err)
			}
		}
		st, err := dst.State(ctx)
		if err != nil {
			b.Fatal(err)
		}
		u, _, err := src.Offer(ctx, st)
		if err != nil {
			b.Fatal(err)
		}
		if err := src.Send(ctx, u, nil, func([]store.DeltaEntry) error { return nil }); err != nil {
			b.Fatal(err)
		}
		have := State{Have: u.To}
		b.Run(fmt.Sprintf("files=%d/metadata", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, ok, err := src.Offer(ctx, have); err != nil || ok {
					b.Fatal(ok, err)
				}
			}
		})
		// Many destinations within a second: one look at the volume
		// serves them all.
		shared := &Source{Store: srcStore, Volume: "models"}
		b.Run(fmt.Sprintf("files=%d/metadata-shared", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, ok, err := shared.Offer(ctx, have); err != nil || ok {
					b.Fatal(ok, err)
				}
			}
		})
		b.Run(fmt.Sprintf("files=%d/snapshot", n), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				name := fmt.Sprintf("bench-%d", i)
				if _, err := srcStore.CreateSnapshot(ctx, "models", name); err != nil {
					b.Fatal(err)
				}
				changed := false
				if err := srcStore.Delta(ctx, "models", u.To, name, func(store.DeltaEntry) error { changed = true; return errStop }); err != nil && !errors.Is(err, errStop) {
					b.Fatal(err)
				}
				if changed {
					b.Fatal("changed")
				}
				if err := srcStore.DeleteSnapshot(ctx, "models", name); err != nil {
					b.Fatal(err)
				}
			}
		})
		srcStore.Close()
		dstStore.Close()
	}
}
