package link

import (
	"github.com/weft-io/weft/sync/mirror"
	"github.com/weft-io/weft/sync/replicate"
)

// mirrorBudget returns what a link's mirrors draw from: the link's own
// limiter, shared with its streams, so that everything on a link keeps
// within one --rate-limit; nil when the link has no cap.
func mirrorBudget(l *replicate.LinkLimiter) mirror.Budget {
	if l.Rate() <= 0 {
		return nil
	}
	return l
}
