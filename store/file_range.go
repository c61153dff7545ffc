package store

import (
	"context"
	"fmt"
	"io"
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
	return f.open(ctx, off, false)
}
