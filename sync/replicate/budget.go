package replicate

import (
	"math"
	"time"
)

// Backoff computes reconnection delays: exponential from Min to Max, with
// jitter so that many edges cut off together do not come back together.
// The zero value uses 200 ms and 10 s.
type Backoff struct {
	Min, Max time.Duration
	attempt  int
}

// Next returns the delay before the next attempt; rnd is a random number
// in [0, 1) (the jitter). The delay is between half and all of the
// exponential step.
func (b *Backoff) Next(rnd float64) time.Duration {
	lo, hi := b.Min, b.Max
	if lo <= 0 {
		lo = 200 * time.Millisecond
	}
	if hi <= 0 {
		hi = 10 * time.Second
	}
	d := lo
	for i := 0; i < b.attempt && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	b.attempt++
	return d/2 + time.Duration(rnd*float64(d/2))
}

// Reset starts over from Min, after a connection that worked.
func (b *Backoff) Reset() { b.attempt = 0 }

// Limiter is a token bucket of bytes per second shared by the senders of a
// link. Reserve is given the time, so the bucket is plain arithmetic; the
// caller sleeps for the delay it returns. A rate of 0 means no limit.
type Limiter struct {
	rate   float64 // bytes per second
	burst  float64
	tokens float64
	last   time.Time
}

// NewLimiter returns a limiter of rate bytes per second with a burst of a
// tenth of a second's worth (at least 64 KiB).
func NewLimiter(rate int64) *Limiter {
	if rate <= 0 {
		return &Limiter{}
	}
	burst := max(float64(rate)/10, 64<<10)
	return &Limiter{rate: float64(rate), burst: burst, tokens: burst}
}

// Reserve takes n bytes at time now and returns how long to wait before
// sending them. Reservations may run the bucket into debt: the waits of
// successive reservations add up, so the long-run rate is the limit.
//
// Priority: an urgent reservation (control, updates, shadows) is always
// taken at once, whatever the debt. Any other is taken only when the
// bucket is out of debt; otherwise ok is false and wait says when to ask
// again. Urgent frames therefore wait behind at most the debt of the one
// bulk batch before them, never behind a queue of bulk batches.
func (l *Limiter) Reserve(now time.Time, n int, urgent bool) (wait time.Duration, ok bool) {
	if l == nil || l.rate == 0 {
		return 0, true
	}
	if !l.last.IsZero() {
		l.tokens = min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	}
	l.last = now
	if !urgent && l.tokens < 0 {
		return l.debt(), false
	}
	l.tokens -= float64(n)
	return l.debt(), true
}

// debt is how long until the bucket is out of debt.
func (l *Limiter) debt() time.Duration {
	if l.tokens >= 0 {
		return 0
	}
	return time.Duration(math.Ceil(-l.tokens / l.rate * float64(time.Second)))
}

// Rate is the limit in bytes per second, 0 for none.
func (l *Limiter) Rate() int64 {
	if l == nil {
		return 0
	}
	return int64(l.rate)
}

// Urgency is the QUIC send priority of a stream's frames (0 first):
// control and updates before shadows before the uplink before the rest;
// "" is the control stream.
func Urgency(path string) int8 {
	switch path {
	case "":
		return 0 // the control stream
	case "/updates/down":
		return 1
	case "/shadows/changes":
		return 2
	case "/uplink/events":
		return 3
	}
	return 4
}
