package store

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/dgraph-io/badger/v4"
)

// Backup writes to w every version of every key the store holds at its
// latest commit that is newer than since (0: a full backup), as Badger's
// backup stream (length-prefixed protobuf KV lists). It returns the
// highest version written: an incremental backup passes the previous
// backup's as since. (Badger's own Stream reads versions strictly above
// its SinceTs, whatever its doc says of "plus one": passing the previous
// version itself loses nothing.) The stream is a consistent snapshot at
// one commit; writes go on meanwhile and are in the next backup.
func (s *Store) Backup(w io.Writer, since uint64) (uint64, error) {
	if s.closed.Load() {
		return 0, ErrClosed
	}
	ts := s.ts.Load()
	stream := s.db.NewStreamAt(ts)
	stream.LogPrefix = "store.Backup"
	stream.SinceTs = since
	last, err := stream.Backup(w, since)
	if err != nil {
		return 0, fmt.Errorf("store: backup: %w", err)
	}
	return max(last, since), nil // nothing new: the next one starts at since again
}

// ErrNotEmptyDir is returned by Restore for a directory that holds files
// already.
var ErrNotEmptyDir = errors.New("store: restore: the directory is not empty")

// Restore loads backups (a full Backup, then the incremental ones in the
// order they were made) into dir, which must be empty or absent, so that
// Open finds the store as it was at the last backup's commit. It must run
// before any store is opened in dir: Open writes objects of its own.
func Restore(dir string, backups ...io.Reader) (err error) {
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return fmt.Errorf("%w: %s", ErrNotEmptyDir, dir)
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("store: restore: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("store: restore: %w", err)
	}
	opts := badger.DefaultOptions(dir).
		WithSyncWrites(true).
		WithValueLogFileSize(256 << 20).
		WithValueThreshold(valueThreshold).
		WithNumVersionsToKeep(1).
		WithLogger(nil).
		WithMetricsEnabled(false)
	db, err := badger.OpenManaged(opts)
	if err != nil {
		return fmt.Errorf("store: restore: open %s: %w", dir, err)
	}
	defer func() {
		if cerr := db.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("store: restore: %w", cerr)
		}
	}()
	for i, r := range backups {
		if err := db.Load(r, 256); err != nil {
			return fmt.Errorf("store: restore: backup %d: %w", i+1, err)
		}
	}
	return nil
}
