package mirror

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/weft-io/weft/store"
)

func openStore(t testing.TB, dir string) *store.Store {
	t.Helper()
	s, err := store.Open(store.Config{Dir: dir, MinFreeBytes: -1, RetentionInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// transfer runs one update from src to dst in process; cut, if positive,
// ends it after that many chunks as a broken link would.
func transfer(t *testing.T, src *Source, dst *Dest, cut int) (sent bool, err error) {
	t.Helper()
	ctx := context.Background()
	st, err := dst.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	u, ok, err := src.Offer(ctx, st)
	if err != nil || !ok {
		return false, err
	}
	after := []byte(nil)
	if st.Pending == u.To {
		after = st.After
	}
	chunks := make(chan []store.DeltaEntry)
	errc := make(chan error, 1)
	go func() {
		n := 0
		errc <- src.Send(ctx, u, after, func(c []store.DeltaEntry) error {
			if cut > 0 && n == cut {
				return errCut
			}
			n++
			chunks <- c
			return nil
		})
		close(chunks)
	}()
	err = dst.Receive(ctx, u, func() ([]store.DeltaEntry, error) {
		c, ok := <-chunks
		if !ok {
			if err := <-errc; err != nil {
				return nil, err
			}
			return nil, nil
		}
		return c, nil
	})
	return true, err
}

var errCut = errors.New("link cut")

// stepClock is a clock that moves on by more than latestFor at each
// reading, so that every Offer looks at the volume afresh.
func stepClock() func() time.Time {
	var mu sync.Mutex
	t := time.Now()
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t = t.Add(2 * latestFor)
		return t
	}
}

// files returns path -> SHA-256 of every file under /models, reading each
// whole (a file that fails its own checksum is an error).
func files(t *testing.T, s *store.Store, dir string) (map[string]string, error) {
	ctx := context.Background()
	list, err := s.List(ctx, dir)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, info := range list {
		if info.Kind != store.KindFile {
			continue
		}
		r, _, err := s.File(info.Path).Open(ctx)
		if err != nil {
			return nil, err
		}
		h := sha256.New()
		if _, err := io.Copy(h, r); err != nil {
			return nil, fmt.Errorf("%s: %w", info.Path, err)
		}
		out[info.Path] = fmt.Sprintf("%x", h.Sum(nil))
	}
	return out, nil
}

// TestMirror200MiB mirrors 200 MiB of files plus table changes, cuts the
// link and restarts the destination in the middle of the transfer, resumes,
// and checks the copy equal by hash; a reader meanwhile sees the old
// mirror or the new one, never a part.
func TestMirror200MiB(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 200 MiB")
	}
	ctx := context.Background()
	srcStore := openStore(t, t.TempDir())
	defer srcStore.Close()
	dstDir := t.TempDir()
	dstStore := openStore(t, dstDir)
	src := &Source{Store: srcStore, Volume: "models", Now: stepClock()}
	dst := &Dest{Store: dstStore, Volume: "models"}

	// Update 1: a small first release.
	srcStore.File("/models/pump/v1.onnx").Write(ctx, io.LimitReader(rand.Reader, 3<<20))
	srcStore.CreateTable(ctx, "/models/registry", store.TableOptions{})
	srcStore.Table("/models/registry").Put(ctx, "pump", []byte(`{"version":1}`))
	if sent, err := transfer(t, src, dst, 0); err != nil || !sent {
		t.Fatalf("first update: %v %v", sent, err)
	}
	old, err := files(t, dstStore, "/models/pump")
	if err != nil || len(old) != 1 {
		t.Fatalf("after the first update: %v %v", old, err)
	}
	if sent, err := transfer(t, src, dst, 0); err != nil || sent {
		t.Fatalf("an unchanged volume sent an update: %v %v", sent, err)
	}

	// Update 2: 200 MiB of new files, the old one gone, the registry row changed.
	for i := 0; i < 25; i++ {
		if _, err := srcStore.File(fmt.Sprintf("/models/pump/v2-part%02d.bin", i)).Write(ctx, io.LimitReader(rand.Reader, 8<<20)); err != nil {
			t.Fatal(err)
		}
	}
	srcStore.Delete(ctx, "/models/pump/v1.onnx")
	srcStore.Table("/models/registry").Put(ctx, "pump", []byte(`{"version":2}`))
	want, err := files(t, srcStore, "/models/pump")
	if err != nil || len(want) != 25 {
		t.Fatalf("source: %d files, %v", len(want), err)
	}

	// Cut the link after 60 chunks, then restart the destination.
	if _, err := transfer(t, src, dst, 60); !errors.Is(err, errCut) {
		t.Fatalf("cut transfer: %v", err)
	}
	if got, _ := files(t, dstStore, "/models/pump"); len(got) != 1 {
		t.Fatalf("after the cut the mirror shows %d files", len(got))
	}
	dstStore.Close()
	dstStore = openStore(t, dstDir)
	defer dstStore.Close()
	dst.Store = dstStore
	st, _ := dst.State(ctx)
	if st.Pending == "" || st.After == nil {
		t.Fatalf("no pending update to resume after the restart: %+v", st)
	}

	// A reader during the rest of the transfer.
	stop := make(chan struct{})
	readErr := make(chan error, 1)
	go func() {
		reads := 0
		for {
			select {
			case <-stop:
				if reads == 0 {
					readErr <- errors.New("the reader never read")
				} else {
					readErr <- nil
				}
				return
			default:
			}
			got, err := files(t, dstStore, "/models/pump")
			if errors.Is(err, store.ErrNotFound) {
				continue // published between listing and opening: look again
			}
			if err != nil {
				readErr <- fmt.Errorf("reader: %w", err)
				return
			}
			if len(got) != 1 && len(got) != 25 {
				readErr <- fmt.Errorf("a reader saw %d files: half a mirror", len(got))
				return
			}
			reads++
		}
	}()
	if sent, err := transfer(t, src, dst, 0); err != nil || !sent {
		t.Fatalf("resumed transfer: %v %v", sent, err)
	}
	close(stop)
	if err := <-readErr; err != nil {
		t.Fatal(err)
	}
	got, err := files(t, dstStore, "/models/pump")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("mirror has %d files, source %d", len(got), len(want))
	}
	for p, h := range want {
		if got[p] != h {
			t.Fatalf("%s differs", p)
		}
	}
	if d, _ := dstStore.Table("/models/registry").Get(ctx, "pump"); string(d.Value) != `{"version":2}` {
		t.Fatalf("registry row %s", d.Value)
	}
	// The source keeps only the snapshot the destination has.
	st, _ = dst.State(ctx)
	if err := src.Published(ctx, st.Have); err != nil {
		t.Fatal(err)
	}
	snaps, _ := srcStore.Snapshots(ctx, "models")
	if len(snaps) != 1 || snaps[0].Name != st.Have {
		t.Fatalf("source snapshots after publish: %+v", snaps)
	}
}

