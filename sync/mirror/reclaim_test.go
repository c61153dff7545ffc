package mirror

import (
	"context"
	"crypto/rand"
	"io"
	"io/fs"
	"path/filepath"
	"testing"
)

// TestSupersededMirrorDataReclaimed: six mirror updates, each replacing a
// 16 MiB file with new content. The destination's volume holds the live
// file only (its usage stays near one file, never six), and the figures of
// its data directory are logged (docs/benchmarks.md).
func TestSupersededMirrorDataReclaimed(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 96 MiB")
	}
	ctx := context.Background()
	srcStore := openStore(t, t.TempDir())
	defer srcStore.Close()
	dstDir := t.TempDir()
	dstStore := openStore(t, dstDir)
	defer dstStore.Close()
	src := &Source{Store: srcStore, Volume: "models", Now: stepClock()}
	dst := &Dest{Store: dstStore, Volume: "models"}
	const size = 16 << 20
	for i := range 6 {
		if _, err := srcStore.File("/models/pump/model.bin").Write(ctx, io.LimitReader(rand.Reader, size)); err != nil {
			t.Fatal(err)
		}
		if sent, err := transfer(t, src, dst, 0); err != nil || !sent {
			t.Fatalf("update %d: %v %v", i+1, sent, err)
		}
		vi, err := dstStore.Volume("models")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("after update %d: volume usage %.1f MiB, data directory %.1f MiB", i+1, float64(vi.Used)/(1<<20), float64(dirSize(t, dstDir))/(1<<20))
		if vi.Used > 2*size {
			t.Fatalf("after update %d the volume holds %d bytes for one live file of %d: superseded data counted", i+1, vi.Used, size)
		}
	}
}

func dirSize(t *testing.T, dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}
