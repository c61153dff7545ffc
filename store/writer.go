package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// wop is one write request. fn runs in the writer goroutine against the
// group's transaction; it does its checks before its first write, and must
// be safe to run again (a group is replayed without a request that failed
// after writing).
type wop struct {
	fn    func(w *wtx) error
	size  int
	flags opFlags
	err   error
	done  chan struct{}
}

type opFlags uint8

const (
	// freesSpace: deletes and trims may proceed on a nearly full disk.
	freesSpace opFlags = 1 << iota
	// appendOnly: the request only appends to streams. It needs nothing
	// from the store but object metadata and partition heads, which the
	// writer also knows for a commit still in flight, so it may be staged
	// while the previous group is being written.
	appendOnly
)

// do submits fn to the writer and waits until it is durable or failed.
func (s *Store) do(ctx context.Context, size int, flags opFlags, fn func(w *wtx) error) error {
	if s.closed.Load() {
		return ErrClosed
	}
	op := &wop{fn: fn, size: size, flags: flags, done: make(chan struct{})}
	select {
	case s.ops <- op:
	case <-s.closing:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	// Once submitted, the result is awaited even if ctx ends: the caller
	// must not believe a write failed that may be durable.
	select {
	case <-op.done:
		return op.err
	case <-s.closing:
		<-op.done
		return op.err
	}
}

func (s *Store) writer() {
	defer s.wg.Done()
	group := make([]*wop, 0, maxGroupOps)
	for {
		group = group[:0]
		select {
		case op := <-s.ops:
			group = append(group, op)
		case <-s.closing:
			s.settle()
			s.drain()
			return
		}
		size := group[0].size
	gather:
		for len(group) < maxGroupOps && size < s.groupBytes {
			select {
			case op := <-s.ops:
				group = append(group, op)
				size += op.size
			default:
				break gather
			}
		}
		s.commitGroup(group)
	}
}

// drain fails requests still queued at close.
func (s *Store) drain() {
	for {
		select {
		case op := <-s.ops:
			op.err = ErrClosed
			close(op.done)
		default:
			return
		}
	}
}

// commitGroup runs the group's requests in one transaction and commits it
// with one fsync. A request that fails before writing is dropped from the
// group; one that fails after writing makes the group run again without it.
func (s *Store) commitGroup(group []*wop) {
	finish := func(op *wop, err error) {
		op.err = err
		close(op.done)
	}
	live := group
	if s.cfg.MinFreeBytes > 0 {
		free, err := s.freeBytes()
		if err != nil {
			for _, op := range group {
				finish(op, fmt.Errorf("store: statfs: %w", err))
			}
			return
		}
		live = live[:0:0]
		for _, op := range group {
			limit := s.cfg.MinFreeBytes
			if op.flags&freesSpace != 0 {
				limit /= 2
			}
			if free < limit {
				finish(op, fmt.Errorf("%w: %d bytes free, %d required", ErrDiskFull, free, limit))
				continue
			}
			live = append(live, op)
		}
	}
	s.runGroup(live)
}

// runGroup runs ops in one transaction and commits it. A request that
// fails after writing is dropped and the rest run again; when the
// transaction grows too big, the requests before the one that did not fit
// commit first.
func (s *Store) runGroup(queue []*wop) {
	for len(queue) > 0 {
		if queue[0].flags&appendOnly == 0 {
			s.settle() // fresh reads; a failure there concerns only its own group
		}
		w := s.newWtx()
		var ok []*wop
		var failErr error
		n := 0
		for ; n < len(queue); n++ {
			op := queue[n]
			if w.prev != nil && op.flags&appendOnly == 0 {
				break // needs fresh reads: it goes into the next group
			}
			before := w.writes
			err := op.fn(w)
			if err == nil {
				ok = append(ok, op)
				continue
			}
			if w.writes == before {
				op.err = err
				close(op.done)
				continue
			}
			failErr = err
			break
		}
		if n == len(queue) || failErr == nil {
			w.commit(ok)
			queue = queue[n:]
			continue
		}
		w.txn.Discard()
		if errors.Is(failErr, badger.ErrTxnTooBig) && len(ok) > 0 {
			// The writes of ok stand in a discarded transaction: run them
			// again on their own.
			s.runGroup(ok)
			queue = queue[n:]
			continue
		}
		queue[n].err = failErr
		close(queue[n].done)
		queue = append(ok, queue[n+1:]...)
	}
}

// wtx is the state of one group: the transaction and the changes to the
// store's memory that take effect only if the commit succeeds.
type wtx struct {
	s      *Store
	prev   *inflight // the group being written while this one is staged; nil when none
	txn    *badger.Txn
	ts     uint64
	now    time.Time
	writes int

	heads   map[string]*partState
	pending map[string]*pendingPart
	order   []*pendingPart
	usage   map[string]int64
	metas   map[string]*Info // nil value: deleted
	vols    map[string]*VolumeInfo
	snaps   map[string]uint64 // 0: deleted
	wake    map[string]struct{}
}

func (s *Store) newWtx() *wtx {
	if inf := s.prev; inf != nil {
		select {
		case <-inf.done:
			s.settle()
		default:
		}
	}
	last := s.ts.Load()
	ts := last + 1
	if s.prev != nil {
		ts = s.prev.w.ts + 1
	}
	return &wtx{
		s:       s,
		prev:    s.prev,
		txn:     s.db.NewTransactionAt(last, true),
		ts:      ts,
		now:     s.cfg.Now(),
		heads:   map[string]*partState{},
		pending: map[string]*pendingPart{},
		usage:   map[string]int64{},
		metas:   map[string]*Info{},
		vols:    map[string]*VolumeInfo{},
		snaps:   map[string]uint64{},
		wake:    map[string]struct{}{},
	}
}

// set writes key; oldSize is the size (key and value) of the entry it
// replaces, for the volume's usage.
func (w *wtx) set(vol string, key, val []byte, oldSize int) error {
	w.writes++
	if err := w.txn.Set(key, val); err != nil {
		return fmt.Errorf("store: write: %w", err)
	}
	if vol != "" {
		w.usage[vol] += int64(len(key)+len(val)) - int64(oldSize)
	}
	return nil
}

func (w *wtx) del(vol string, key []byte, oldSize int) error {
	w.writes++
	if err := w.txn.Delete(key); err != nil {
		return fmt.Errorf("store: delete: %w", err)
	}
	if vol != "" {
		w.usage[vol] -= int64(oldSize)
	}
	return nil
}

// sizeOf is the size (key and value) of key's current entry, 0 if none.
func (w *wtx) sizeOf(key []byte) (int, error) {
	item, err := w.txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("store: read: %w", err)
	}
	return len(key) + int(item.ValueSize()), nil
}