// TestSourceLostPendingUpdate cuts a transfer, then the source loses the
// snapshot the destination has pending (its store was replaced): the
// destination gives the staged update up and takes the new one whole.
func TestSourceLostPendingUpdate(t *testing.T) {
	ctx := context.Background()
	srcStore := openStore(t, t.TempDir())
	defer srcStore.Close()
	dstStore := openStore(t, t.TempDir())
	defer dstStore.Close()
	src := &Source{Store: srcStore, Volume: "models", Now: stepClock()}
	dst := &Dest{Store: dstStore, Volume: "models"}
	for i := range 4 {
		if _, err := srcStore.File(fmt.Sprintf("/models/a%d.bin", i)).Write(ctx, io.LimitReader(rand.Reader, 1<<20)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := transfer(t, src, dst, 3); !errors.Is(err, errCut) {
		t.Fatalf("cut transfer: %v", err)
	}
	st, _ := dst.State(ctx)
	if st.Pending == "" {
		t.Fatal("nothing pending after the cut")
	}
	if err := srcStore.DeleteSnapshot(ctx, "models", st.Pending); err != nil {
		t.Fatal(err)
	}
	srcStore.Delete(ctx, "/models/a0.bin")
	if sent, err := transfer(t, src, dst, 0); err != nil || !sent {
		t.Fatalf("after the source lost the pending update: sent %v, %v", sent, err)
	}
	want, _ := files(t, srcStore, "/models")
	got, _ := files(t, dstStore, "/models")
	if len(want) != 3 || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("destination %v, want %v", got, want)
	}
	if st, _ := dst.State(ctx); st.Pending != "" {
		t.Fatalf("still pending: %+v", st)
	}
}
