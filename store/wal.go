package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"

	"github.com/dgraph-io/badger/v4"
)

// The write-ahead log is where a group commit becomes durable: the
// writer appends the group's keys and values to it as one record and
// pays one fdatasync for the whole group, then commits the group to
// Badger, which is opened without its own syncs (two msyncs a commit,
// of its memtable and value log, each dearer than the log's fdatasync on
// an ext4 virtual disk). Readers see a group only once its record is on
// disk.
//
// Badger keeps what it was given in its memory-mapped files: after a
// kill -9 it has every commit. After a power cut it has a prefix of its
// commits (its own log is replayed up to the first damaged entry), and
// the log holds the rest: every group writes its record's sequence
// number under walKey, so at open the records after the one Badger last
// has are applied again, at their own commit timestamps, in order.
//
// The file is reused: once it holds walCap bytes, the writer syncs
// Badger (db.Sync) and starts again at offset 0, overwriting old records
// in place (no block allocation, so each fdatasync writes data only). A
// record is valid when its checksum matches and its sequence number
// follows the one before; the first that fails either ends the log.
// A group larger than the file goes to Badger directly, followed by a
// db.Sync.
//
// Record: len(4) crc32c(4) seq(8) ts(8), then entries: op(1) key len
// (uvarint) key value len (uvarint) value; op 1 sets, op 2 deletes. len
// counts what follows the checksum, which covers it.

const (
	walName      = "WAL"
	walCap       = 16 << 20
	walGrow      = 1 << 20
	walHeaderLen = 24
	walSet       = 1
	walDelete    = 2
)

// walKey holds the sequence number of the last log record the database
// holds; every group writes it.
var walKey = []byte("W")

type wal struct {
	f    *os.File
	off  int64  // where the next record goes
	size int64  // the file's size: zeros or old records past off
	seq  uint64 // the last record's sequence number
	buf  []byte
}

// walEntry is one write of a group.
type walEntry struct {
	del      bool
	key, val []byte
}

// openWAL opens the log in dir and applies to db the records it holds
// that db has lost, then syncs db and starts the log over.
func openWAL(dir string, db *badger.DB, log *slog.Logger) (*wal, error) {
	f, err := os.OpenFile(filepath.Join(dir, walName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: open write-ahead log: %w", err)
	}
	applied, err := walApplied(db)
	if err != nil {
		f.Close()
		return nil, err
	}
	last, first, n, err := replayWAL(f, db, applied)
	if err != nil {
		f.Close()
		return nil, err
	}
	if n > 0 {
		if first != applied+1 {
			// Records between are in neither: the log was replaced or
			// damaged. What is there is applied; the reads that meet
			// the hole report it.
			log.Error("write-ahead log does not follow the database", "database_has", applied, "log_starts", first)
		}
		log.Info("write-ahead log replayed", "records", n, "through", last)
		if err := db.Sync(); err != nil {
			f.Close()
			return nil, fmt.Errorf("store: sync after write-ahead log replay: %w", err)
		}
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("store: write-ahead log: %w", err)
	}
	return &wal{f: f, seq: max(applied, last), size: fi.Size()}, nil
}

// walApplied is the sequence number of the last record db holds.
func walApplied(db *badger.DB) (uint64, error) {
	txn := db.NewTransactionAt(db.MaxVersion(), false)
	defer txn.Discard()
	item, err := txn.Get(walKey)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("store: read write-ahead log position: %w", err)
	}
	var seq uint64
	err = item.Value(func(v []byte) error {
		if len(v) != 8 {
			return fmt.Errorf("%w: write-ahead log position of %d bytes", ErrCorrupt, len(v))
		}
		seq = binary.BigEndian.Uint64(v)
		return nil
	})
	return seq, err
}

