package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// EnforceRetention trims every stream that has a TTL (its own or its
// volume's) or a size cap: whole batches go, oldest first, and each
// partition's low-water mark moves past them. Ages are measured against
// the store's time less any unconfirmed forward jump of the clock (see
// ConfirmTime), so a record goes only once it is older than its TTL.
func (s *Store) EnforceRetention(ctx context.Context) error {
	now := s.retentionNow()
	for _, vi := range s.Volumes() {
		streams, err := s.streamsOf(vi.Name)
		if err != nil {
			return err
		}
		for _, m := range streams {
			ttl := m.TTL
			if ttl == 0 {
				ttl = vi.TTL
			}
			if ttl == 0 && m.MaxBytes == 0 {
				continue
			}
			if err := s.trimStream(ctx, m, ttl, now); err != nil {
				return fmt.Errorf("store: retention of %s: %w", m.Path, err)
			}
		}
	}
	return nil
}

// streamsOf lists the streams of a volume.
func (s *Store) streamsOf(vol string) ([]Info, error) {
	objs, err := s.objectsOf(vol)
	return slices.DeleteFunc(objs, func(m Info) bool { return m.Kind != KindStream }), err
}

type batchRef struct {
	base uint64
	size int64
}

// trimStream finds, per partition, the first batch to keep and trims below it.
func (s *Store) trimStream(ctx context.Context, m Info, ttl time.Duration, now time.Time) error {
	vol, name, _ := SplitPath(m.Path)
	txn := s.readTxn(0)
	defer txn.Discard()
	base := objKey(vol, kindBatch, name, "")
	it := txn.NewIterator(badger.IteratorOptions{Prefix: base, PrefetchValues: false})
	defer it.Close()
	var cutoff int64
	if ttl > 0 {
		cutoff = now.Add(-ttl).UnixNano()
	}
	var part []byte
	var refs []batchRef
	flush := func() error {
		if len(refs) == 0 {
			return nil
		}
		topic := string(part[len(base) : len(part)-5])
		p := int(binary.BigEndian.Uint32(part[len(part)-4:]))
		keep, err := s.firstToKeep(txn, part, refs, cutoff, m.MaxBytes)
		if err != nil || keep == refs[0].base {
			return err
		}
		return s.trimBelow(ctx, m.Path, topic, p, keep)
	}
	for it.Seek(base); it.ValidForPrefix(base); it.Next() {
		k := it.Item().Key()
		if len(k) < len(base)+13 {
			continue
		}
		pp := k[:len(k)-8]
		if !bytes.Equal(pp, part) {
			if err := flush(); err != nil {
				return err
			}
			part, refs = append(part[:0], pp...), refs[:0]
		}
		refs = append(refs, batchRef{base: binary.BigEndian.Uint64(k[len(k)-8:]), size: int64(entrySize(it.Item()))})
	}
	return flush()
}

// firstToKeep returns the offset below which a partition's batches go: past
// those older than cutoff and those beyond the size cap.
func (s *Store) firstToKeep(txn *badger.Txn, part []byte, refs []batchRef, cutoff, maxBytes int64) (uint64, error) {
	var total int64
	for _, r := range refs {
		total += r.size
	}
	i := 0
	for ; i < len(refs); i++ {
		if maxBytes > 0 && total > maxBytes {
			total -= refs[i].size
			continue
		}
		if cutoff == 0 {
			break
		}
		info, err := batchHeader(txn, batchKey(part, refs[i].base))
		if err != nil {
			return 0, err
		}
		if info.maxTS >= cutoff {
			break
		}
	}
	if i < len(refs) {
		return refs[i].base, nil
	}
	last := refs[len(refs)-1]
	info, err := batchHeader(txn, batchKey(part, last.base))
	if err != nil {
		return 0, err
	}
	return last.base + uint64(info.count), nil
}

func batchHeader(txn *badger.Txn, key []byte) (batchInfo, error) {
	item, err := txn.Get(key)
	if err != nil {
		return batchInfo{}, err
	}
	var info batchInfo
	err = item.Value(func(v []byte) error {
		var e error
		info, e = checkBatch(v)
		return e
	})
	return info, err
}

// trimBelow deletes a partition's batches below offset keep (a batch
// boundary) and records keep as its low-water mark, in the first of the
// commits it takes: a partition's first batch is never past its mark but
// for damage, which reads report.
func (s *Store) trimBelow(ctx context.Context, path, topic string, part int, keep uint64) error {
	vol, name, _ := SplitPath(path)
	prefix := partPrefix(vol, name, topic, part)
	gaps := gapPrefix(vol, name, topic, part)
	for {
		more := false
		err := s.do(ctx, 0, true, func(w *wtx) error {
			if _, _, _, err := w.object(path, KindStream); err != nil {
				return err
			}
			h, err := w.head(path, vol, name, topic, part)
			if err != nil {
				return err
			}
			if h.low < keep {
				h.low = keep
				h.next = max(h.next, keep)
				if err := w.put(vol, lowKey(vol, name, topic, part), binary.BigEndian.AppendUint64(nil, keep)); err != nil {
					return err
				}
			}
			n, err := w.sweep(vol, prefix, sweepChunk, nil, func(k []byte) bool { return binary.BigEndian.Uint64(k[len(prefix):]) >= keep })
			if err != nil {
				return err
			}
			if more = n == sweepChunk; more {
				return nil
			}
			// Quarantined ranges wholly below the mark are of no more use.
			_, err = w.sweep(vol, gaps, 0, func(k []byte) bool {
				item, err := w.txn.Get(k)
				if err != nil {
					return true
				}
				_, to, err := decodeGap(item, gaps)
				return err != nil || to > keep
			}, func(k []byte) bool { return binary.BigEndian.Uint64(k[len(gaps):]) >= keep })
			return err
		})
		if err != nil || !more {
			return err
		}
	}
}
