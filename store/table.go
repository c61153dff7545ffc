package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Table is a handle on a table: JSON documents by key, ordered by key.
type Table struct {
	v    *View
	path string
}

// Doc is a table document.
type Doc struct {
	Key     string          `json:"key"`
	Version uint64          `json:"version"`
	Updated time.Time       `json:"updated"`
	Value   json.RawMessage `json:"doc"`
}

// Change is the record a table appends to its change stream per mutation.
type Change struct {
	Key     string          `json:"key"`
	Op      string          `json:"op"` // put, patch or delete
	Version uint64          `json:"version"`
	Doc     json.RawMessage `json:"doc,omitempty"`
	TS      time.Time       `json:"ts"`
}

// Cond is a precondition on a document's version for compare-and-set.
type Cond struct {
	// Version the document must have; 0 means it must not exist.
	Version uint64
	// Set makes the condition apply.
	Set bool
}

// IfVersion is the condition that the document has version v (0: absent).
func IfVersion(v uint64) Cond { return Cond{Version: v, Set: true} }

// Row encoding: 8 bytes version, 8 bytes update time (unix ns), JSON.
func encodeRow(version uint64, ts time.Time, doc []byte) []byte {
	b := make([]byte, 16, 16+len(doc))
	binary.BigEndian.PutUint64(b, version)
	binary.BigEndian.PutUint64(b[8:], uint64(ts.UnixNano()))
	return append(b, doc...)
}

func decodeRow(key string, b []byte) (Doc, error) {
	if len(b) < 16 {
		return Doc{}, fmt.Errorf("%w: row %q of %d bytes", ErrCorrupt, key, len(b))
	}
	return Doc{
		Key:     key,
		Version: binary.BigEndian.Uint64(b),
		Updated: time.Unix(0, int64(binary.BigEndian.Uint64(b[8:]))).UTC(),
		Value:   json.RawMessage(b[16:]),
	}, nil
}

func checkKey(key string) error {
	if err := checkName("key", key); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return nil
}

// Path is the table's path.
func (t *Table) Path() string { return t.path }

// Get returns the document at key.
func (t *Table) Get(ctx context.Context, key string) (Doc, error) {
	txn := t.v.txn()
	defer txn.Discard()
	_, vol, name, err := t.v.object(txn, t.path, KindTable)
	if err != nil {
		return Doc{}, err
	}
	item, err := txn.Get(objKey(vol, kindRow, name, key))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return Doc{}, fmt.Errorf("%w: %s key %q", ErrNotFound, t.path, key)
	}
	if err != nil {
		return Doc{}, fmt.Errorf("store: read: %w", err)
	}
	b, err := item.ValueCopy(nil)
	if err != nil {
		return Doc{}, err
	}
	return decodeRow(key, b)
}

// Put stores doc (any JSON value) at key and returns the new document.
func (t *Table) Put(ctx context.Context, key string, doc json.RawMessage, conds ...Cond) (Doc, error) {
	var buf bytes.Buffer
	if err := json.Compact(&buf, doc); err != nil {
		return Doc{}, fmt.Errorf("%w: %v", ErrBadDocument, err)
	}
	return t.mutate(ctx, key, "put", conds, func(*wtx, Doc, bool) ([]byte, error) { return buf.Bytes(), nil })
}

// Patch applies a JSON merge patch (RFC 7386) to the document at key,
// creating it from null if absent, and returns the new document.
func (t *Table) Patch(ctx context.Context, key string, patch json.RawMessage, conds ...Cond) (Doc, error) {
	apply, err := merger(patch)
	if err != nil {
		return Doc{}, err
	}
	return t.mutate(ctx, key, "patch", conds, func(_ *wtx, old Doc, exists bool) ([]byte, error) { return apply(old, exists) })
}

// merger returns the function that applies a JSON merge patch to a
// document (absent: exists false).
func merger(patch json.RawMessage) (func(old Doc, exists bool) ([]byte, error), error) {
	var p any
	if err := unmarshalJSON(patch, &p); err != nil {
		return nil, fmt.Errorf("%w: patch: %v", ErrBadDocument, err)
	}
	return func(old Doc, exists bool) ([]byte, error) {
		var target any
		if exists {
			if err := unmarshalJSON(old.Value, &target); err != nil {
				return nil, fmt.Errorf("%w: stored document: %v", ErrCorrupt, err)
			}
		}
		return json.Marshal(MergePatch(target, p))
	}, nil
}

// Update applies fn to the document at key (exists false if absent) and
// stores what it returns, in one step; fn may run more than once.
func (t *Table) Update(ctx context.Context, key string, fn func(old Doc, exists bool) (json.RawMessage, error), conds ...Cond) (Doc, error) {
	doc, _, err := t.UpdateAppend(ctx, key, func(old Doc, exists bool) (json.RawMessage, []AppendRequest, error) {
		b, err := fn(old, exists)
		return b, nil, err
	}, conds...)
	return doc, err
}

// UpdateAppend is Update whose fn also returns messages to append in the
// same commit as the document (and its change record): the document and
// every append are durable together or not at all. It returns the
// appended positions, one slice per request.
func (t *Table) UpdateAppend(ctx context.Context, key string, fn func(old Doc, exists bool) (json.RawMessage, []AppendRequest, error), conds ...Cond) (Doc, [][]Pos, error) {
	var pos [][]Pos
	doc, err := t.mutate(ctx, key, "put", conds, func(w *wtx, old Doc, exists bool) ([]byte, error) {
		b, reqs, err := fn(old, exists)
		if err != nil {
			return nil, err
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, b); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadDocument, err)
		}
		if len(reqs) > 0 {
			if pos, err = w.appendAll(reqs); err != nil {
				return nil, err
			}
		}
		return buf.Bytes(), nil
	})
	return doc, pos, err
}

