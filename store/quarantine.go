package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// Gap is a quarantined range of offsets [From, To) of a partition.
type Gap struct {
	From uint64 `json:"from"`
	To   uint64 `json:"to"`
}

// gapAt finds the quarantined range holding offset off.
func gapAt(txn *badger.Txn, vol, name, topic string, part int, off uint64) (from, to uint64, ok bool) {
	pfx := gapPrefix(vol, name, topic, part)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: pfx, Reverse: true})
	defer it.Close()
	it.Seek(binary.BigEndian.AppendUint64(append([]byte(nil), pfx...), off))
	if !it.ValidForPrefix(pfx) {
		return 0, 0, false
	}
	from, to, err := decodeGap(it.Item(), pfx)
	if err != nil || off < from || off >= to {
		return 0, 0, false
	}
	return from, to, true
}

// lastGap finds a partition's last quarantined range.
func lastGap(txn *badger.Txn, vol, name, topic string, part int) (from, to uint64, ok bool) {
	pfx := gapPrefix(vol, name, topic, part)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: pfx, Reverse: true})
	defer it.Close()
	it.Seek(binary.BigEndian.AppendUint64(append([]byte(nil), pfx...), ^uint64(0)))
	if !it.ValidForPrefix(pfx) {
		return 0, 0, false
	}
	from, to, err := decodeGap(it.Item(), pfx)
	return from, to, err == nil
}

func decodeGap(item *badger.Item, pfx []byte) (from, to uint64, err error) {
	k := item.Key()
	if len(k) != len(pfx)+8 {
		return 0, 0, fmt.Errorf("%w: quarantine record key of %d bytes", ErrCorrupt, len(k))
	}
	from = binary.BigEndian.Uint64(k[len(pfx):])
	err = item.Value(func(v []byte) error {
		if len(v) != 8 {
			return fmt.Errorf("%w: quarantine record of %d bytes", ErrCorrupt, len(v))
		}
		to = binary.BigEndian.Uint64(v)
		return nil
	})
	return from, to, err
}

// Gaps lists the quarantined ranges of a partition, in order.
func (st *Stream) Gaps(ctx context.Context, topic string, part int) ([]Gap, error) {
	txn := st.v.txn()
	defer txn.Discard()
	_, vol, name, err := st.v.object(txn, st.path, KindStream)
	if err != nil {
		return nil, err
	}
	pfx := gapPrefix(vol, name, topic, part)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: pfx})
	defer it.Close()
	var out []Gap
	for it.Seek(pfx); it.ValidForPrefix(pfx); it.Next() {
		from, to, err := decodeGap(it.Item(), pfx)
		if err != nil {
			return nil, err
		}
		out = append(out, Gap{from, to})
	}
	return out, nil
}

// Quarantine gives up the damaged batch of a partition that starts at
// offset from, or the missing offsets that start there (as a
// *CorruptError names them): the range up to the next batch that can be
// found (the end of the batch's header when it is the last one) is
// recorded as a gap, the batches seen in it are deleted, the stream
// counts the offsets (Info.Quarantined) and the audit stream records it.
// From then on reads stop at the gap and a read from inside it fails with
// a *GapError, which readers step over (ReadPast, Consumer). Quarantining
// a range that is quarantined already returns it again.
func (st *Stream) Quarantine(ctx context.Context, topic string, part int, from uint64) (Gap, error) {
	if st.v.ts != 0 {
		return Gap{}, ErrReadOnly
	}
	var gap Gap
	err := st.v.s.do(ctx, 256, true, func(w *wtx) error {
		m, vol, name, err := w.object(st.path, KindStream)
		if err != nil {
			return err
		}
		if part < 0 || part >= m.Partitions {
			return fmt.Errorf("%w: %s has %d partitions", ErrBadPartition, st.path, m.Partitions)
		}
		if gf, gt, ok := gapAt(w.txn, vol, name, topic, part, from); ok {
			gap = Gap{gf, gt}
			return nil
		}
		low, err := lowMark(w.txn, vol, name, topic, part)
		if err != nil {
			return err
		}
		if from < low {
			return fmt.Errorf("%w: %s topic %q partition %d starts at %d, asked for %d", ErrTrimmed, st.path, topic, part, low, from)
		}
		if gap, err = w.damaged(st.path, vol, name, topic, part, from); err != nil {
			return err
		}
		prefix := partPrefix(vol, name, topic, part)
		if _, err := w.sweep(vol, batchKey(prefix, gap.From), 0, nil, func(k []byte) bool {
			return len(k) != len(prefix)+8 || binary.BigEndian.Uint64(k[len(prefix):]) >= gap.To
		}); err != nil {
			return err
		}
		w.s.gapsMaybe.Store(true)
		if err := w.put(vol, binary.BigEndian.AppendUint64(gapPrefix(vol, name, topic, part), gap.From), binary.BigEndian.AppendUint64(nil, gap.To)); err != nil {
			return err
		}
		h, err := w.head(st.path, vol, name, topic, part)
		if err != nil && !errors.Is(err, ErrCorrupt) {
			return err
		}
		if h != nil {
			h.next = max(h.next, gap.To)
		} else {
			delete(w.heads, partID(st.path, topic, part))
		}
		nm := *m
		nm.Quarantined += int64(gap.To - gap.From)
		if err := w.setMeta(&nm); err != nil {
			return err
		}
		w.wake[partID(st.path, topic, part)] = struct{}{}
		w.wake[st.path] = struct{}{}
		return w.audit("stream.quarantine", st.path, map[string]any{"topic": topic, "partition": part, "from": gap.From, "to": gap.To})
	})
	if err != nil {
		return Gap{}, err
	}
	return gap, nil
}