// replayWAL applies the valid records of f after applied to db, each at
// its commit timestamp. It returns the last valid record's sequence
// number, the first applied one's, and how many records it applied.
func replayWAL(f *os.File, db *badger.DB, applied uint64) (last, first uint64, n int, err error) {
	r := io.NewSectionReader(f, 0, 1<<62)
	var hdr [walHeaderLen]byte
	var body []byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return last, first, n, nil
		}
		size := binary.BigEndian.Uint32(hdr[0:])
		if size < walHeaderLen-8 || size > 1<<30 {
			return last, first, n, nil
		}
		body = append(body[:0], hdr[8:]...)
		body = append(body, make([]byte, int(size)-(walHeaderLen-8))...)
		if _, err := io.ReadFull(r, body[walHeaderLen-8:]); err != nil {
			return last, first, n, nil
		}
		if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(hdr[4:]) {
			return last, first, n, nil
		}
		seq := binary.BigEndian.Uint64(body[0:])
		ts := binary.BigEndian.Uint64(body[8:])
		if last != 0 && seq != last+1 {
			return last, first, n, nil // a record of an earlier pass
		}
		last = seq
		if seq <= applied {
			continue
		}
		if err := applyWALRecord(db, ts, body[walHeaderLen-8:]); err != nil {
			return last, first, n, fmt.Errorf("store: replay write-ahead log record %d: %w", seq, err)
		}
		if n == 0 {
			first = seq
		}
		n++
	}
}

func applyWALRecord(db *badger.DB, ts uint64, b []byte) error {
	txn := db.NewTransactionAt(ts, true)
	defer txn.Discard()
	for len(b) > 0 {
		op := b[0]
		b = b[1:]
		key, rest, ok := walBytes(b)
		if !ok {
			return fmt.Errorf("%w: truncated entry", ErrCorrupt)
		}
		b = rest
		switch op {
		case walSet:
			var val []byte
			if val, b, ok = walBytes(b); !ok {
				return fmt.Errorf("%w: truncated entry", ErrCorrupt)
			}
			if err := txn.Set(key, val); err != nil {
				return err
			}
		case walDelete:
			if err := txn.Delete(key); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%w: entry of kind %d", ErrCorrupt, op)
		}
	}
	return txn.CommitAt(ts, nil)
}

func walBytes(b []byte) (v, rest []byte, ok bool) {
	n, k := binary.Uvarint(b)
	if k <= 0 || uint64(len(b)-k) < n {
		return nil, nil, false
	}
	return b[k : k+int(n)], b[k+int(n):], true
}

// encode builds the record of a group at ts with sequence number seq.
func (l *wal) encode(seq, ts uint64, entries []walEntry) []byte {
	b := append(l.buf[:0], make([]byte, walHeaderLen)...)
	for _, e := range entries {
		if e.del {
			b = append(b, walDelete)
			b = binary.AppendUvarint(b, uint64(len(e.key)))
			b = append(b, e.key...)
			continue
		}
		b = append(b, walSet)
		b = binary.AppendUvarint(b, uint64(len(e.key)))
		b = append(b, e.key...)
		b = binary.AppendUvarint(b, uint64(len(e.val)))
		b = append(b, e.val...)
	}
	binary.BigEndian.PutUint32(b[0:], uint32(len(b)-8))
	binary.BigEndian.PutUint64(b[8:], seq)
	binary.BigEndian.PutUint64(b[16:], ts)
	binary.BigEndian.PutUint32(b[4:], crc32.Checksum(b[8:], castagnoli))
	if cap(b) <= 1<<20 {
		l.buf = b
	}
	return b
}

// fits reports whether a record of n bytes fits in the rest of the file.
func (l *wal) fits(n int) bool { return l.off+int64(n) <= walCap }

// write appends rec at the log's offset and makes it durable. A failed
// sync is reported apart (synced false): the kernel may have dropped the
// pages it could not write, so nothing after it can be trusted.
func (l *wal) write(rec []byte) (synced bool, err error) {
	if end := l.off + int64(len(rec)); end > l.size {
		// Zeros ahead of the records, a MiB at a time: a record then
		// overwrites blocks the file has, and its fdatasync writes the
		// data alone, not the file's new size and blocks.
		grow := min(max(walCap, end), (end+walGrow-1)/walGrow*walGrow)
		if _, err := l.f.WriteAt(make([]byte, grow-l.size), l.size); err != nil {
			return true, walWriteErr(err)
		}
		l.size = grow
	}
	if _, err := l.f.WriteAt(rec, l.off); err != nil {
		return true, walWriteErr(err)
	}
	if err := fdatasync(l.f); err != nil {
		return false, fmt.Errorf("store: write-ahead log sync: %w", err)
	}
	l.off += int64(len(rec))
	return true, nil
}

func walWriteErr(err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%w: write-ahead log: %v", ErrDiskFull, err)
	}
	return fmt.Errorf("store: write-ahead log: %w", err)
}

func (l *wal) close() error {
	if l == nil {
		return nil
	}
	return l.f.Close()
}
