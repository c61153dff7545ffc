package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// StreamOptions are the settings of a new stream.
type StreamOptions struct {
	// Partitions per topic. Default 1.
	Partitions int
	// TTL trims batches older than this; 0 uses the volume's TTL.
	TTL time.Duration
	// MaxBytes caps each partition; the oldest batches go first. 0: no cap.
	MaxBytes int64
	// Priority orders the streams of a volume that drops its oldest data
	// when full (VolumeOptions.DropOldest): lower priorities go first.
	Priority int
}

// Pos is where an appended message landed.
type Pos struct {
	Partition int    `json:"partition"`
	Offset    uint64 `json:"offset"`
}

// AppendRequest appends messages to one topic of one stream. Partition -1
// picks the partition by key hash (or round-robin for keyless messages).
type AppendRequest struct {
	Path      string
	Topic     string
	Partition int
	Messages  []Message
}

// Stream is a handle on a stream object. It does no I/O until used.
type Stream struct {
	v    *View
	path string
}

// partState is a partition's offsets: the next offset to assign and the
// low-water mark (the first readable offset).
type partState struct {
	next, low uint64
	exists    bool // the topic has an index entry
}

// pendingPart gathers one group's messages for one partition; they become
// batches at commit.
type pendingPart struct {
	vol, name, topic string
	part             int
	newTopic         bool
	base             uint64
	msgs             []Message
}

func partID(path, topic string, part int) string {
	return path + "\x00" + topic + "\x00" + strconv.Itoa(part)
}

// Path is the stream's path.
func (st *Stream) Path() string { return st.path }

// Append appends msgs to topic, choosing partitions by key, and returns
// their positions once they are durable.
func (st *Stream) Append(ctx context.Context, topic string, msgs ...Message) ([]Pos, error) {
	res, err := st.v.s.AppendMany(ctx, []AppendRequest{{Path: st.path, Topic: topic, Partition: -1, Messages: msgs}})
	if err != nil {
		return nil, err
	}
	return res[0], nil
}

