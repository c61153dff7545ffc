package store

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/dgraph-io/badger/v4"
)

// OpenAt returns a reader of the file's content as of now (or the view's
// snapshot) from byte off to the end, reading only the chunks from off
// on: a ranged read for a transfer that resumes, or goes in pieces. It
// cannot check the whole file's SHA-256 (it does not read it all), so
// the reader checks only that each chunk has its place's size and that
// the content ends at the recorded size; whoever needs the digest reads
// the whole file with Open, or checks the bytes against a digest of its
// own (a firmware image against its signed manifest). An off at or past
// the end gives an empty reader.
func (f *File) OpenAt(ctx context.Context, off int64) (io.ReadCloser, Info, error) {
	if off < 0 {
		return nil, Info{}, fmt.Errorf("store: open %s at %d: negative offset", f.path, off)
	}
	ts := f.v.ts
	if ts == 0 {
		ts = f.v.s.ts.Load()
	}
	view := &View{s: f.v.s, ts: ts}
	txn := view.txn()
	defer txn.Discard()
	m, vol, name, err := view.object(txn, f.path, KindFile)
	if err != nil {
		return nil, Info{}, err
	}
	off = min(off, m.Size)
	return &rangeReader{ctx: ctx, v: view, m: *m, vol: vol, name: name,
		idx: uint64(off / ChunkSize), read: off / ChunkSize * ChunkSize, skip: int(off % ChunkSize)}, *m, nil
}

// rangeReader reads a file's chunks from idx on, dropping skip bytes of
// the first.
type rangeReader struct {
	ctx       context.Context
	v         *View
	m         Info
	vol, name string
	idx       uint64
	read      int64 // bytes of the file up to the end of chunk idx-1
	skip      int
	buf       []byte
	err       error
}

func (r *rangeReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		r.err = r.next()
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

func (r *rangeReader) next() error {
	if err := r.ctx.Err(); err != nil {
		return err
	}
	if r.read >= r.m.Size {
		return io.EOF
	}
	txn := r.v.txn()
	defer txn.Discard()
	item, err := txn.Get(chunkKey(r.vol, r.name, r.m.Gen, r.idx))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return fmt.Errorf("%w: file %s misses chunk %d", ErrCorrupt, r.m.Path, r.idx)
	}
	if err != nil {
		return err
	}
	if r.buf, err = item.ValueCopy(r.buf[:0]); err != nil {
		return err
	}
	// Every chunk but the last is whole, and the last ends at the size.
	n := int64(len(r.buf))
	if r.read+n > r.m.Size || n != ChunkSize && r.read+n != r.m.Size {
		return fmt.Errorf("%w: file %s chunk %d has %d bytes", ErrCorrupt, r.m.Path, r.idx, n)
	}
	r.idx++
	r.read += n
	if r.skip > 0 {
		r.buf, r.skip = r.buf[min(r.skip, len(r.buf)):], 0
	}
	return nil
}

func (r *rangeReader) Close() error { return nil }
