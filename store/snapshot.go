package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Snapshot is a named, read-only point in time of a volume.
type Snapshot struct {
	Name    string    `json:"name"`
	Volume  string    `json:"volume"`
	TS      uint64    `json:"ts"`
	Created time.Time `json:"created"`
}

func decodeSnapshot(b []byte) (Snapshot, error) {
	var sn Snapshot
	if err := json.Unmarshal(b, &sn); err != nil {
		return sn, fmt.Errorf("%w: snapshot record: %v", ErrCorrupt, err)
	}
	return sn, nil
}

// CreateSnapshot names the current state of volume vol.
func (s *Store) CreateSnapshot(ctx context.Context, vol, name string) (Snapshot, error) {
	if err := checkName("snapshot", name); err != nil {
		return Snapshot{}, err
	}
	var sn Snapshot
	err := s.do(ctx, 256, false, func(w *wtx) error {
		if _, err := w.volume(vol); err != nil {
			return err
		}
		if v, err := w.get(snapshotKey(vol, name)); err != nil {
			return err
		} else if v != nil {
			return fmt.Errorf("%w: snapshot %s of /%s", ErrExists, name, vol)
		}
		sn = Snapshot{Name: name, Volume: vol, TS: w.ts, Created: w.now.UTC()}
		b, _ := json.Marshal(sn)
		if err := w.set("", snapshotKey(vol, name), b, 0); err != nil {
			return err
		}
		w.snaps[vol+"\x00"+name] = w.ts
		return w.audit("snapshot.create", "/"+vol, map[string]any{"snapshot": name})
	})
	return sn, err
}

// DeleteSnapshot deletes a snapshot; its versions become garbage.
func (s *Store) DeleteSnapshot(ctx context.Context, vol, name string) error {
	return s.do(ctx, 256, true, func(w *wtx) error {
		if v, err := w.get(snapshotKey(vol, name)); err != nil {
			return err
		} else if v == nil {
			return fmt.Errorf("%w: snapshot %s of /%s", ErrNotFound, name, vol)
		}
		if err := w.del("", snapshotKey(vol, name), 0); err != nil {
			return err
		}
		w.snaps[vol+"\x00"+name] = 0
		return w.audit("snapshot.delete", "/"+vol, map[string]any{"snapshot": name})
	})
}

// Snapshots lists a volume's snapshots, oldest first.
func (s *Store) Snapshots(ctx context.Context, vol string) ([]Snapshot, error) {
	if _, err := s.Volume(vol); err != nil {
		return nil, err
	}
	txn := s.readTxn(0)
	defer txn.Discard()
	pfx := snapshotPrefix(vol)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: pfx})
	defer it.Close()
	out := []Snapshot{}
	for it.Seek(pfx); it.ValidForPrefix(pfx); it.Next() {
		b, err := it.Item().ValueCopy(nil)
		if err != nil {
			return nil, err
		}
		sn, err := decodeSnapshot(b)
		if err != nil {
			return nil, err
		}
		out = append(out, sn)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].TS < out[j].TS })
	return out, nil
}

func (s *Store) snapshot(vol, name string) (Snapshot, error) {
	txn := s.readTxn(0)
	defer txn.Discard()
	item, err := txn.Get(snapshotKey(vol, name))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return Snapshot{}, fmt.Errorf("%w: snapshot %s of /%s", ErrNotFound, name, vol)
	}
	if err != nil {
		return Snapshot{}, err
	}
	b, err := item.ValueCopy(nil)
	if err != nil {
		return Snapshot{}, err
	}
	return decodeSnapshot(b)
}

// At returns a read-only view of the store as of snapshot name of vol.
// Objects of other volumes read through it show their state at the same
// moment.
func (s *Store) At(vol, name string) (*View, error) {
	sn, err := s.snapshot(vol, name)
	if err != nil {
		return nil, err
	}
	return &View{s: s, ts: sn.TS, snapshot: name}, nil
}

// DeltaEntry is one change of a volume between two snapshots: Key is
// relative to the volume (the same on every node), Value the new value
// unless Delete.
type DeltaEntry struct {
	Key    []byte
	Value  []byte
	Delete bool
}

// Delta calls fn, in key order, with every change to volume vol between
// snapshot from (empty: the empty volume) and snapshot to.
func (s *Store) Delta(ctx context.Context, vol, from, to string, fn func(DeltaEntry) error) error {
	var ts1 uint64
	if from != "" {
		sn, err := s.snapshot(vol, from)
		if err != nil {
			return err
		}
		ts1 = sn.TS
	}
	sn, err := s.snapshot(vol, to)
	if err != nil {
		return err
	}
	if sn.TS < ts1 {
		return fmt.Errorf("%w: snapshot %s is older than %s", ErrInvalid, to, from)
	}
	txn := s.readTxn(sn.TS)
	defer txn.Discard()
	pfx := volPrefix(vol)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: pfx, AllVersions: true})
	defer it.Close()
	var cur []byte // key being looked at
	state := 0     // 0: decided; 1: deleted after ts1, looking for a version at ts1
	for it.Seek(pfx); it.ValidForPrefix(pfx); it.Next() {
		item := it.Item()
		if !bytes.Equal(item.Key(), cur) {
			if err := ctx.Err(); err != nil {
				return err
			}
			cur = item.KeyCopy(cur[:0])
			state = 0
			if item.Version() <= ts1 {
				continue // unchanged
			}
			if !item.IsDeletedOrExpired() {
				v, err := item.ValueCopy(nil)
				if err != nil {
					return err
				}
				if err := fn(DeltaEntry{Key: append([]byte(nil), cur[len(pfx):]...), Value: v}); err != nil {
					return err
				}
				continue
			}
			state = 1
			continue
		}
		if state == 1 && item.Version() <= ts1 {
			state = 0
			if !item.IsDeletedOrExpired() {
				if err := fn(DeltaEntry{Key: append([]byte(nil), cur[len(pfx):]...), Delete: true}); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