// AppendMany appends every request in one durable commit: all of them or
// none.
func (s *Store) AppendMany(ctx context.Context, reqs []AppendRequest) ([][]Pos, error) {
	var res [][]Pos
	err := s.do(ctx, appendSize(reqs), false, func(w *wtx) (err error) {
		res, err = w.appendAll(reqs)
		return err
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// appendSize is the encoded size of the messages of reqs.
func appendSize(reqs []AppendRequest) int {
	size := 0
	for _, r := range reqs {
		for i := range r.Messages {
			size += encodedSize(&r.Messages[i])
		}
	}
	return size
}

// appendAll stages every request in the transaction, checking all of them
// (objects, topics, partitions, quotas) before staging any.
func (w *wtx) appendAll(reqs []AppendRequest) ([][]Pos, error) {
	res := make([][]Pos, len(reqs))
	metas := make([]*Info, len(reqs))
	need := make(map[string]int, 1)
	for i, r := range reqs {
		m, vol, _, err := w.object(r.Path, KindStream)
		if err != nil {
			return nil, err
		}
		if err := checkTopic(r.Topic); err != nil {
			return nil, err
		}
		if r.Partition >= m.Partitions || r.Partition < -1 {
			return nil, fmt.Errorf("%w: %s has %d partitions, asked for %d", ErrBadPartition, r.Path, m.Partitions, r.Partition)
		}
		metas[i] = m
		for j := range r.Messages {
			need[vol] += encodedSize(&r.Messages[j])
		}
	}
	for vol, n := range need {
		if err := w.checkQuota(vol, n); err != nil {
			return nil, err
		}
	}
	for i, r := range reqs {
		pos, err := w.stage(r.Path, metas[i], r.Topic, r.Partition, r.Messages)
		if err != nil {
			return nil, err
		}
		res[i] = pos
	}
	return res, nil
}

func checkTopic(t string) error {
	switch {
	case t == "":
		return fmt.Errorf("%w: empty topic", ErrInvalid)
	case len(t) > 1024:
		return fmt.Errorf("%w: topic longer than 1024 bytes", ErrInvalid)
	case strings.IndexByte(t, 0) >= 0:
		return fmt.Errorf("%w: topic contains a NUL byte", ErrInvalid)
	}
	return nil
}

// stage assigns offsets to msgs and adds them to the group's pending
// batches. The caller has checked the object, topic and quota.
func (w *wtx) stage(path string, m *Info, topic string, part int, msgs []Message) ([]Pos, error) {
	vol, name, _ := SplitPath(path)
	pos := make([]Pos, len(msgs))
	w.writes++ // staged offsets must not survive a failed request
	if err := w.stampFloor(); err != nil {
		return nil, err
	}
	var pp *pendingPart
	var h *partState
	for i := range msgs {
		msg := msgs[i]
		p := part
		if p < 0 {
			p = w.s.pickPartition(m.Partitions, msg.Key)
		}
		if msg.Timestamp.IsZero() {
			msg.Timestamp = w.now
		}
		if pp == nil || pp.part != p {
			id := partID(path, topic, p)
			if pp = w.pending[id]; pp == nil {
				var err error
				if h, err = w.head(path, vol, name, topic, p); err != nil {
					return nil, err
				}
				pp = &pendingPart{vol: vol, name: name, topic: topic, part: p, newTopic: !h.exists, base: h.next}
				w.pending[id] = pp
				w.order = append(w.order, pp)
				h.exists = true
				w.wake[id] = struct{}{}
				w.wake[path] = struct{}{}
			}
			h = w.heads[id]
		}
		msg.Offset, msg.Partition = h.next, p
		h.next++
		pp.msgs = append(pp.msgs, msg)
		pos[i] = Pos{Partition: p, Offset: msg.Offset}
	}
	return pos, nil
}

func (s *Store) pickPartition(n int, key []byte) int {
	switch {
	case n <= 1:
		return 0
	case len(key) > 0:
		return int(crc32.Checksum(key, castagnoli) % uint32(n))
	default:
		s.rr++
		return int(s.rr % uint64(n))
	}
}

// head returns the group's copy of a partition's state, loading it if needed.
func (w *wtx) head(path, vol, name, topic string, part int) (*partState, error) {
	id := partID(path, topic, part)
	if h, ok := w.heads[id]; ok {
		return h, nil
	}
	if h, ok := w.s.heads[id]; ok {
		c := *h
		w.heads[id] = &c
		return &c, nil
	}
	h := &partState{}
	if !w.newPartition(vol, name, topic, part) {
		low, next, exists, err := bounds(w.txn, vol, name, topic, part, true, w.s.gapsMaybe.Load())
		if err != nil {
			return nil, err
		}
		h = &partState{next: next, low: low, exists: exists}
	}
	w.heads[id] = h
	return h, nil
}

// newPartition reports whether a partition has surely never been written:
// its topic has no key (every append, gap and trim writes one) and there
// is no batch at offset 0. Two point reads, cheap for keys that are not
// there (Badger's bloom filters), instead of the iterators of bounds;
// any doubt, including a read error, answers false.
func (w *wtx) newPartition(vol, name, topic string, part int) bool {
	if _, err := w.txn.Get(objKey(vol, kindTopic, name, topic)); !errors.Is(err, badger.ErrKeyNotFound) {
		return false
	}
	_, err := w.txn.Get(batchKey(partPrefix(vol, name, topic, part), 0))
	return errors.Is(err, badger.ErrKeyNotFound)
}

// flushPart writes a partition's pending messages as batches of at most
// maxBatchBytes.
func (w *wtx) flushPart(p *pendingPart) error {
	prefix := partPrefix(p.vol, p.name, p.topic, p.part)
	if p.newTopic {
		if err := w.set(p.vol, objKey(p.vol, kindTopic, p.name, p.topic), nil, 0); err != nil {
			return err
		}
	}
	msgs, base := p.msgs, p.base
	for len(msgs) > 0 {
		n, size := 0, 0
		for n < len(msgs) && (n == 0 || size+encodedSize(&msgs[n]) <= maxBatchBytes) {
			size += encodedSize(&msgs[n])
			n++
		}
		if err := w.set(p.vol, batchKey(prefix, base), encodeBatch(make([]byte, 0, size+batchHeaderLen), msgs[:n]), 0); err != nil {
			return err
		}
		msgs, base = msgs[n:], base+uint64(n)
	}
	return nil
}

// bounds reads a partition's low-water mark and next offset from txn. The
// low-water mark is the recorded one (0 if none): batches are removed from
// a partition's start only together with moving it, so a first batch past
// it is damage, which reads report. The next offset comes from the last
// batch's header and the last quarantined range; verify also checks that
// batch's checksum (the writer does, before numbering new messages after
// it; readers check each batch they decode).
func bounds(txn *badger.Txn, vol, name, topic string, part int, verify, gaps bool) (low, next uint64, exists bool, err error) {
	prefix := partPrefix(vol, name, topic, part)
	rit := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, Reverse: true})
	rit.Seek(batchKey(prefix, ^uint64(0)))
	if rit.ValidForPrefix(prefix) {
		exists = true
		item := rit.Item()
		base := binary.BigEndian.Uint64(item.Key()[len(prefix):])
		var info batchInfo
		err = item.Value(func(v []byte) error {
			var e error
			if verify {
				info, e = checkBatch(v)
			} else {
				info, e = batchHeaderOf(v)
			}
			return e
		})
		if err != nil {
			rit.Close()
			return 0, 0, false, &CorruptError{Path: "/" + vol + "/" + name, Topic: topic, Partition: part, From: base, Err: err}
		}
		next = base + uint64(info.count)
	}
	rit.Close()
	if _, to, ok := lastGap(txn, vol, name, topic, part); gaps && ok {
		exists = true
		next = max(next, to)
	}
	item, err := txn.Get(lowKey(vol, name, topic, part))
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
		err = nil
	case err != nil:
		return 0, 0, false, err
	default:
		exists = true
		err = item.Value(func(v []byte) error {
			if len(v) != 8 {
				return fmt.Errorf("%w: low-water record of %d bytes", ErrCorrupt, len(v))
			}
			low = binary.BigEndian.Uint64(v)
			return nil
		})
		if err != nil {
			return 0, 0, false, err
		}
		next = max(next, low)
	}
	return low, next, exists, err
}

