package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/dgraph-io/badger/v4"
)

// ChunkSize is the size of a file chunk.
const ChunkSize = 256 << 10

const chunksPerWrite = 4

// File is a handle on a file object.
type File struct {
	v    *View
	path string
}

// Path is the file's path.
func (f *File) Path() string { return f.path }

// Write replaces the file's content with everything read from r, creating
// the file if needed. The content is stored in chunks as it is read, never
// held whole; readers see the old content until the new one is complete.
func (f *File) Write(ctx context.Context, r io.Reader) (Info, error) {
	if f.v.ts != 0 {
		return Info{}, ErrReadOnly
	}
	vol, name, err := SplitPath(f.path)
	if err != nil {
		return Info{}, err
	}
	if name == "" {
		return Info{}, fmt.Errorf("%w: %s is a volume", ErrWrongKind, f.path)
	}
	path := "/" + vol + "/" + name
	s := f.v.s
	if err := s.sweepTomb(ctx, vol, name); err != nil {
		return Info{}, err
	}
	var g [8]byte
	rand.Read(g[:])
	gen := binary.BigEndian.Uint64(g[:]) | 1
	sum := sha256.New()
	buf := make([]byte, chunksPerWrite*ChunkSize)
	var size int64
	idx := uint64(0)
	for {
		n, rerr := io.ReadFull(r, buf)
		if n > 0 {
			sum.Write(buf[:n])
			size += int64(n)
			if err := f.writeChunks(ctx, vol, name, gen, idx, buf[:n]); err != nil {
				f.dropGen(vol, name, gen)
				return Info{}, err
			}
			idx += uint64((n + ChunkSize - 1) / ChunkSize)
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			f.dropGen(vol, name, gen)
			return Info{}, fmt.Errorf("store: write %s: %w", path, rerr)
		}
	}
	var out Info
	err = s.do(ctx, 256, false, func(w *wtx) error {
		m, _, _, err := w.object(path, "")
		created := false
		switch {
		case errors.Is(err, ErrNotFound):
			if err := w.checkFree(vol, name); err != nil {
				return err
			}
			m, created = &Info{Path: path, Kind: KindFile, Created: w.now.UTC()}, true
		case err != nil:
			return err
		case m.Kind != KindFile:
			return fmt.Errorf("%w: %s is a %s, not a file", ErrWrongKind, path, m.Kind)
		}
		if _, err := w.volume(vol); err != nil {
			return err
		}
		nm := *m
		nm.Size, nm.SHA256, nm.Gen, nm.Modified = size, hex.EncodeToString(sum.Sum(nil)), gen, w.now.UTC()
		if err := w.dropChunks(vol, name, gen); err != nil {
			return err
		}
		if err := w.remove(vol, writeKey(vol, name, gen)); err != nil {
			return err
		}
		if err := w.setMeta(&nm); err != nil {
			return err
		}
		out = nm
		if created {
			return w.audit("object.create", path, map[string]any{"kind": KindFile})
		}
		return nil
	})
	if err != nil {
		f.dropGen(vol, name, gen)
	}
	return out, err
}

func (f *File) writeChunks(ctx context.Context, vol, name string, gen, idx uint64, data []byte) error {
	return f.v.s.do(ctx, len(data), false, func(w *wtx) error {
		if err := w.checkQuota(vol, len(data)); err != nil {
			return err
		}
		if idx == 0 {
			// The first chunks say that gen is being written, so that
			// the chunks of a write that never ends are found and go.
			if err := w.set(vol, writeKey(vol, name, gen), nil, 0); err != nil {
				return err
			}
		}
		for i := 0; len(data) > 0; i++ {
			n := min(ChunkSize, len(data))
			if err := w.set(vol, chunkKey(vol, name, gen, idx+uint64(i)), data[:n], 0); err != nil {
				return err
			}
			data = data[n:]
		}
		return nil
	})
}

// dropChunks deletes the file's chunks of every generation but keep.
func (w *wtx) dropChunks(vol, name string, keep uint64) error {
	pfx := objKey(vol, kindChunk, name, "")
	_, err := w.sweep(vol, pfx, 0, func(k []byte) bool { return binary.BigEndian.Uint64(k[len(pfx):]) == keep }, nil)
	return err
}

// dropGen removes the chunks of an unfinished write, best effort: chunks
// left behind are removed by the next write or delete of the file, or
// when the store opens next.
func (f *File) dropGen(vol, name string, gen uint64) {
	_ = f.v.s.do(context.Background(), 0, true, func(w *wtx) error {
		_, err := w.dropGen(vol, name, gen)
		return err
	})
}

// dropGen deletes the chunks of generation gen of a file and its record of
// being written, and returns how many chunks went.
func (w *wtx) dropGen(vol, name string, gen uint64) (int, error) {
	n, err := w.sweep(vol, binary.BigEndian.AppendUint64(objKey(vol, kindChunk, name, ""), gen), 0, nil, nil)
	if err != nil {
		return n, err
	}
	return n, w.remove(vol, writeKey(vol, name, gen))
}

