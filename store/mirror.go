package store

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/dgraph-io/badger/v4"
)

// A volume mirror is updated in place but shown all at once. Its changes
// are written at one commit timestamp (the mirror's publish timestamp)
// far above the store's clock, in as many transactions as they need, so
// no reader sees them; Publish then moves the clock past that timestamp
// in one commit, and every change appears together. Staged changes
// survive a restart: a mirror update of the same volume resumes where it
// stopped.
//
// Keys:
//
//	"N" vol   pending mirror, at the store's clock: {id, tpub}
//	"M" vol   mirror progress, at tpub: {id, tpub, pos, usage, entries}
//	"C"       the store's clock while a mirror is pending (the last
//	          ordinary commit timestamp), since the highest version in the
//	          database is then a staged one
const mirrorGap = 1 << 40

func pendingKey(vol string) []byte    { return []byte("N" + vol) }
func lastMirrorKey(vol string) []byte { return []byte("Q" + vol) }
func progressKey(vol string) []byte   { return []byte("M" + vol) }

var clockKey = []byte("C")

// MirrorProgress says how far a mirror update of a volume has come.
type MirrorProgress struct {
	// ID names the update (for example the source's snapshot); a new
	// update with another ID while one is pending is refused.
	ID string `json:"id"`
	// Pos is the last key applied (relative to the volume); a sender
	// resumes after it.
	Pos     []byte `json:"pos,omitempty"`
	Entries int64  `json:"entries"`
	TPub    uint64 `json:"tpub"`
	Usage   int64  `json:"usage"` // change of the volume's bytes when published
}

// Mirror stages one update of a mirrored volume.
type Mirror struct {
	s   *Store
	vol string
	mu  sync.Mutex
	p   MirrorProgress
}

// BeginMirror starts, or resumes, the update id of volume vol. The volume
// should be written by its mirror only: an ordinary write to a key the
// mirror also changes is superseded when the mirror is published.
func (s *Store) BeginMirror(ctx context.Context, vol, id string) (*Mirror, error) {
	if err := checkName("mirror id", id); err != nil {
		return nil, err
	}
	m := &Mirror{s: s, vol: vol}
	err := s.do(ctx, 256, false, func(w *wtx) error {
		if _, err := w.volume(vol); err != nil {
			return err
		}
		raw, err := w.get(pendingKey(vol))
		if err != nil {
			return err
		}
		if raw != nil {
			var p MirrorProgress
			if err := json.Unmarshal(raw, &p); err != nil {
				return fmt.Errorf("%w: pending mirror of /%s: %v", ErrCorrupt, vol, err)
			}
			if p.ID != id {
				return fmt.Errorf("%w: /%s has mirror update %q pending, not %q", ErrExists, vol, p.ID, id)
			}
			m.p = p
			return nil
		}
		m.p = MirrorProgress{ID: id, TPub: w.ts + mirrorGap}
		b, _ := json.Marshal(MirrorProgress{ID: id, TPub: m.p.TPub})
		w.mirrorPending = +1
		return w.set("", pendingKey(vol), b, 0)
	})
	if err != nil {
		return nil, err
	}
	// Progress staged before a restart is read at the publish timestamp.
	m.p = s.progress(vol, m.p)
	return m, nil
}

// Progress is how far the update has come.
func (m *Mirror) Progress() MirrorProgress {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.p
}

// Apply stages entries (in key order, after Progress().Pos) durably. They
// stay invisible until Publish.
func (m *Mirror) Apply(ctx context.Context, entries []DeltaEntry) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.apply(entries)
}