// lowMark reads a partition's recorded low-water mark, 0 if none.
func lowMark(txn *badger.Txn, vol, name, topic string, part int) (uint64, error) {
	item, err := txn.Get(lowKey(vol, name, topic, part))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("store: read: %w", err)
	}
	var low uint64
	err = item.Value(func(v []byte) error {
		if len(v) != 8 {
			return fmt.Errorf("%w: low-water record of %d bytes", ErrCorrupt, len(v))
		}
		low = binary.BigEndian.Uint64(v)
		return nil
	})
	return low, err
}

// Bounds returns the partition's low-water mark (first readable offset) and
// the next offset to be assigned.
func (st *Stream) Bounds(ctx context.Context, topic string, part int) (low, next uint64, err error) {
	txn := st.v.txn()
	defer txn.Discard()
	m, vol, name, err := st.v.object(txn, st.path, KindStream)
	if err != nil {
		return 0, 0, err
	}
	if part < 0 || part >= m.Partitions {
		return 0, 0, fmt.Errorf("%w: %s has %d partitions", ErrBadPartition, st.path, m.Partitions)
	}
	low, next, _, err = bounds(txn, vol, name, topic, part, false, st.v.s.gapsMaybe.Load())
	return low, next, err
}

// ReadOptions bound a read. Zero values mean 1000 messages and 4 MiB.
type ReadOptions struct {
	Limit    int
	MaxBytes int
}

