package mirror

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/weft-io/weft/store"
)

// TestFilterWithholdsUntilKept: a filtered destination gets what its
// filter keeps and not the rest; when the filter keeps a withheld object
// later, an update offered for it alone carries it, whole, once, also
// when that transfer is cut and resumed; an unfiltered destination of the
// same volume gets everything once.
func TestFilterWithholdsUntilKept(t *testing.T) {
	ctx := context.Background()
	srcStore := openStore(t, t.TempDir())
	defer srcStore.Close()
	const imageSize = 3 << 20
	release := func(dir string) {
		t.Helper()
		if _, err := srcStore.File("/firmware/"+dir+"/image").Write(ctx, io.LimitReader(rand.Reader, imageSize)); err != nil {
			t.Fatal(err)
		}
		if _, err := srcStore.File("/firmware/"+dir+"/manifest.cose").Write(ctx, strings.NewReader("signed "+dir)); err != nil {
			t.Fatal(err)
		}
	}
	release("fw/1.0.0")
	var wantImages atomic.Bool // the filtered edge's filter: images only once true
	clock := stepClock()
	type edge struct {
		src  *Source
		dst  *Dest
		sent int64
	}
	edges := []*edge{{}, {}}
	for i, name := range []string{"plain", "filtered"} {
		dstStore := openStore(t, t.TempDir())
		defer dstStore.Close()
		e := edges[i]
		e.src = &Source{Store: srcStore, Volume: "firmware", Dest: name, Now: clock, Sent: func(n int) { e.sent += int64(n) }}
		if name == "filtered" {
			e.src.Filter = func(_ context.Context, obj string) (bool, error) {
				return !strings.HasSuffix(obj, "/image") || wantImages.Load(), nil
			}
		}
		e.dst = &Dest{Store: dstStore, Volume: "firmware"}
	}
	// round carries out each edge's update, if any, cut after cut chunks
	// when cut is positive, and returns the bytes each was sent.
	round := func(cut int) [2]int64 {
		t.Helper()
		var out [2]int64
		for i, e := range edges {
			before := e.sent
			sent, err := transfer(t, e.src, e.dst, cut)
			if cut > 0 && sent {
				if !errors.Is(err, errCut) {
					t.Fatalf("cut transfer: %v", err)
				}
				if sent, err = transfer(t, e.src, e.dst, 0); err != nil || !sent {
					t.Fatalf("resumed transfer: %v %v", sent, err)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if sent {
				st, _ := e.dst.State(ctx)
				if err := e.src.Published(ctx, st.Have); err != nil {
					t.Fatal(err)
				}
			}
			out[i] = e.sent - before
		}
		return out
	}
	holds := func(e *edge) []string {
		t.Helper()
		var got []string
		for _, dir := range []string{"/firmware/fw/1.0.0", "/firmware/fw/2.0.0"} {
			f, err := files(t, e.dst.Store, dir)
			if err != nil && !strings.Contains(err.Error(), "not found") {
				t.Fatal(err)
			}
			for p := range f {
				got = append(got, strings.TrimPrefix(p, "/firmware/"))
			}
		}
		slices.Sort(got)
		return got
	}
	const both = "fw/1.0.0/image fw/1.0.0/manifest.cose"
	sent := round(0)
	if got := strings.Join(holds(edges[0]), " "); got != both {
		t.Fatalf("plain edge holds %q", got)
	}
	if got := strings.Join(holds(edges[1]), " "); got != "fw/1.0.0/manifest.cose" {
		t.Fatalf("filtered edge holds %q, want the manifest only", got)
	}
	if sent[0] < imageSize || sent[1] >= imageSize/100 {
		t.Fatalf("first round sent %d and %d bytes", sent[0], sent[1])
	}
	if sent := round(0); sent != [2]int64{} {
		t.Fatalf("an idle round sent %v bytes", sent)
	}
	// The filter keeps images now: the withheld one goes alone, cut
	// after its first chunk and resumed.
	wantImages.Store(true)
	sent = round(1)
	if got := strings.Join(holds(edges[1]), " "); got != both {
		t.Fatalf("filtered edge holds %q after its filter kept images", got)
	}
	if sent[0] != 0 || sent[1] < imageSize || sent[1] > imageSize+imageSize/10 {
		t.Fatalf("the resend sent %v bytes, want the image once to the filtered edge only", sent)
	}
	want, _ := files(t, srcStore, "/firmware/fw/1.0.0")
	if got, err := files(t, edges[1].dst.Store, "/firmware/fw/1.0.0"); err != nil || got["/firmware/fw/1.0.0/image"] != want["/firmware/fw/1.0.0/image"] {
		t.Fatalf("resent image differs: %v", err)
	}
	if sent := round(0); sent != [2]int64{} {
		t.Fatalf("an idle round after the resend sent %v bytes", sent)
	}
	// A later release goes to both, once.
	release("fw/2.0.0")
	sent = round(0)
	for i, e := range edges {
		if len(holds(e)) != 4 || sent[i] < imageSize || sent[i] > imageSize+imageSize/10 {
			t.Fatalf("edge %d after the second release: holds %v, sent %d bytes", i, holds(e), sent[i])
		}
	}
	// Records go with their snapshots: one per filtered snapshot kept.
	docs, _, err := srcStore.Table(WithheldTable).Scan(ctx, "", "", 100)
	if err != nil || len(docs) != 1 {
		t.Fatalf("records %v, %v", docs, err)
	}
}

// TestObjectName: every key of a volume's delta names its object as the
// store lays keys out (files' metadata and chunks, tables' rows).
func TestObjectName(t *testing.T) {
	ctx := context.Background()
	st := openStore(t, t.TempDir())
	defer st.Close()
	if _, err := st.File("/models/a/b.bin").Write(ctx, io.LimitReader(rand.Reader, 600<<10)); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateTable(ctx, "/models/reg", store.TableOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Table("/models/reg").Put(ctx, "k", []byte(`{"v":1}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateSnapshot(ctx, "models", "s1"); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	err := st.Delta(ctx, "models", "", "s1", func(e store.DeltaEntry) error {
		seen[objectName(e.Key)]++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 2 || seen["a/b.bin"] < 4 || seen["reg"] < 2 {
		t.Fatalf("objects of the delta's keys: %v", seen)
	}
}

// TestFilterFileBeingWritten: a snapshot taken while a file is being
// written holds its first chunks without its metadata; the filter decides
// them too. A destination whose filter refuses the file gets none of it
// and, once the filter keeps it, all of it; one whose filter keeps it
// gets the first chunks, then the rest, and holds it whole.
func TestFilterFileBeingWritten(t *testing.T) {
	ctx := context.Background()
	srcStore := openStore(t, t.TempDir())
	defer srcStore.Close()
	var keepImages atomic.Bool
	clock := stepClock()
	var sent [2]int64
	var srcs [2]*Source
	var dsts [2]*Dest
	for i := range 2 {
		dstStore := openStore(t, t.TempDir())
		defer dstStore.Close()
		srcs[i] = &Source{Store: srcStore, Volume: "firmware", Dest: fmt.Sprint("edge-", i), Now: clock,
			Sent: func(n int) { sent[i] += int64(n) }}
		dsts[i] = &Dest{Store: dstStore, Volume: "firmware"}
	}
	srcs[0].Filter = func(context.Context, string) (bool, error) { return true, nil }
	srcs[1].Filter = func(_ context.Context, obj string) (bool, error) { return keepImages.Load(), nil }

	// A write of 3 MiB stopped after its first MiB, which the store
	// holds as chunks of no file yet.
	pr, pw := io.Pipe()
	body := make([]byte, 3<<20)
	rand.Read(body)
	done := make(chan error, 1)
	go func() {
		_, err := srcStore.File("/firmware/fw/1.0.0/image").Write(ctx, pr)
		done <- err
	}()
	if _, err := pw.Write(body[:1<<20+1]); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		probe := fmt.Sprint("probe-", i)
		if _, err := srcStore.CreateSnapshot(ctx, "firmware", probe); err != nil {
			t.Fatal(err)
		}
		n := 0
		srcStore.Delta(ctx, "firmware", "", probe, func(store.DeltaEntry) error { n++; return nil })
		srcStore.DeleteSnapshot(ctx, "firmware", probe)
		if n > 0 {
			break
		}
		if i > 10000 {
			t.Fatal("the write's first chunks never showed")
		}
	}
	carry := func() {
		t.Helper()
		for i := range 2 {
			if ok, err := transfer(t, srcs[i], dsts[i], 0); err != nil {
				t.Fatal(err)
			} else if ok {
				st, _ := dsts[i].State(ctx)
				if err := srcs[i].Published(ctx, st.Have); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	carry()
	if sent[0] < 1<<20 || sent[1] > 0 {
		t.Fatalf("during the write: sent %v bytes, want the first MiB to edge-0 only", sent)
	}
	if _, err := pw.Write(body[1<<20+1:]); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	carry()
	if sent[1] > 0 {
		t.Fatalf("edge-1's filter refuses the file; it was sent %d bytes", sent[1])
	}
	keepImages.Store(true)
	carry()
	want, _ := files(t, srcStore, "/firmware/fw/1.0.0")
	for i := range 2 {
		got, err := files(t, dsts[i].Store, "/firmware/fw/1.0.0")
		if err != nil || len(got) != 1 || got["/firmware/fw/1.0.0/image"] != want["/firmware/fw/1.0.0/image"] {
			t.Fatalf("edge-%d holds %v, %v; want %v", i, got, err, want)
		}
		if sent[i] < 3<<20 || sent[i] > 3<<20+3<<20/10 {
			t.Fatalf("edge-%d was sent %d bytes for a 3 MiB file", i, sent[i])
		}
	}
}