// Unfinished is a file write that never finished (the process died
// during it), whose chunks the store removed when it opened.
type Unfinished struct {
	Path   string `json:"path"`
	Chunks int    `json:"chunks"`
	Bytes  int64  `json:"bytes"`
}

// reclaimWrites removes the chunks of file writes a crash interrupted:
// each write records that it is in progress in the commit of its first
// chunks and forgets it in the commit that makes the file, so any record
// left when the store opens is of a write that will never end. Each is
// logged and audited.
func (s *Store) reclaimWrites(ctx context.Context) ([]Unfinished, error) {
	type pending struct {
		vol, name string
		gen       uint64
	}
	var found []pending
	txn := s.readTxn(0)
	for _, vi := range s.Volumes() {
		pfx := append(volPrefix(vi.Name), kindWrite)
		it := txn.NewIterator(badger.IteratorOptions{Prefix: pfx, PrefetchValues: false})
		for it.Seek(pfx); it.ValidForPrefix(pfx); it.Next() {
			k := it.Item().Key()[len(pfx):]
			if len(k) < 9 || k[len(k)-9] != 0 {
				continue
			}
			found = append(found, pending{vi.Name, string(k[:len(k)-9]), binary.BigEndian.Uint64(k[len(k)-8:])})
		}
		it.Close()
	}
	txn.Discard()
	var out []Unfinished
	for _, p := range found {
		u := Unfinished{Path: "/" + p.vol + "/" + p.name}
		err := s.do(ctx, 0, true, func(w *wtx) error {
			before := w.usage[p.vol]
			n, err := w.dropGen(p.vol, p.name, p.gen)
			if err != nil {
				return err
			}
			u.Chunks, u.Bytes = n, before-w.usage[p.vol]
			return w.audit("file.reclaim", u.Path, map[string]any{"chunks": n, "bytes": u.Bytes})
		})
		if err != nil {
			return out, fmt.Errorf("store: reclaim unfinished write of %s: %w", u.Path, err)
		}
		s.log.Warn("removed the chunks of an unfinished file write", "path", u.Path, "chunks", u.Chunks, "bytes", u.Bytes)
		out = append(out, u)
	}
	return out, nil
}

// Open returns a reader of the file's content as of now (or the view's
// snapshot). It reads one chunk at a time and fails with ErrCorrupt at the
// end if the content does not match the recorded size and SHA-256.
func (f *File) Open(ctx context.Context) (io.ReadCloser, Info, error) {
	return f.open(ctx, 0, true)
}

// open opens a reader from byte off; whole (off 0) checks the content's
// SHA-256 at the end, a ranged one each chunk's size.
func (f *File) open(ctx context.Context, off int64, whole bool) (io.ReadCloser, Info, error) {
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
	r := &fileReader{ctx: ctx, v: view, m: *m, vol: vol, name: name}
	if whole {
		r.sum = sha256.New()
	} else {
		off = min(off, m.Size)
		r.idx, r.read, r.skip = uint64(off/ChunkSize), off/ChunkSize*ChunkSize, int(off%ChunkSize)
	}
	return r, *m, nil
}

// fileReader reads a file's chunks from idx on, dropping skip bytes of
// the first. With sum it checks the whole content's SHA-256 at the end;
// without, each chunk's size.
type fileReader struct {
	ctx       context.Context
	v         *View
	m         Info
	vol, name string
	idx       uint64
	read      int64 // bytes of the file up to the end of chunk idx-1
	skip      int
	buf       []byte
	sum       hash.Hash
	err       error
}

func (r *fileReader) Read(p []byte) (int, error) {
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

func (r *fileReader) next() error {
	if err := r.ctx.Err(); err != nil {
		return err
	}
	if r.read >= r.m.Size {
		if r.sum == nil {
			return io.EOF
		}
		if got := hex.EncodeToString(r.sum.Sum(nil)); r.read != r.m.Size || got != r.m.SHA256 {
			return fmt.Errorf("%w: file %s has sha256 %s, recorded %s", ErrCorrupt, r.m.Path, got, r.m.SHA256)
		}
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
	n := int64(len(r.buf))
	if r.sum != nil {
		r.sum.Write(r.buf)
	} else if r.read+n > r.m.Size || n != ChunkSize && r.read+n != r.m.Size {
		// Every chunk but the last is whole, and the last ends at the size.
		return fmt.Errorf("%w: file %s chunk %d has %d bytes", ErrCorrupt, r.m.Path, r.idx, n)
	}
	r.idx++
	r.read += n
	if r.skip > 0 {
		r.buf, r.skip = r.buf[min(r.skip, len(r.buf)):], 0
	}
	return nil
}

func (r *fileReader) Close() error { return nil }