// Read returns messages of a partition from offset from on, at most
// opts.Limit messages and about opts.MaxBytes bytes (always at least one
// message when one exists). Reading below the low-water mark is
// ErrTrimmed; at or past the end it returns no messages.
//
// Offsets are dense: each batch must start where the one before it ended.
// A read that reaches offsets it cannot return stops before them; a read
// that starts there fails with a *CorruptError (ErrCorrupt) naming the
// range when a batch is missing or fails its checksum, or a *GapError
// (ErrQuarantined) when the range was quarantined, which the reader steps
// over by reading on from its end (ReadPast does). A read never skips
// offsets silently.
func (st *Stream) Read(ctx context.Context, topic string, part int, from uint64, opts ReadOptions) (msgs []Message, err error) {
	// A table block damaged where Badger reads its entry count panics
	// inside the iterator, before its checksum is checked (v4.9.6): that
	// is damage at the offsets the read had reached, not a crash.
	// The iterator reads ahead, so the damage may lie past a batch that
	// is whole: that batch is read by its key alone.
	var (
		stop   func(at, to uint64, cause error) ([]Message, error)
		want   uint64
		out    []Message
		prefix []byte
	)
	defer func() {
		if p := recover(); p != nil {
			cause := fmt.Errorf("reading the table failed: %v", p)
			if stop == nil {
				msgs, err = nil, &CorruptError{Path: st.path, Topic: topic, Partition: part, From: from, Err: cause}
				return
			}
			if len(out) == 0 {
				if got, ok := st.batchAt(prefix, want, part); ok {
					msgs, err = got[:min(len(got), opts.Limit)], nil
					return
				}
			}
			msgs, err = stop(want, 0, cause)
		}
	}()
	if opts.Limit <= 0 {
		opts.Limit = 1000
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = 4 << 20
	}
	txn := st.v.txn()
	defer txn.Discard()
	m, vol, name, err := st.v.object(txn, st.path, KindStream)
	if err != nil {
		return nil, err
	}
	if part < 0 || part >= m.Partitions {
		return nil, fmt.Errorf("%w: %s has %d partitions", ErrBadPartition, st.path, m.Partitions)
	}
	low, err := lowMark(txn, vol, name, topic, part)
	if err != nil {
		return nil, err
	}
	if from < low {
		return nil, fmt.Errorf("%w: %s topic %q partition %d starts at %d, asked for %d", ErrTrimmed, st.path, topic, part, low, from)
	}
	prefix = partPrefix(vol, name, topic, part)
	// Start at the batch holding from: the last batch whose base is <= from.
	// A reader that goes on where its last read ended finds a batch
	// starting at from; only one that starts inside a batch needs the
	// reverse look.
	start := batchKey(prefix, from)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	defer it.Close()
	if it.Seek(start); !it.ValidForPrefix(prefix) || binary.BigEndian.Uint64(it.Item().Key()[len(prefix):]) != from {
		rit := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, Reverse: true, PrefetchValues: false})
		rit.Seek(start)
		if rit.ValidForPrefix(prefix) {
			it.Seek(rit.Item().Key())
		}
		rit.Close()
	}
	size := 0
	want = from // the next offset the read must find
	// stop ends the read at offsets [at, to) it cannot return (to 0:
	// unknown): what was read so far, or the error that names them.
	stop = func(at, to uint64, cause error) ([]Message, error) {
		if len(out) > 0 {
			return out, nil
		}
		txn := st.v.s.readTxn(0) // a quarantine holds for every view
		defer txn.Discard()
		if gf, gt, ok := gapAt(txn, vol, name, topic, part, want); ok {
			return nil, &GapError{Path: st.path, Topic: topic, Partition: part, From: gf, To: gt}
		}
		return nil, &CorruptError{Path: st.path, Topic: topic, Partition: part, From: at, To: to, Err: cause}
	}
	first := true
	for ; it.ValidForPrefix(prefix); it.Next() {
		item := it.Item()
		base := binary.BigEndian.Uint64(item.Key()[len(prefix):])
		if base > want {
			return stop(want, base, fmt.Errorf("no batch holds offsets %d-%d", want, base-1))
		}
		if base < want && !first {
			return stop(want, 0, fmt.Errorf("the batch found next starts at %d, before %d", base, want))
		}
		first = false
		val, err := item.ValueCopy(nil)
		var msgs []Message
		if err == nil {
			msgs, err = decodeBatch(val, base, part)
		}
		if err != nil {
			to := uint64(0)
			if it.Next(); it.ValidForPrefix(prefix) {
				to = binary.BigEndian.Uint64(it.Item().Key()[len(prefix):])
			}
			if !errors.Is(err, ErrCorrupt) {
				err = fmt.Errorf("%w: %v", ErrCorrupt, err)
			}
			return stop(base, to, err)
		}
		for _, msg := range msgs {
			if msg.Offset < want {
				continue
			}
			if len(out) >= opts.Limit || (len(out) > 0 && size+encodedSize(&msg) > opts.MaxBytes) {
				return out, nil
			}
			size += encodedSize(&msg)
			out = append(out, msg)
		}
		want = max(want, base+uint64(len(msgs)))
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	if len(out) == 0 && st.v.s.gapsMaybe.Load() {
		// Past the last batch: a quarantine may reach further.
		rt := st.v.s.readTxn(0)
		defer rt.Discard()
		if gf, gt, ok := gapAt(rt, vol, name, topic, part, want); ok {
			return nil, &GapError{Path: st.path, Topic: topic, Partition: part, From: gf, To: gt}
		}
	}
	return out, nil
}

