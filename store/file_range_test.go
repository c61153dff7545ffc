package store

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
)

// TestFileOpenAt reads a file from offsets inside, at the edges of and
// past its chunks, and compares each with the content's tail.
func TestFileOpenAt(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	content := make([]byte, 3*ChunkSize+123)
	for i := range content {
		content[i] = byte(i * 7 / 3)
	}
	f := s.File("/models/range.bin")
	if _, err := f.Write(ctx, bytes.NewReader(content)); err != nil {
		t.Fatal(err)
	}
	size := int64(len(content))
	for _, off := range []int64{0, 1, ChunkSize - 1, ChunkSize, ChunkSize + 1, 3 * ChunkSize, size - 1, size, size + 10} {
		r, info, err := f.OpenAt(ctx, off)
		if err != nil {
			t.Fatalf("OpenAt(%d): %v", off, err)
		}
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			t.Fatalf("OpenAt(%d): read: %v", off, err)
		}
		want := content[min(off, size):]
		if !bytes.Equal(got, want) {
			t.Fatalf("OpenAt(%d): %d bytes, want %d (equal prefix: %v)", off, len(got), len(want), bytes.HasPrefix(want, got))
		}
		if info.Size != size {
			t.Fatalf("OpenAt(%d): size %d, want %d", off, info.Size, size)
		}
	}
	if _, _, err := f.OpenAt(ctx, -1); err == nil {
		t.Fatal("OpenAt(-1) succeeded")
	}
	if _, _, err := s.File("/models/none").OpenAt(ctx, 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("OpenAt of a missing file: %v, want ErrNotFound", err)
	}
}

// BenchmarkFileRead reads a 16 MiB file whole, with Open (which hashes
// every chunk to check the file's SHA-256 at its end) and with OpenAt(0)
// (which does not), as the firmware image routes do.
//
//	go test ./store -run '^$' -bench FileRead -count 5
func BenchmarkFileRead(b *testing.B) {
	s := openTest(b)
	ctx := context.Background()
	content := make([]byte, 16<<20)
	for i := range content {
		content[i] = byte(i * 7)
	}
	f := s.File("/models/bench.bin")
	if _, err := f.Write(ctx, bytes.NewReader(content)); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		open func() (io.ReadCloser, Info, error)
	}{
		{"Open", func() (io.ReadCloser, Info, error) { return f.Open(ctx) }},
		{"OpenAt", func() (io.ReadCloser, Info, error) { return f.OpenAt(ctx, 0) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(content)))
			for i := 0; i < b.N; i++ {
				r, info, err := c.open()
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.CopyN(io.Discard, r, info.Size); err != nil {
					b.Fatal(err)
				}
				r.Close()
			}
		})
	}
}
