package shadow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/weft-io/weft/store"
)

// OutboxTable holds, on a node of a core cluster, the core-owned writes
// staged in a local transaction (a rollout's step, committed with the
// rollout's state) until RunOutbox has written them through the node's
// Down.
const OutboxTable = "/updates/outbox"

var outboxSeq atomic.Uint64

// Stage stages w in tx, for a writer whose own state is committed in tx:
// on a node that writes /updates/down alone it is applied in tx (its
// records appended in the same commit); on a node of a core cluster it is
// kept in OutboxTable in the same commit, and RunOutbox writes it through
// the cluster. That is at least once: a node killed between the write and
// the outbox's cleanup writes it again after its restart.
func Stage(tx *store.Tx, st *store.Store, w Write) error {
	if w.Desired == nil && len(w.Records) == 0 && len(w.Local) == 0 {
		return nil
	}
	if !clustered(st) {
		_, err := ApplyWrite(tx, w, 0, true)
		return err
	}
	b, err := json.Marshal(w)
	if err != nil {
		return fmt.Errorf("shadow: stage: %w", err)
	}
	key := fmt.Sprintf("%020d-%012d", time.Now().UnixNano(), outboxSeq.Add(1))
	_, err = tx.Put(OutboxTable, key, b)
	return err
}

// EnsureOutbox creates OutboxTable if it is missing.
func EnsureOutbox(ctx context.Context, st *store.Store) error {
	err := st.CreateTable(ctx, OutboxTable, store.TableOptions{})
	if err != nil && !errors.Is(err, store.ErrExists) {
		return fmt.Errorf("shadow: outbox: %w", err)
	}
	return nil
}

// RunOutbox writes the writes staged in OutboxTable through st's Down,
// in the order they were staged, removing each once written, until ctx
// ends. It looks for new ones every interval (default 200 ms).
func RunOutbox(ctx context.Context, st *store.Store, interval time.Duration) error {
	if interval <= 0 {
		interval = 200 * time.Millisecond
	}
	if err := EnsureOutbox(ctx, st); err != nil {
		return err
	}
	t := st.Table(OutboxTable)
	for {
		docs, _, err := t.Scan(ctx, "", "", 100)
		if err == nil {
			for _, d := range docs {
				var w Write
				if json.Unmarshal(d.Value, &w) == nil {
					if _, err = DownOf(st).Write(ctx, w); err != nil {
						break
					}
				}
				if err = t.Delete(ctx, d.Key, store.IfVersion(d.Version)); err != nil {
					break
				}
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		if err == nil && len(docs) == 100 {
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
	}
}
