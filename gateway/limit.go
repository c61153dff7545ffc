package gateway

import (
	"sync"
	"time"
)

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

// full reports whether the bucket is full at now: forgetting it then
// gives its owner nothing a new bucket would not.
func (b *bucket) full(now time.Time) bool {
	if b == nil {
		return true
	}
	b.refill(now)
	return b.tokens >= b.burst
}

// limiter is a device's budget: publishes and their bytes a second, and
// connects a second. It belongs to the device identity, not to one
// connection: every connection of the device (two at once during a
// takeover) shares it, so a reconnect refills nothing. Its methods are
// safe for concurrent use.
type limiter struct {
	mu       sync.Mutex
	msgs     *bucket
	bytes    *bucket
	connects *bucket
	users    int // connections holding it (see limits)
}

func newLimiter(cfg *Config, now time.Time) *limiter {
	return &limiter{
		msgs:     newBucket(cfg.MessageRate, cfg.MessageBurst, now),
		bytes:    newBucket(cfg.ByteRate, cfg.ByteBurst, now),
		connects: newBucket(cfg.ConnectRate, cfg.ConnectBurst, now),
	}
}

// allow takes one message of size bytes from the budget and returns "",
// or returns the publish refusal reason and takes nothing.
func (l *limiter) allow(now time.Time, size int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
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

// allowConnect takes one connect from the budget, or reports false and
// takes nothing.
func (l *limiter) allowConnect(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.connects.has(now, 1) {
		return false
	}
	l.connects.take(1)
	return true
}

// idle reports whether no connection holds l and all its buckets are
// full at now. The caller holds l.mu.
func (l *limiter) idle(now time.Time) bool {
	return l.users == 0 && l.msgs.full(now) && l.bytes.full(now) && l.connects.full(now)
}

// limits holds the limiter of every device that has a connection, or
// had one recently enough that its buckets are not full again. Its size
// is bounded by the connections (MaxConnections and MaxPending) plus
// the devices that connected within the refill time of their buckets
// (ConnectBurst/ConnectRate, 10 s by default).
type limits struct {
	cfg  *Config
	mu   sync.Mutex
	devs map[string]*limiter
}

func newLimits(cfg *Config) *limits {
	return &limits{cfg: cfg, devs: map[string]*limiter{}}
}

// acquire returns device id's limiter, creating it full if it has none,
// and counts one more connection holding it. Each acquire is matched by
// one release.
func (ls *limits) acquire(id string, now time.Time) *limiter {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	l := ls.devs[id]
	if l == nil {
		l = newLimiter(ls.cfg, now)
		ls.devs[id] = l
	}
	l.mu.Lock()
	l.users++
	l.mu.Unlock()
	return l
}

// release counts one connection fewer holding l.
func (ls *limits) release(l *limiter) {
	l.mu.Lock()
	l.users--
	l.mu.Unlock()
}

// evict forgets the limiters no connection holds whose buckets are full
// at now, and returns how many it forgot. A device coming back gets a
// full limiter again, which is what it would have had.
func (ls *limits) evict(now time.Time) int {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	n := 0
	for id, l := range ls.devs {
		l.mu.Lock()
		if l.idle(now) {
			delete(ls.devs, id)
			n++
		}
		l.mu.Unlock()
	}
	return n
}

// len is the number of devices with a limiter.
func (ls *limits) len() int {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return len(ls.devs)
}