// put writes key, accounting for the entry it replaces.
func (w *wtx) put(vol string, key, val []byte) error {
	old, err := w.sizeOf(key)
	if err != nil {
		return err
	}
	return w.set(vol, key, val, old)
}

// remove deletes key if it exists.
func (w *wtx) remove(vol string, key []byte) error {
	old, err := w.sizeOf(key)
	if err != nil || old == 0 {
		return err
	}
	return w.del(vol, key, old)
}

// get reads key as seen by this group (committed data plus its own writes).
// It returns nil, nil when the key does not exist.
func (w *wtx) get(key []byte) ([]byte, error) {
	item, err := w.txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("store: read: %w", err)
	}
	return item.ValueCopy(nil)
}

// used is the volume's usage as seen by this group.
func (w *wtx) used(vol string) int64 {
	w.s.mu.RLock()
	u := w.s.usage[vol]
	if w.prev != nil && !w.prev.applied {
		u += w.prev.w.usage[vol]
	}
	w.s.mu.RUnlock()
	return u + w.usage[vol]
}

// checkQuota refuses adding n bytes to vol past its quota.
func (w *wtx) checkQuota(vol string, n int) error {
	vi, err := w.volume(vol)
	if err != nil {
		return err
	}
	if vi.Quota > 0 {
		if u := w.used(vol); u+int64(n) > vi.Quota {
			return fmt.Errorf("%w: /%s uses %d of %d bytes, the write needs %d more", ErrQuotaExceeded, vol, u, vi.Quota, n)
		}
	}
	return nil
}