// batchAt reads the batch that starts at offset at by its key alone (a
// point read touches only the block that holds the key), for a read whose
// iterator could not pass damage that lies beyond the batch.
func (st *Stream) batchAt(prefix []byte, at uint64, part int) (msgs []Message, ok bool) {
	defer func() {
		if recover() != nil {
			msgs, ok = nil, false
		}
	}()
	txn := st.v.txn()
	defer txn.Discard()
	item, err := txn.Get(batchKey(prefix, at))
	if err != nil {
		return nil, false
	}
	val, err := item.ValueCopy(nil)
	if err != nil {
		return nil, false
	}
	msgs, err = decodeBatch(val, at, part)
	return msgs, err == nil && len(msgs) > 0
}

// ReadPast is Read that steps over what the reader cannot have instead of
// failing on it: offsets below the low-water mark (removed by retention or
// a full volume) and quarantined ranges. start is where the messages
// begin: start-from offsets were stepped over, which the caller reports
// (Consumer does, as Batch.Lost). Damage that was not quarantined is still
// an error.
func (st *Stream) ReadPast(ctx context.Context, topic string, part int, from uint64, opts ReadOptions) (msgs []Message, start uint64, err error) {
	start = from
	for range 1 << 16 {
		msgs, err = st.Read(ctx, topic, part, start, opts)
		var gap *GapError
		switch {
		case errors.Is(err, ErrTrimmed):
			low, _, berr := st.Bounds(ctx, topic, part)
			if berr != nil {
				return nil, start, berr
			}
			if low <= start {
				return nil, start, err
			}
			start = low
		case errors.As(err, &gap) && gap.To > start:
			start = gap.To
		default:
			return msgs, start, err
		}
	}
	return nil, start, err
}

