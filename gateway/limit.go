package gateway

import "time"

// bucket is a token bucket: it holds up to burst tokens and refills at
// rate tokens a second. Time comes in as an argument, so it is tested by
// feeding it instants. A nil bucket allows everything.
type bucket struct {
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
}

// newBucket returns a full bucket, or nil (no limit) if rate is not
// positive.
func newBucket(rate float64, burst int, now time.Time) *bucket {
	if rate <= 0 {
		return nil
	}
	b := float64(burst)
	if b < 1 {
		b = 1
	}
	return &bucket{rate: rate, burst: b, tokens: b, last: now}
}

// refill adds the tokens earned since the last call.
func (b *bucket) refill(now time.Time) {
	if d := now.Sub(b.last); d > 0 {
		b.tokens += d.Seconds() * b.rate
		if b.tokens > b.burst {
			b.tokens = b.burst
		}
		b.last = now
	}
}

// has reports whether n tokens are available at now.
func (b *bucket) has(now time.Time, n float64) bool {
	if b == nil {
		return true
	}
	b.refill(now)
	return b.tokens >= n
}

func (b *bucket) take(n float64) {
	if b != nil {
		b.tokens -= n
	}
}

// limiter is a device's publish budget: messages and bytes a second.
// It is used from the one goroutine that reads the device's connection.
type limiter struct {
	msgs  *bucket
	bytes *bucket
}

func newLimiter(cfg *Config, now time.Time) limiter {
	return limiter{
		msgs:  newBucket(cfg.MessageRate, cfg.MessageBurst, now),
		bytes: newBucket(cfg.ByteRate, cfg.ByteBurst, now),
	}
}

// allow takes one message of size bytes from the budget and returns "",
// or returns the publish refusal reason and takes nothing.
func (l *limiter) allow(now time.Time, size int) string {
	if !l.msgs.has(now, 1) {
		return RefuseMessageRate
	}
	if !l.bytes.has(now, float64(size)) {
		return RefuseByteRate
	}
	l.msgs.take(1)
	l.bytes.take(float64(size))
	return ""
}