func (m *Mirror) apply(entries []DeltaEntry) error {
	if len(entries) == 0 {
		return nil
	}
	if free, err := m.s.freeBytes(); err == nil && m.s.cfg.MinFreeBytes > 0 && free < m.s.cfg.MinFreeBytes {
		return fmt.Errorf("%w: %d bytes free, %d required", ErrDiskFull, free, m.s.cfg.MinFreeBytes)
	}
	p := m.p
	pfx := volPrefix(m.vol)
	txn := m.s.db.NewTransactionAt(p.TPub, true)
	defer txn.Discard()
	for _, e := range entries {
		key := append(append([]byte(nil), pfx...), e.Key...)
		old := 0
		if item, err := txn.Get(key); err == nil {
			old = entrySize(item)
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return fmt.Errorf("store: mirror read: %w", err)
		}
		var err error
		if e.Delete {
			if old > 0 {
				err = txn.Delete(key)
				p.Usage -= int64(old)
			}
		} else {
			err = txn.Set(key, e.Value)
			p.Usage += int64(len(key)+len(e.Value)) - int64(old)
		}
		if err != nil {
			return fmt.Errorf("store: mirror write: %w", err)
		}
		p.Pos = e.Key
		p.Entries++
	}
	b, _ := json.Marshal(p)
	if err := txn.Set(progressKey(m.vol), b); err != nil {
		return fmt.Errorf("store: mirror write: %w", err)
	}
	if err := txn.CommitAt(p.TPub, nil); err != nil {
		return fmt.Errorf("store: mirror commit: %w", err)
	}
	// Staged outside the writer and its log: Badger syncs it (and every
	// commit before it).
	if err := m.s.db.Sync(); err != nil {
		return m.s.syncFailed(err)
	}
	m.p = p
	return nil
}

// Publish shows every staged change of the update at once: the store's
// clock moves past the publish timestamp in one commit.
func (m *Mirror) Publish(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.publish(ctx, false)
}

// AbandonMirror gives up the update of vol staged but not published, for
// one its source no longer holds: every key it staged gets its current
// value back at the update's timestamp, and the update is then published,
// so no reader sees any change and LastMirror stays. The next update
// starts afresh. Without a pending update it does nothing.
func (s *Store) AbandonMirror(ctx context.Context, vol string) error {
	p, ok, err := s.PendingMirror(vol)
	if err != nil || !ok {
		return err
	}
	m := &Mirror{s: s, vol: vol, p: p}
	m.mu.Lock()
	defer m.mu.Unlock()
	pfx := volPrefix(vol)
	staged := s.db.NewTransactionAt(p.TPub, false)
	defer staged.Discard()
	cur := s.readTxn(0)
	defer cur.Discard()
	it := staged.NewIterator(badger.IteratorOptions{Prefix: pfx, AllVersions: true})
	defer it.Close()
	var restore []DeltaEntry
	size := 0
	flush := func() error {
		err := m.apply(restore)
		restore, size = restore[:0], 0
		return err
	}
	for it.Seek(pfx); it.ValidForPrefix(pfx); it.Next() {
		item := it.Item()
		if item.Version() != p.TPub {
			continue
		}
		e := DeltaEntry{Key: slices.Clone(item.Key()[len(pfx):])}
		switch old, err := cur.Get(item.Key()); {
		case errors.Is(err, badger.ErrKeyNotFound):
			e.Delete = true
		case err != nil:
			return fmt.Errorf("store: read: %w", err)
		default:
			if e.Value, err = old.ValueCopy(nil); err != nil {
				return fmt.Errorf("store: read: %w", err)
			}
		}
		restore = append(restore, e)
		if size += len(e.Key) + len(e.Value); size >= 4<<20 || len(restore) >= 1000 {
			if err := flush(); err != nil {
				return err
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	if err := flush(); err != nil {
		return err
	}
	return m.publish(ctx, true)
}

// publish moves the clock past the update's timestamp. An abandoned update
// (its staged keys restored) leaves LastMirror as it was.
func (m *Mirror) publish(ctx context.Context, abandoned bool) error {
	return m.s.do(ctx, 256, false, func(w *wtx) error {
		raw, err := w.get(pendingKey(m.vol))
		if err != nil {
			return err
		}
		if raw == nil {
			return fmt.Errorf("%w: no mirror update of /%s pending", ErrNotFound, m.vol)
		}
		if err := w.del("", pendingKey(m.vol), 0); err != nil {
			return err
		}
		if err := w.del("", progressKey(m.vol), 0); err != nil {
			return err
		}
		if w.ts <= m.p.TPub {
			w.ts = m.p.TPub + 1
		}
		w.usage[m.vol] += m.p.Usage
		w.mirrorPending = -1
		w.published = m.vol
		if abandoned {
			return w.audit("mirror.abandon", "/"+m.vol, map[string]any{"update": m.p.ID})
		}
		if err := w.set("", lastMirrorKey(m.vol), []byte(m.p.ID), 0); err != nil {
			return err
		}
		return w.audit("mirror.publish", "/"+m.vol, map[string]any{"update": m.p.ID, "entries": m.p.Entries})
	})
}

// clockAfterMirrors corrects the clock at open: while a mirror update is
// pending, the highest version is a staged one, and the clock is the
// ordinary commit timestamp kept under "C".
func (s *Store) clockAfterMirrors() (pending int, err error) {
	txn := s.db.NewTransactionAt(s.ts.Load(), false)
	defer txn.Discard()
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte("N")})
	var lowest uint64
	for it.Seek([]byte("N")); it.ValidForPrefix([]byte("N")); it.Next() {
		var p MirrorProgress
		if err := it.Item().Value(func(b []byte) error { return json.Unmarshal(b, &p) }); err != nil {
			it.Close()
			return 0, fmt.Errorf("%w: pending mirror: %v", ErrCorrupt, err)
		}
		if lowest == 0 || p.TPub < lowest {
			lowest = p.TPub
		}
		pending++
	}
	it.Close()
	if pending == 0 {
		return 0, nil
	}
	ct := s.db.NewTransactionAt(lowest-1, false)
	defer ct.Discard()
	item, err := ct.Get(clockKey)
	if err != nil {
		return 0, fmt.Errorf("store: clock: %w", err)
	}
	return pending, item.Value(func(b []byte) error {
		if len(b) != 8 {
			return fmt.Errorf("%w: clock of %d bytes", ErrCorrupt, len(b))
		}
		s.ts.Store(binary.BigEndian.Uint64(b))
		return nil
	})
}

// LastMirror is the id of the last mirror update published to vol, empty
// if none: a mirror's next update starts from there.
func (s *Store) LastMirror(vol string) (string, error) {
	txn := s.readTxn(0)
	defer txn.Discard()
	item, err := txn.Get(lastMirrorKey(vol))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("store: read: %w", err)
	}
	b, err := item.ValueCopy(nil)
	return string(b), err
}

