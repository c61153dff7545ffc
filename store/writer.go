package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// wop is one write request. fn runs in the writer goroutine against the
// group's transaction; it does its checks before its first write, and must
// be safe to run again (a group is replayed without a request that failed
// after writing).
type wop struct {
	fn         func(w *wtx) error
	size       int
	freesSpace bool // deletes and trims may proceed on a nearly full disk
	err        error
	done       chan struct{}
}

// do submits fn to the writer and waits until it is durable or failed.
func (s *Store) do(ctx context.Context, size int, freesSpace bool, fn func(w *wtx) error) error {
	if s.closed.Load() {
		return ErrClosed
	}
	op := &wop{fn: fn, size: size, freesSpace: freesSpace, done: make(chan struct{})}
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

// commitFailed stops all writes when a commit failed because Badger could
// not create a memtable: Badger is then left without one, and the next
// write would crash the process inside it. Writes are refused with
// ErrDiskFull until the store is opened again.
func (s *Store) commitFailed(err error) {
	if !strings.Contains(err.Error(), "mem table") {
		return
	}
	e := fmt.Errorf("%w: the database could not create a file (%v); writes stop until the store is reopened with space and inodes free", ErrDiskFull, err)
	s.broken.CompareAndSwap(nil, &e)
	s.log.Error("writes stopped: the database cannot create a memtable", "err", err)
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
	if err := s.broken.Load(); err != nil {
		for _, op := range group {
			finish(op, *err)
		}
		return
	}
	if s.cfg.MinFreeBytes > 0 {
		sp, err := s.cfg.Statfs(s.cfg.Dir)
		if err != nil {
			for _, op := range group {
				finish(op, fmt.Errorf("store: statfs: %w", err))
			}
			return
		}
		live = live[:0:0]
		for _, op := range group {
			if err := s.checkSpace(sp, op.freesSpace); err != nil {
				finish(op, err)
				continue
			}
			live = append(live, op)
		}
	}
	start := time.Now()
	s.runGroup(live)
	if m := s.metrics.Load(); m != nil && len(live) > 0 {
		size := 0
		for _, op := range live {
			size += op.size
		}
		m.observeCommit(time.Since(start), len(live), size)
	}
}

// runGroup runs ops in one transaction and commits it. A request that
// fails after writing is dropped and the rest run again; when the
// transaction grows too big, the requests before the one that did not fit
// commit first.
func (s *Store) runGroup(queue []*wop) {
	for len(queue) > 0 {
		w := s.newWtx()
		var ok []*wop
		var failErr error
		n := 0
		for ; n < len(queue); n++ {
			op := queue[n]
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
		if n == len(queue) {
			err := w.commit()
			for _, op := range ok {
				op.err = err
				close(op.done)
			}
			return
		}
		w.txn.Discard()
		if errors.Is(failErr, badger.ErrTxnTooBig) && len(ok) > 0 {
			s.runGroup(ok)
			queue = queue[n:]
			continue
		}
		queue[n].err = failErr
		close(queue[n].done)
		queue = append(ok, queue[n+1:]...)
	}
}

// durable makes the group durable and commits it to the database: its
// record in the write-ahead log, one fdatasync, then the commit, which
// Badger keeps in memory and its memory-mapped files. Readers see it
// once the caller moves the store's timestamp.
func (w *wtx) durable() error {
	s := w.s
	l := s.wal
	if l == nil {
		return w.commitSynced()
	}
	seq := l.seq + 1
	if err := w.txnSet(walKey, binary.BigEndian.AppendUint64(nil, seq)); err != nil {
		return err
	}
	rec := l.encode(seq, w.ts, w.log)
	direct := false
	if !l.fits(len(rec)) {
		// The log is full: what it holds goes to disk with the
		// database, and it starts again. A group larger than the whole
		// log is made durable by the database alone.
		if err := s.db.Sync(); err != nil {
			return s.syncFailed(err)
		}
		l.off = 0
		direct = !l.fits(len(rec))
	}
	if !direct {
		synced, err := l.write(rec)
		if !synced {
			return s.syncFailed(err)
		}
		if err != nil {
			return err
		}
	}
	l.seq = seq
	if err := w.txn.CommitAt(w.ts, nil); err != nil {
		// The record is on disk and is replayed at the next open: the
		// writes were not acknowledged, and no later group may be
		// numbered as if they had not happened.
		s.commitFailed(err)
		e := fmt.Errorf("store: commit: %w", err)
		s.broken.CompareAndSwap(nil, &e)
		return e
	}
	if direct {
		if err := s.db.Sync(); err != nil {
			return s.syncFailed(err)
		}
		l.off = 0
	}
	return nil
}

// commitSynced commits the group with Badger's own syncs, for a store
// opened without the write-ahead log (tests compare the two).
func (w *wtx) commitSynced() error {
	if err := w.txn.CommitAt(w.ts, nil); err != nil {
		w.s.commitFailed(err)
		return fmt.Errorf("store: commit: %w", err)
	}
	return nil
}

// syncFailed stops all writes after a failed sync: the kernel may have
// dropped the data it could not write, and what follows cannot be
// trusted to be on disk. Writes are refused until the store is opened
// again (which replays what the log holds).
func (s *Store) syncFailed(err error) error {
	e := fmt.Errorf("store: sync failed, writes stop until the store is reopened: %w", err)
	s.broken.CompareAndSwap(nil, &e)
	s.log.Error("writes stopped: a sync failed", "err", err)
	return e
}

// wtx is the state of one group: the transaction and the changes to the
// store's memory that take effect only if the commit succeeds.
type wtx struct {
	s      *Store
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

	log []walEntry // the transaction's writes, for the write-ahead log

	floorStamped  bool   // the clock floor is in the transaction
	mirrorPending int    // +1 when a mirror update begins, -1 when published
	published     string // volume whose mirror update this group publishes
}

func (s *Store) newWtx() *wtx {
	last := s.ts.Load()
	return &wtx{
		s:       s,
		txn:     s.db.NewTransactionAt(last, true),
		ts:      last + 1,
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
	if err := w.txnSet(key, val); err != nil {
		return err
	}
	if vol != "" {
		w.usage[vol] += int64(len(key)+len(val)) - int64(oldSize)
	}
	return nil
}

// txnSet writes key in the transaction and its write-ahead log record.
// key and val must not change until the group is committed.
func (w *wtx) txnSet(key, val []byte) error {
	if err := w.txn.Set(key, val); err != nil {
		return fmt.Errorf("store: write: %w", err)
	}
	w.log = append(w.log, walEntry{key: key, val: val})
	return nil
}

func (w *wtx) del(vol string, key []byte, oldSize int) error {
	w.writes++
	if err := w.txn.Delete(key); err != nil {
		return fmt.Errorf("store: delete: %w", err)
	}
	w.log = append(w.log, walEntry{del: true, key: key})
	if vol != "" {
		w.usage[vol] -= int64(oldSize)
	}
	return nil
}

// sweep deletes, in key order, the keys under pfx, but those skip says to
// keep, until stop says a key ends the sweep or limit keys are deleted
// (0: no limit); it returns how many it deleted. skip and stop may be nil.
func (w *wtx) sweep(vol string, pfx []byte, limit int, skip, stop func(key []byte) bool) (int, error) {
	it := w.txn.NewIterator(badger.IteratorOptions{Prefix: pfx, PrefetchValues: false})
	var keys [][]byte
	var sizes []int
	for it.Seek(pfx); it.ValidForPrefix(pfx) && (limit == 0 || len(keys) < limit); it.Next() {
		k := it.Item().Key()
		if stop != nil && stop(k) {
			break
		}
		if skip == nil || !skip(k) {
			keys = append(keys, it.Item().KeyCopy(nil))
			sizes = append(sizes, entrySize(it.Item()))
		}
	}
	it.Close()
	for i, k := range keys {
		if err := w.del(vol, k, sizes[i]); err != nil {
			return i, err
		}
	}
	return len(keys), nil
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
	return entrySize(item), nil
}

// entrySize is the size of item's key and value, the unit of volume usage.
// Badger's ValueSize only estimates a value kept in its value log, so the
// value's length is taken from the value itself (a slice of the log's
// memory map, not a copy); the estimate serves only if that read fails, and
// the read that needs the value reports the failure.
func entrySize(item *badger.Item) int {
	n := int(item.ValueSize())
	item.Value(func(v []byte) error {
		n = len(v)
		return nil
	})
	return len(item.Key()) + n
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
	w.s.mu.RUnlock()
	return u + w.usage[vol]
}

// checkQuota refuses adding n bytes to vol past its quota, or, if the
// volume drops its oldest data, makes room first. A drop frees a
// thirty-second of the quota more than needed, so that the next writes do
// not each have to drop.
func (w *wtx) checkQuota(vol string, n int) error {
	vi, err := w.volume(vol)
	if err != nil {
		return err
	}
	if vi.Quota <= 0 {
		return nil
	}
	u := w.used(vol)
	if u+int64(n) > vi.Quota && vi.DropOldest {
		if err := w.dropOldest(vol, u+int64(n)-vi.Quota+vi.Quota/32); err != nil {
			return err
		}
		u = w.used(vol)
	}
	if u+int64(n) > vi.Quota {
		return fmt.Errorf("%w: /%s uses %d of %d bytes, the write needs %d more", ErrQuotaExceeded, vol, u, vi.Quota, n)
	}
	return nil
}

func (w *wtx) commit() error {
	defer w.txn.Discard()
	for _, p := range w.order {
		if err := w.flushPart(p); err != nil {
			return err
		}
	}
	for vol, d := range w.usage {
		if d == 0 {
			continue
		}
		u := w.used(vol)
		if u < 0 {
			u = 0
		}
		if err := w.txnSet(usageKey(vol), binary.BigEndian.AppendUint64(nil, uint64(u))); err != nil {
			return err
		}
	}
	if w.s.mirrors+w.mirrorPending > 0 {
		// A mirror update is staged above the clock: keep the clock.
		if err := w.txnSet(clockKey, binary.BigEndian.AppendUint64(nil, w.ts)); err != nil {
			return err
		}
	}
	if err := w.durable(); err != nil {
		return err
	}
	s := w.s
	s.ts.Store(w.ts)
	s.mirrors += w.mirrorPending
	if w.published != "" {
		s.forgetVolume(w.published)
	}
	for k, h := range w.heads {
		if len(s.heads) >= maxHeadCache {
			for k := range s.heads { // evict an arbitrary entry
				delete(s.heads, k)
				break
			}
		}
		s.heads[k] = h
	}
	s.mu.Lock()
	s.logChanges(w.order)
	for vol, d := range w.usage {
		s.usage[vol] += d
		if s.usage[vol] < 0 {
			s.usage[vol] = 0
		}
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
	s.mu.Unlock()
	s.wake(w.wake)
	return nil
}
