package link

import (
	"context"
	"sync"
	"time"

	"github.com/weft-io/weft/sync/mirror"
	"github.com/weft-io/weft/sync/replicate"
)

// mirrorBudget returns what a link's mirrors draw from: the link's own
// limiter, shared with its streams, when the limiter can be drawn from
// outside package replicate (a Wait method); otherwise a bucket of the
// same rate for the link's mirrors alone. nil when the link has no cap.
func mirrorBudget(l *replicate.LinkLimiter, now func() time.Time) mirror.Budget {
	if l.Rate() <= 0 {
		return nil
	}
	if b, ok := any(l).(mirror.Budget); ok {
		return b
	}
	return &bucket{lim: replicate.NewLimiter(l.Rate()), now: now}
}

// bucket is a token bucket on a clock, drawn from with Wait.
type bucket struct {
	mu  sync.Mutex
	lim *replicate.Limiter
	now func() time.Time
}

// Wait takes n bytes, waiting until the bucket allows them.
func (b *bucket) Wait(ctx context.Context, n int, urgent bool) error {
	for {
		b.mu.Lock()
		d, ok := b.lim.Reserve(b.now(), n, urgent)
		b.mu.Unlock()
		if d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			}
		}
		if ok {
			return nil
		}
	}
}
