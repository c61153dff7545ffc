package store

import (
	"bytes"
	"cmp"
	"container/heap"
	"encoding/binary"
	"slices"

	"github.com/dgraph-io/badger/v4"
)

const (
	// dropMaxBatches bounds the batches one write may drop, so that the
	// group's transaction stays small.
	dropMaxBatches = 4096
	// dropMaxPartitions bounds the partitions a drop compares to find the
	// oldest batch; beyond it, the first partitions in key order compete.
	dropMaxPartitions = 4096
)

// oldBatch is the first batch of a partition, a candidate for dropping.
type oldBatch struct {
	stream *Info
	prefix []byte // the partition's batch key prefix
	topic  string
	part   int
	base   uint64
	count  int
	size   int
	maxTS  int64
}

type oldest []*oldBatch

func (h oldest) Len() int { return len(h) }
func (h oldest) Less(i, j int) bool {
	if h[i].maxTS != h[j].maxTS {
		return h[i].maxTS < h[j].maxTS
	}
	return bytes.Compare(h[i].prefix, h[j].prefix) < 0
}
func (h oldest) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *oldest) Push(x any)   { *h = append(*h, x.(*oldBatch)) }
func (h *oldest) Pop() any {
	old := *h
	b := old[len(old)-1]
	*h = old[:len(old)-1]
	return b
}

// dropOldest frees at least need bytes of vol, if it can, by deleting the
// oldest batches of its streams, the lowest priority first. It moves each
// partition's low-water mark past what it deletes and counts the drop in
// the stream's record. The batches of this group's own appends are not yet
// written and so are never dropped.
func (w *wtx) dropOldest(vol string, need int64) error {
	streams, err := w.s.streamsOf(vol)
	if err != nil {
		return err
	}
	slices.SortStableFunc(streams, func(a, b Info) int { return cmp.Compare(a.Priority, b.Priority) })
	rt := w.s.readTxn(0)
	defer rt.Discard()
	var freed int64
	dropped := 0
	counts := map[string]*Info{}
	for i := 0; i < len(streams) && freed < need && dropped < dropMaxBatches; {
		j := i
		for j < len(streams) && streams[j].Priority == streams[i].Priority {
			j++
		}
		h, err := w.firstBatches(rt, streams[i:j])
		if err != nil {
			return err
		}
		for h.Len() > 0 && freed < need && dropped < dropMaxBatches {
			b := heap.Pop(h).(*oldBatch)
			n, err := w.dropBatch(vol, b, counts)
			if err != nil {
				return err
			}
			freed += int64(n)
			dropped++
			next, err := nextBatch(rt, b.stream, b.prefix, b.base+1)
			if err != nil {
				return err
			}
			if next != nil {
				next.topic, next.part = b.topic, b.part
				heap.Push(h, next)
			}
		}
		i = j
	}
	for _, m := range counts {
		if err := w.setMeta(m); err != nil {
			return err
		}
	}
	return nil
}

// firstBatches finds the first batch of each partition of streams.
func (w *wtx) firstBatches(rt *badger.Txn, streams []Info) (*oldest, error) {
	h := &oldest{}
	for k := range streams {
		m := &streams[k]
		vol, name, _ := SplitPath(m.Path)
		base := objKey(vol, kindBatch, name, "")
		it := rt.NewIterator(badger.IteratorOptions{Prefix: base})
		for it.Seek(base); it.ValidForPrefix(base) && h.Len() < dropMaxPartitions; {
			key := it.Item().Key()
			if len(key) < len(base)+13 {
				it.Next()
				continue
			}
			prefix := slices.Clone(key[:len(key)-8])
			b, err := batchAt(it.Item(), m, prefix)
			if err != nil {
				it.Close()
				return nil, err
			}
			b.topic = string(prefix[len(base) : len(prefix)-5])
			b.part = int(binary.BigEndian.Uint32(prefix[len(prefix)-4:]))
			*h = append(*h, b)
			it.Seek(batchKey(prefix, ^uint64(0)))
		}
		it.Close()
	}
	heap.Init(h)
	return h, nil
}

// nextBatch is the partition's first batch at or after offset from, nil if
// none.
func nextBatch(rt *badger.Txn, m *Info, prefix []byte, from uint64) (*oldBatch, error) {
	it := rt.NewIterator(badger.IteratorOptions{Prefix: prefix})
	defer it.Close()
	it.Seek(batchKey(prefix, from))
	if !it.ValidForPrefix(prefix) {
		return nil, nil
	}
	return batchAt(it.Item(), m, prefix)
}

// batchAt reads the header of the batch at item.
func batchAt(item *badger.Item, m *Info, prefix []byte) (*oldBatch, error) {
	b := &oldBatch{stream: m, prefix: prefix, base: binary.BigEndian.Uint64(item.Key()[len(prefix):]),
		size: entrySize(item)}
	err := item.Value(func(v []byte) error {
		// A batch whose header is bad is dropped all the same.
		if info, err := batchHeaderOf(v); err == nil {
			b.count, b.maxTS = info.count, info.maxTS
		}
		return nil
	})
	return b, err
}

// dropBatch deletes one batch, unless this group deleted it already, and
// returns the bytes it freed.
func (w *wtx) dropBatch(vol string, b *oldBatch, counts map[string]*Info) (int, error) {
	key := batchKey(b.prefix, b.base)
	size, err := w.sizeOf(key)
	if err != nil || size == 0 {
		return 0, err
	}
	if err := w.del(vol, key, size); err != nil {
		return 0, err
	}
	_, name, _ := SplitPath(b.stream.Path)
	h, err := w.head(b.stream.Path, vol, name, b.topic, b.part)
	if err != nil {
		return 0, err
	}
	low := b.base + uint64(b.count)
	h.low, h.next = max(h.low, low), max(h.next, low)
	if err := w.put(vol, lowKey(vol, name, b.topic, b.part), binary.BigEndian.AppendUint64(nil, h.low)); err != nil {
		return 0, err
	}
	m := counts[b.stream.Path]
	if m == nil {
		cur, _, _, err := w.object(b.stream.Path, KindStream)
		if err != nil {
			return 0, err
		}
		c := *cur
		m = &c
		counts[b.stream.Path] = m
	}
	m.Dropped += int64(b.count)
	m.DroppedBytes += int64(size)
	return size, nil
}