// ReadWait is Read that, when there is nothing at from yet, blocks until a
// commit appends to the partition or ctx ends.
func (st *Stream) ReadWait(ctx context.Context, topic string, part int, from uint64, opts ReadOptions) ([]Message, error) {
	for {
		ch := st.v.s.notifyChan(partID(st.path, topic, part))
		msgs, err := st.Read(ctx, topic, part, from, opts)
		if err != nil || len(msgs) > 0 {
			return msgs, err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Changed returns a channel closed at the next commit that appends to any
// topic of the stream. Take it before looking for data, then wait on it.
func (st *Stream) Changed() <-chan struct{} { return st.v.s.notifyChan(st.path) }

// Topics lists the stream's topics with the given prefix, in order, after
// the topic after (for paging), at most limit (default 1000).
func (st *Stream) Topics(ctx context.Context, prefix, after string, limit int) ([]string, error) {
	if limit <= 0 {
		limit = 1000
	}
	txn := st.v.txn()
	defer txn.Discard()
	_, vol, name, err := st.v.object(txn, st.path, KindStream)
	if err != nil {
		return nil, err
	}
	base := objKey(vol, kindTopic, name, "")
	pfx := append(append([]byte(nil), base...), prefix...)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: pfx, PrefetchValues: false})
	defer it.Close()
	seek := pfx
	if after != "" {
		seek = append(append(append([]byte(nil), base...), after...), 0)
		if bytes.Compare(seek, pfx) < 0 {
			seek = pfx
		}
	}
	var out []string
	for it.Seek(seek); it.ValidForPrefix(pfx) && len(out) < limit; it.Next() {
		out = append(out, string(it.Item().Key()[len(base):]))
	}
	return out, nil
}

// AllTopics lists every topic of the stream, in order: for streams of a
// few topics (one per node, say); page with Topics through many.
func (st *Stream) AllTopics(ctx context.Context) ([]string, error) {
	var out []string
	after := ""
	for {
		page, err := st.Topics(ctx, "", after, 1000)
		if err != nil {
			return nil, err
		}
		out = append(out, page...)
		if len(page) < 1000 {
			return out, nil
		}
		after = page[len(page)-1]
	}
}

// SetCursor durably records that consumer group has consumed topic's
// partition up to (not including) offset.
func (st *Stream) SetCursor(ctx context.Context, group, topic string, part int, offset uint64) error {
	if err := checkName("group", group); err != nil {
		return err
	}
	if err := checkTopic(topic); err != nil {
		return err
	}
	if st.v.ts != 0 {
		return ErrReadOnly
	}
	return st.v.s.do(ctx, 64, false, func(w *wtx) error { return w.setCursor(st.path, group, topic, part, offset) })
}

// setCursor records group's cursor of topic's partition of stream path in
// the transaction.
func (w *wtx) setCursor(path, group, topic string, part int, offset uint64) error {
	m, vol, name, err := w.object(path, KindStream)
	if err != nil {
		return err
	}
	if part < 0 || part >= m.Partitions {
		return fmt.Errorf("%w: %s has %d partitions", ErrBadPartition, path, m.Partitions)
	}
	return w.put(vol, cursorKey(vol, name, group, topic, part), binary.BigEndian.AppendUint64(nil, offset))
}

// Cursor returns the group's recorded offset; ok is false if it has none.
func (st *Stream) Cursor(ctx context.Context, group, topic string, part int) (offset uint64, ok bool, err error) {
	txn := st.v.txn()
	defer txn.Discard()
	_, vol, name, err := st.v.object(txn, st.path, KindStream)
	if err != nil {
		return 0, false, err
	}
	item, err := txn.Get(cursorKey(vol, name, group, topic, part))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	err = item.Value(func(v []byte) error {
		if len(v) != 8 {
			return fmt.Errorf("%w: cursor of %d bytes", ErrCorrupt, len(v))
		}
		offset = binary.BigEndian.Uint64(v)
		return nil
	})
	return offset, err == nil, err
}

func iterKeys(prefix []byte) badger.IteratorOptions {
	return badger.IteratorOptions{Prefix: prefix, PrefetchValues: false}
}
