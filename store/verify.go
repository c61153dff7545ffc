package store

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/dgraph-io/badger/v4"
)

// VerifyReport is what Verify found.
type VerifyReport struct {
	// Tables is Badger's verdict on the checksums of every block of every
	// table: nil, or the first damaged table.
	Tables error
	// Damaged lists the ranges of stream partitions that cannot be read:
	// batches that fail their checksum and offsets no batch holds.
	Damaged []*CorruptError
	// Files lists the files whose content cannot be read or does not
	// match its recorded size and SHA-256.
	Files []error
	// Quarantined lists the ranges given up already; they are not damage.
	Quarantined []*GapError
	// Partitions and Messages count what was read.
	Partitions, Messages int64
}

// OK reports whether nothing is damaged.
func (r *VerifyReport) OK() bool {
	return r.Tables == nil && len(r.Damaged) == 0 && len(r.Files) == 0
}

// Verify checks the whole store, for a stopped node's data directory:
// the checksums of Badger's tables, every batch of every stream partition
// (its checksum, and that offsets are dense from the low-water mark to
// the end), and the size and SHA-256 of every file. It reads everything
// once; it returns an error only when it cannot go on.
func (s *Store) Verify(ctx context.Context) (*VerifyReport, error) {
	r := &VerifyReport{}
	r.Tables = s.verifyTables()
	for _, vi := range s.Volumes() {
		objs, err := s.objectsOf(vi.Name)
		if err != nil {
			return r, err
		}
		for _, m := range objs {
			switch m.Kind {
			case KindStream:
				if err := s.verifyStream(ctx, r, m); err != nil {
					return r, err
				}
			case KindFile:
				if err := s.verifyFile(ctx, m.Path); err != nil {
					if ctx.Err() != nil {
						return r, ctx.Err()
					}
					r.Files = append(r.Files, err)
				}
			}
		}
	}
	return r, nil
}

// verifyTables runs Badger's check of every table block. Badger reports
// the first damaged table; a block that cannot be read at all makes its
// check panic (v4.9.6 formats the offset of the nil block it got), which
// is reported without the table's name.
func (s *Store) verifyTables() (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: a table holds a block that fails its checksum", ErrCorrupt)
		}
	}()
	if err := s.db.VerifyChecksum(); err != nil {
		return fmt.Errorf("%w: table checksums: %v", ErrCorrupt, err)
	}
	return nil
}

// objectsOf lists the objects of a volume.
func (s *Store) objectsOf(vol string) ([]Info, error) {
	txn := s.readTxn(0)
	defer txn.Discard()
	base := metaKey(vol, "")
	it := txn.NewIterator(badger.IteratorOptions{Prefix: base})
	defer it.Close()
	var out []Info
	for it.Seek(base); it.ValidForPrefix(base); it.Next() {
		m, err := readMeta(txn, vol, string(it.Item().Key()[len(base):]))
		if err != nil {
			return nil, err
		}
		out = append(out, *m)
	}
	return out, nil
}

func (s *Store) verifyStream(ctx context.Context, r *VerifyReport, m Info) error {
	st := s.Stream(m.Path)
	topics, err := st.AllTopics(ctx)
	if err != nil {
		return err
	}
	for _, topic := range topics {
		for part := range max(m.Partitions, 1) {
			r.Partitions++
			if err := s.verifyPartition(ctx, r, st, topic, part); err != nil {
				return err
			}
		}
	}
	return nil
}

// verifyPartition reads a partition from its low-water mark to its end,
// noting each range it cannot read and going on after it.
func (s *Store) verifyPartition(ctx context.Context, r *VerifyReport, st *Stream, topic string, part int) error {
	low, _, err := st.Bounds(ctx, topic, part)
	var ce *CorruptError
	if errors.As(err, &ce) {
		r.Damaged = append(r.Damaged, ce) // the last batch; read up to it
	} else if err != nil {
		return err
	}
	from := low
	for {
		msgs, err := st.Read(ctx, topic, part, from, ReadOptions{Limit: 100000, MaxBytes: 64 << 20})
		var gap *GapError
		switch {
		case errors.As(err, &gap):
			r.Quarantined = append(r.Quarantined, gap)
			from = gap.To
			continue
		case errors.As(err, &ce):
			if !containsRange(r.Damaged, ce) {
				r.Damaged = append(r.Damaged, ce)
			}
			if ce.To <= from {
				return nil // where it ends is unknown
			}
			from = ce.To
			continue
		case err != nil:
			return err
		}
		if len(msgs) == 0 {
			return nil
		}
		r.Messages += int64(len(msgs))
		from = msgs[len(msgs)-1].Offset + 1
	}
}

func containsRange(list []*CorruptError, e *CorruptError) bool {
	for _, d := range list {
		if d.Path == e.Path && d.Topic == e.Topic && d.Partition == e.Partition && d.From == e.From {
			return true
		}
	}
	return false
}

func (s *Store) verifyFile(ctx context.Context, path string) error {
	rc, _, err := s.File(path).Open(ctx)
	if err != nil {
		return err
	}
	defer rc.Close()
	if _, err := io.Copy(io.Discard, rc); err != nil {
		return fmt.Errorf("file %s: %w", path, err)
	}
	return nil
}