// Delete removes the document at key.
func (t *Table) Delete(ctx context.Context, key string, conds ...Cond) error {
	_, err := t.mutate(ctx, key, "delete", conds, nil)
	return err
}

// mutate changes the document at key in one commit; next, given the
// transaction, may stage more in it.
func (t *Table) mutate(ctx context.Context, key, op string, conds []Cond, next func(w *wtx, old Doc, exists bool) ([]byte, error)) (Doc, error) {
	if err := checkKey(key); err != nil {
		return Doc{}, err
	}
	if t.v.ts != 0 {
		return Doc{}, ErrReadOnly
	}
	var out Doc
	err := t.v.s.do(ctx, 512, op == "delete", func(w *wtx) (err error) {
		out, err = w.mutateRow(t.path, key, op, conds, func(old Doc, exists bool) ([]byte, error) { return next(w, old, exists) })
		return err
	})
	return out, err
}

// getRow reads the document at key of table path in the transaction.
func (w *wtx) getRow(path, key string) (m *Info, vol, name string, old Doc, raw []byte, err error) {
	if m, vol, name, err = w.object(path, KindTable); err != nil {
		return
	}
	if raw, err = w.get(objKey(vol, kindRow, name, key)); err != nil || raw == nil {
		return
	}
	old, err = decodeRow(key, raw)
	return
}

// mutateRow changes the document at key of table path in the transaction:
// op "delete" removes it, any other stores what next returns; its change
// record goes with it.
func (w *wtx) mutateRow(path, key, op string, conds []Cond, next func(old Doc, exists bool) ([]byte, error)) (Doc, error) {
	m, vol, name, old, raw, err := w.getRow(path, key)
	if err != nil {
		return Doc{}, err
	}
	rk := objKey(vol, kindRow, name, key)
	exists := raw != nil
	for _, c := range conds {
		if c.Set && c.Version != old.Version {
			return Doc{}, fmt.Errorf("%w: %s key %q has version %d, expected %d", ErrVersion, path, key, old.Version, c.Version)
		}
	}
	oldSize := 0
	if exists {
		oldSize = len(rk) + len(raw)
	}
	out := Doc{Key: key, Version: old.Version + 1, Updated: w.now.UTC()}
	if op == "delete" {
		if !exists {
			return Doc{}, fmt.Errorf("%w: %s key %q", ErrNotFound, path, key)
		}
		if err := w.changeRecord(m, Change{Key: key, Op: op, Version: out.Version, TS: out.Updated}); err != nil {
			return Doc{}, err
		}
		return out, w.del(vol, rk, oldSize)
	}
	doc, err := next(old, exists)
	if err != nil {
		return Doc{}, err
	}
	row := encodeRow(out.Version, out.Updated, doc)
	if err := w.checkQuota(vol, len(rk)+len(row)-oldSize); err != nil {
		return Doc{}, err
	}
	out.Value = doc
	if err := w.changeRecord(m, Change{Key: key, Op: op, Version: out.Version, Doc: doc, TS: out.Updated}); err != nil {
		return Doc{}, err
	}
	return out, w.set(vol, rk, row, oldSize)
}

// changeRecord appends c to the table's change stream, if it has one.
func (w *wtx) changeRecord(m *Info, c Change) error {
	if m.ChangeStream == "" {
		return nil
	}
	cm, _, _, err := w.object(m.ChangeStream, KindStream)
	if err != nil {
		return fmt.Errorf("change stream: %w", err)
	}
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	_, err = w.stage(m.ChangeStream, cm, w.s.cfg.Name, -1, []Message{{Key: []byte(c.Key), Value: b, Timestamp: c.TS}})
	return err
}

// Scan returns documents whose key has prefix, in key order, starting after
// the key after, at most limit (default 1000). next is the key to pass as
// after for the following page, empty at the end.
func (t *Table) Scan(ctx context.Context, prefix, after string, limit int) (docs []Doc, next string, err error) {
	if limit <= 0 {
		limit = 1000
	}
	txn := t.v.txn()
	defer txn.Discard()
	_, vol, name, err := t.v.object(txn, t.path, KindTable)
	if err != nil {
		return nil, "", err
	}
	base := objKey(vol, kindRow, name, "")
	pfx := append(append([]byte(nil), base...), prefix...)
	seek := pfx
	if after != "" {
		if s := append(append(append([]byte(nil), base...), after...), 0); bytes.Compare(s, pfx) > 0 {
			seek = s
		}
	}
	it := txn.NewIterator(badger.IteratorOptions{Prefix: pfx})
	defer it.Close()
	for it.Seek(seek); it.ValidForPrefix(pfx); it.Next() {
		if len(docs) == limit {
			return docs, docs[len(docs)-1].Key, nil
		}
		b, err := it.Item().ValueCopy(nil)
		if err != nil {
			return nil, "", err
		}
		d, err := decodeRow(string(it.Item().Key()[len(base):]), b)
		if err != nil {
			return nil, "", err
		}
		docs = append(docs, d)
	}
	return docs, "", nil
}

func unmarshalJSON(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

// MergePatch applies an RFC 7386 JSON merge patch to target (values as
// decoded by encoding/json) and returns the result.
func MergePatch(target, patch any) any {
	p, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	t, ok := target.(map[string]any)
	if !ok {
		t = map[string]any{}
	}
	for k, v := range p {
		if v == nil {
			delete(t, k)
			continue
		}
		t[k] = MergePatch(t[k], v)
	}
	return t
}
