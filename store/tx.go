package store

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
)

// Tx is a write transaction of the store's writer: what is staged in it
// (appends, table writes, consumer cursors) is committed together and
// durably, or not at all. Reads through it see what it staged. A Tx is
// valid only inside the function it is given to, which may run more than
// once (the writer replays a group without a request that failed): it
// must do nothing but read and stage through the Tx.
type Tx struct{ w *wtx }

// Write runs fn in one write transaction and returns once what fn staged
// is durable, or fn's error (then nothing fn staged is kept).
func (s *Store) Write(ctx context.Context, fn func(tx *Tx) error) error {
	return s.do(ctx, 512, false, func(w *wtx) error { return fn(&Tx{w: w}) })
}

// Append stages appends, as AppendMany makes them.
func (tx *Tx) Append(reqs ...AppendRequest) ([][]Pos, error) { return tx.w.appendAll(reqs) }

// Get reads the document at key of table path (exists false if absent).
func (tx *Tx) Get(path, key string) (doc Doc, exists bool, err error) {
	if err := checkKey(key); err != nil {
		return Doc{}, false, err
	}
	_, _, _, doc, raw, err := tx.w.getRow(path, key)
	return doc, raw != nil, err
}

// Put stages doc (any JSON value) at key of table path, with its change
// record, and returns the new document.
func (tx *Tx) Put(path, key string, doc json.RawMessage, conds ...Cond) (Doc, error) {
	if err := checkKey(key); err != nil {
		return Doc{}, err
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, doc); err != nil {
		return Doc{}, fmt.Errorf("%w: %v", ErrBadDocument, err)
	}
	return tx.w.mutateRow(path, key, "put", conds, func(Doc, bool) ([]byte, error) { return buf.Bytes(), nil })
}

// Patch stages a JSON merge patch (RFC 7396) of the document at key of
// table path, as Table.Patch makes it, and returns the new document.
func (tx *Tx) Patch(path, key string, patch json.RawMessage, conds ...Cond) (Doc, error) {
	if err := checkKey(key); err != nil {
		return Doc{}, err
	}
	apply, err := merger(patch)
	if err != nil {
		return Doc{}, err
	}
	return tx.w.mutateRow(path, key, "patch", conds, apply)
}

// Delete stages the removal of the document at key of table path.
func (tx *Tx) Delete(path, key string, conds ...Cond) error {
	if err := checkKey(key); err != nil {
		return err
	}
	_, err := tx.w.mutateRow(path, key, "delete", conds, nil)
	return err
}

// SetCursor stages group's cursor of a topic partition of stream path.
func (tx *Tx) SetCursor(path, group, topic string, part int, offset uint64) error {
	if err := checkName("group", group); err != nil {
		return err
	}
	if err := checkTopic(topic); err != nil {
		return err
	}
	return tx.w.setCursor(path, group, topic, part, offset)
}