// commit writes the group's batches and submits its transaction; ops are
// answered when it is durable. The transaction is written while the
// writer goes on staging the next group (appends only, see appendOnly),
// and a commit waits for the one before it, so they land in order.
func (w *wtx) commit(ops []*wop) {
	s := w.s
	if len(ops) == 0 {
		w.txn.Discard()
		return
	}
	fail := func(err error) {
		w.txn.Discard()
		for _, op := range ops {
			op.err = err
			close(op.done)
		}
	}
	for _, p := range w.order {
		if err := w.flushPart(p); err != nil {
			fail(err)
			return
		}
	}
	if w.prev != nil {
		if err := s.settle(); err != nil {
			fail(fmt.Errorf("store: an earlier commit failed: %w", err))
			return
		}
	}
	for vol, d := range w.usage {
		if d == 0 {
			continue
		}
		u := max(w.used(vol), 0)
		if err := w.txn.Set(usageKey(vol), binary.BigEndian.AppendUint64(nil, uint64(u))); err != nil {
			fail(fmt.Errorf("store: write: %w", err))
			return
		}
	}
	inf := &inflight{w: w, done: make(chan struct{})}
	s.prev = inf
	if err := w.txn.CommitAt(w.ts, func(err error) { s.committed(inf, ops, err) }); err != nil {
		panic(err) // CommitAt with a callback reports errors through it
	}
}

// inflight is a group whose transaction has been handed to Badger.
type inflight struct {
	w       *wtx
	done    chan struct{}
	err     error
	applied bool // under s.mu: its changes are in the store's memory
}

// committed runs when Badger has written a group (or failed to): the
// store's memory takes the group's changes and its callers are answered.
func (s *Store) committed(inf *inflight, ops []*wop, err error) {
	w := inf.w
	if err != nil {
		err = fmt.Errorf("store: commit: %w", err)
	} else {
		s.ts.Store(w.ts)
		s.mu.Lock()
		for vol, d := range w.usage {
			s.usage[vol] = max(s.usage[vol]+d, 0)
		}
		if len(w.metas) > 0 {
			s.metaGen++
		}
		for p, m := range w.metas {
			if m == nil {
				delete(s.metas, p)
			} else {
				s.metas[p] = m
			}
		}
		for name, v := range w.vols {
			s.volumes[name] = v
		}
		for k, ts := range w.snaps {
			if ts == 0 {
				delete(s.snapTS, k)
			} else {
				s.snapTS[k] = ts
			}
		}
		inf.applied = true
		s.mu.Unlock()
		s.wake(w.wake)
	}
	inf.err = err
	for _, op := range ops {
		op.err = err
		close(op.done)
	}
	close(inf.done)
}

// settle waits for the group in flight, if any, and takes its partition
// heads into the writer's cache. If it failed, the cache is dropped: the
// offsets it handed out never became durable.
func (s *Store) settle() error {
	inf := s.prev
	if inf == nil {
		return nil
	}
	<-inf.done
	s.prev = nil
	if inf.err != nil {
		clear(s.heads)
		return inf.err
	}
	for k, h := range inf.w.heads {
		if len(s.heads) >= maxHeadCache {
			for k := range s.heads { // evict an arbitrary entry
				delete(s.heads, k)
				break
			}
		}
		s.heads[k] = h
	}
	return nil
}