// damaged finds the range a quarantine from offset from covers: the batch
// at from if there is one (up to the next batch, or as far as its header
// says when it is the last), else the missing offsets from from to the
// next batch. A readable batch holding from is refused.
//
// A table block whose damage makes Badger's iterator panic when it loads
// the block (v4.9.6 parses the block's entry count before its checksum)
// hides its keys: the range then reaches from from to the first batch
// past that block, found by seeking further until a seek succeeds.
func (w *wtx) damaged(path, vol, name, topic string, part int, from uint64) (gap Gap, err error) {
	prefix := partPrefix(vol, name, topic, part)
	defer func() {
		if p := recover(); p != nil {
			gap, err = w.pastBlock(path, topic, part, prefix, from, p)
		}
	}()
	return w.damagedBatch(path, topic, part, prefix, from)
}

// pastBlock is the range from from to the first batch key a seek can reach
// past an unreadable block: seeks to offsets in or just after the block
// panic, seeks at or past the next block's first key do not, so the
// smallest offset whose seek succeeds is found by doubling, then halving.
func (w *wtx) pastBlock(path, topic string, part int, prefix []byte, from uint64, cause any) (Gap, error) {
	seek := func(x uint64) (next uint64, found, ok bool) {
		defer func() {
			if recover() != nil {
				ok = false
			}
		}()
		it := w.txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		it.Seek(batchKey(prefix, x))
		if !it.ValidForPrefix(prefix) {
			return 0, false, true
		}
		return binary.BigEndian.Uint64(it.Item().Key()[len(prefix):]), true, true
	}
	lo, step := from, uint64(1)
	hi := from + step
	next, found, ok := seek(hi)
	for !ok {
		if step > 1<<40 {
			return Gap{}, fmt.Errorf("%w: %s topic %q partition %d: no readable batch past the damage at %d (%v)", ErrCorrupt, path, topic, part, from, cause)
		}
		lo, step = hi, step*2
		hi = from + step
		next, found, ok = seek(hi)
	}
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		if n, f, ok := seek(mid); ok {
			hi, next, found = mid, n, f
		} else {
			lo = mid
		}
	}
	if !found {
		return Gap{from, hi}, nil
	}
	return Gap{from, max(next, from+1)}, nil
}

func (w *wtx) damagedBatch(path, topic string, part int, prefix []byte, from uint64) (Gap, error) {
	rit := w.txn.NewIterator(badger.IteratorOptions{Prefix: prefix, Reverse: true})
	rit.Seek(batchKey(prefix, from))
	if rit.ValidForPrefix(prefix) {
		item := rit.Item()
		base := binary.BigEndian.Uint64(item.Key()[len(prefix):])
		var count int
		err := item.Value(func(v []byte) error {
			info, err := checkBatch(v)
			count = info.count
			return err
		})
		if err == nil && base+uint64(count) > from {
			rit.Close()
			return Gap{}, fmt.Errorf("%w: %s topic %q partition %d: offset %d is in the readable batch at %d; nothing to quarantine", ErrInvalid, path, topic, part, from, base)
		}
		if err != nil && base != from {
			rit.Close()
			return Gap{}, fmt.Errorf("%w: %s topic %q partition %d: the damaged batch starts at %d, not %d", ErrInvalid, path, topic, part, base, from)
		}
	}
	rit.Close()
	it := w.txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	defer it.Close()
	it.Seek(batchKey(prefix, from))
	if !it.ValidForPrefix(prefix) {
		return Gap{}, fmt.Errorf("%w: %s topic %q partition %d holds nothing at or past %d", ErrInvalid, path, topic, part, from)
	}
	base := binary.BigEndian.Uint64(it.Item().Key()[len(prefix):])
	if base > from {
		return Gap{from, base}, nil // missing offsets
	}
	// The damaged batch at from: up to the next batch.
	size := 0
	count := 0
	it.Item().Value(func(v []byte) error {
		size = len(v)
		if info, err := batchHeaderOf(v); err == nil {
			count = info.count
		}
		return nil
	})
	if it.Next(); it.ValidForPrefix(prefix) {
		return Gap{from, binary.BigEndian.Uint64(it.Item().Key()[len(prefix):])}, nil
	}
	// The last batch: its header's count, if it is plausible (a message
	// takes at least 4 bytes), else just the one offset.
	if count <= 0 || count > size/4 {
		count = 1
	}
	return Gap{from, from + uint64(count)}, nil
}
