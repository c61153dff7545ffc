package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/dgraph-io/badger/v4"
)

const sweepChunk = 10000

// Delete deletes the object at path and all its data. The object vanishes
// at once; its data is removed in steps after, and a crash in between
// resumes the sweep when the store opens. A directory must be empty;
// well-known objects cannot be deleted.
func (s *Store) Delete(ctx context.Context, path string) error {
	vol, name, err := SplitPath(path)
	if err != nil {
		return err
	}
	if name == "" {
		return fmt.Errorf("%w: %s is a volume", ErrWrongKind, path)
	}
	path = "/" + vol + "/" + name
	if isWellKnown(path) {
		return fmt.Errorf("%w: %s is a well-known object", ErrInvalid, path)
	}
	err = s.do(ctx, 256, true, func(w *wtx) error {
		m, _, _, err := w.object(path, "")
		if err != nil {
			return err
		}
		if m.Kind == KindDir {
			pfx := metaKey(vol, name+"/")
			it := w.txn.NewIterator(badger.IteratorOptions{Prefix: pfx, PrefetchValues: false})
			it.Seek(pfx)
			busy := it.ValidForPrefix(pfx)
			it.Close()
			if busy {
				return fmt.Errorf("%w: directory %s", ErrNotEmpty, path)
			}
		}
		b, _ := json.Marshal(m)
		if err := w.remove(vol, metaKey(vol, name)); err != nil {
			return err
		}
		w.metas[path] = nil
		if err := w.set("", objKey(vol, kindTomb, name), b, 0); err != nil {
			return err
		}
		return w.audit("object.delete", path, map[string]any{"kind": m.Kind})
	})
	if err != nil {
		return err
	}
	return s.sweepTomb(ctx, vol, name)
}

// sweepTombs finishes deletions a crash interrupted.
func (s *Store) sweepTombs(ctx context.Context) error {
	type tomb struct{ vol, name string }
	var tombs []tomb
	txn := s.readTxn(0)
	for _, vi := range s.Volumes() {
		pfx := append(volPrefix(vi.Name), kindTomb)
		it := txn.NewIterator(badger.IteratorOptions{Prefix: pfx, PrefetchValues: false})
		for it.Seek(pfx); it.ValidForPrefix(pfx); it.Next() {
			tombs = append(tombs, tomb{vi.Name, string(it.Item().Key()[len(pfx):])})
		}
		it.Close()
	}
	txn.Discard()
	for _, t := range tombs {
		if err := s.sweepTomb(ctx, t.vol, t.name); err != nil {
			return err
		}
	}
	return nil
}

// sweepTomb removes the data of a deleted object, if it has a tomb.
func (s *Store) sweepTomb(ctx context.Context, vol, name string) error {
	txn := s.readTxn(0)
	_, err := txn.Get(objKey(vol, kindTomb, name))
	txn.Discard()
	if err == badger.ErrKeyNotFound {
		return nil
	}
	if err != nil {
		return fmt.Errorf("store: read: %w", err)
	}
	path := "/" + vol + "/" + name
	for _, kind := range []byte{kindBatch, kindTopic, kindLow, kindCursor, kindRow, kindChunk, kindGap, kindWrite} {
		pfx := objKey(vol, kind, name, "")
		for {
			done := false
			err := s.do(ctx, 0, true, func(w *wtx) error {
				n, err := w.sweep(vol, pfx, sweepChunk, nil, nil)
				done = n < sweepChunk
				return err
			})
			if err != nil {
				return fmt.Errorf("store: sweep %s: %w", path, err)
			}
			if done {
				break
			}
		}
	}
	// Drop cached partition heads of the deleted stream.
	return s.do(ctx, 0, true, func(w *wtx) error {
		for id := range w.s.heads {
			if strings.HasPrefix(id, path+"\x00") {
				delete(w.s.heads, id)
			}
		}
		return w.del("", objKey(vol, kindTomb, name), 0)
	})
}