// PendingMirror is the mirror update of vol staged but not published, if
// any, and how far it has come.
func (s *Store) PendingMirror(vol string) (MirrorProgress, bool, error) {
	txn := s.readTxn(0)
	defer txn.Discard()
	item, err := txn.Get(pendingKey(vol))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return MirrorProgress{}, false, nil
	}
	if err != nil {
		return MirrorProgress{}, false, fmt.Errorf("store: read: %w", err)
	}
	var p MirrorProgress
	if err := item.Value(func(b []byte) error { return json.Unmarshal(b, &p) }); err != nil {
		return p, false, fmt.Errorf("%w: pending mirror of /%s: %v", ErrCorrupt, vol, err)
	}
	return s.progress(vol, p), true, nil
}

// progress returns the staged progress of the pending update p of vol,
// which is read at the update's publish timestamp; p itself if none.
func (s *Store) progress(vol string, p MirrorProgress) MirrorProgress {
	txn := s.db.NewTransactionAt(p.TPub, false)
	defer txn.Discard()
	item, err := txn.Get(progressKey(vol))
	if err != nil {
		return p
	}
	var q MirrorProgress
	if item.Value(func(b []byte) error { return json.Unmarshal(b, &q) }) == nil && q.ID == p.ID && q.TPub == p.TPub {
		return q
	}
	return p
}

// forgetVolume drops what the store keeps in memory about the objects of
// vol (metadata, partition heads): a published mirror changed them behind
// the writer's back. Writer only.
func (s *Store) forgetVolume(vol string) {
	pfx := "/" + vol + "/"
	for id := range s.heads {
		if strings.HasPrefix(id, pfx) {
			delete(s.heads, id)
		}
	}
	s.mu.Lock()
	for p := range s.metas {
		if strings.HasPrefix(p, pfx) {
			delete(s.metas, p)
		}
	}
	s.metaGen++
	s.mu.Unlock()
}
