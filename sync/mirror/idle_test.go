package mirror

import (
	"context"
	"crypto/rand"
	"io"
	"strings"
	"testing"

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
	src := &Source{Store: srcStore, Volume: "models"}
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
