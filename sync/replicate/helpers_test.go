package replicate

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/weft-io/weft/internal/testenv/wait"
	"github.com/weft-io/weft/store"
)

func openStore(t testing.TB, dir, name string) *store.Store {
	t.Helper()
	st, err := store.Open(store.Config{Dir: dir, Name: name, MinFreeBytes: -1, MemTableSize: 16 << 20, RetentionInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// digest summarises a topic partition: its bounds and a hash of every
// message at its offset.
func digest(ctx context.Context, s *store.Stream, topic string, part int) (string, error) {
	low, next, err := s.Bounds(ctx, topic, part)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for from := low; from < next; {
		msgs, err := s.Read(ctx, topic, part, from, store.ReadOptions{Limit: 10000, MaxBytes: 16 << 20})
		if err != nil {
			return "", err
		}
		if len(msgs) == 0 {
			return "", fmt.Errorf("%s %q: nothing at %d below %d", s.Path(), topic, from, next)
		}
		for _, m := range msgs {
			if m.Offset != from {
				return "", fmt.Errorf("%s %q: offset %d where %d was expected", s.Path(), topic, m.Offset, from)
			}
			hdr, _ := json.Marshal(m.Headers)
			fmt.Fprintf(h, "%d|%x|%x|%s|%d\n", m.Offset, m.Key, m.Value, hdr, m.Timestamp.UnixNano())
			from++
		}
	}
	return fmt.Sprintf("%d-%d-%x", low, next, h.Sum(nil)), nil
}

// waitSame waits until every topic of src's stream path is equal in dst.
func waitSame(t *testing.T, src, dst *store.Store, path string) {
	t.Helper()
	ctx := context.Background()
	waitFor(t, "the replica to equal its source", func() bool {
		topics, err := src.Stream(path).Topics(ctx, "", "", 100000)
		if err != nil {
			return false
		}
		for _, topic := range topics {
			a, err := digest(ctx, src.Stream(path), topic, 0)
			if err != nil {
				return false
			}
			if b, err := digest(ctx, dst.Stream(path), topic, 0); err != nil || a != b {
				return false
			}
		}
		return true
	})
}

// waitFor polls cond with a deadline (wait.For).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	wait.For(t, time.Minute, what, cond)
}
