package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// The store's time is a floor, not a belief. It keeps the latest wall time
// it has seen (persisted under floorKey), advanced since by the monotonic
// clock, which no wall-clock step moves. Every stamp the store gives (message
// timestamps, created and updated times) is the later of the system clock
// and the floor, so a clock that steps back or resets at power-up never
// stamps a record earlier than one before it. A forward step larger than
// Config.ClockJump is taken as unconfirmed: retention measures ages as if
// it had not happened, so a record is never deleted before it has aged its
// TTL, until ConfirmTime (the core's time over the link) settles it.

// floorKey holds the time floor: the latest wall time seen and the forward
// jump not yet confirmed, two big-endian int64 nanosecond counts.
var floorKey = []byte("T")

// DefaultClockJump is the default Config.ClockJump.
const DefaultClockJump = 5 * time.Minute

// clockSkew is how far behind the floor the system clock may be before it
// is reported: NTP slews and small steps are not news.
const clockSkew = 2 * time.Second

// ClockStatus is what the store's clock has seen.
type ClockStatus struct {
	// Floor is the store's time now: never earlier than a time it gave
	// before.
	Floor time.Time
	// System is the system clock's reading at the same moment.
	System time.Time
	// Behind is how far the system clock is behind the floor (0 if not).
	Behind time.Duration
	// Unconfirmed is the forward jump retention discounts until
	// ConfirmTime: records are aged by Floor minus Unconfirmed.
	Unconfirmed time.Duration
	// BehindEpisodes counts the times the system clock fell behind the
	// floor by more than two seconds; Jumps the forward jumps larger than
	// Config.ClockJump.
	BehindEpisodes, Jumps uint64
	// Confirmed is the last time given to ConfirmTime (zero if none), and
	// Offset how far the store's time was ahead of it then (negative:
	// behind).
	Confirmed time.Time
	Offset    time.Duration
}

// clockReading is what one reading of the system clock told the floor.
type clockReading struct {
	stamp    time.Time     // the time to use
	behind   time.Duration // the system clock is this far behind the floor
	fellBack bool          // it just fell more than clockSkew behind: report it
	caughtUp bool          // it came back to the floor after falling behind
	jump     time.Duration // a forward jump larger than the threshold: report it
}

// floorClock is the time floor: a pure state machine fed with readings of
// the system and monotonic clocks.
type floorClock struct {
	mu        sync.Mutex
	threshold time.Duration
	floor     time.Time     // lower bound of the true time at mono
	mono      time.Duration // monotonic reading at floor
	fresh     bool          // no reading since open: a forward gap is downtime, not a jump
	pending   time.Duration // unconfirmed forward jumps
	behind    time.Duration
	episodes  uint64
	jumps     uint64
	confirmed time.Time
	offset    time.Duration
	lastSys   time.Time
	epoch     time.Time // with no monotonic clock: Now's first reading
}

// observe takes a reading of the system clock sys at monotonic time mono.
func (c *floorClock) observe(sys time.Time, mono time.Duration) clockReading {
	var r clockReading
	lb := c.floor.Add(mono - c.mono)
	c.lastSys = sys
	if sys.Before(lb) {
		r.stamp, r.behind = lb, lb.Sub(sys)
		if r.behind > clockSkew && c.behind <= clockSkew {
			c.episodes++
			r.fellBack = true
		}
		c.behind = r.behind
	} else {
		r.stamp = sys
		r.caughtUp = c.behind > clockSkew
		c.behind = 0
		if ahead := sys.Sub(lb); ahead > c.threshold && !c.fresh {
			c.pending += ahead
			c.jumps++
			r.jump = ahead
		}
	}
	c.floor, c.mono, c.fresh = r.stamp, mono, false
	return r
}

// confirm takes a trusted time t (the core's) read at monotonic time mono
// and returns the store's time then. A trusted time is a lower bound of
// the true time: the floor rises to it. Retention ages records by it from
// then on: what the store's time is ahead of it stays discounted.
func (c *floorClock) confirm(t time.Time, mono time.Duration) time.Time {
	now := c.floor.Add(mono - c.mono)
	if t.After(now) {
		c.floor, c.mono, now = t, mono, t
	}
	c.pending = max(0, now.Sub(t))
	c.confirmed, c.offset = t, now.Sub(t)
	return now
}

// retentionNow is the time records are aged against: the floor less the
// unconfirmed jumps.
func (c *floorClock) retentionNow(mono time.Duration) time.Time {
	return c.floor.Add(mono - c.mono).Add(-c.pending)
}

func (c *floorClock) status(mono time.Duration) ClockStatus {
	return ClockStatus{
		Floor: c.floor.Add(mono - c.mono), System: c.lastSys, Behind: c.behind, Unconfirmed: c.pending,
		BehindEpisodes: c.episodes, Jumps: c.jumps, Confirmed: c.confirmed, Offset: c.offset,
	}
}

// encodeFloor and decodeFloor are the record under floorKey.
func encodeFloor(floor time.Time, pending time.Duration) []byte {
	b := binary.BigEndian.AppendUint64(nil, uint64(floor.UnixNano()))
	return binary.BigEndian.AppendUint64(b, uint64(pending))
}

func decodeFloor(v []byte) (time.Time, time.Duration, error) {
	if len(v) != 16 {
		return time.Time{}, 0, fmt.Errorf("%w: time floor record of %d bytes", ErrCorrupt, len(v))
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(v))), time.Duration(binary.BigEndian.Uint64(v[8:])), nil
}

// openClock reads the persisted floor and puts the store's clock in
// s.cfg.Now, keeping the system clock as s.sysNow.
func (s *Store) openClock(sysClock bool) error {
	if s.cfg.ClockJump <= 0 {
		s.cfg.ClockJump = DefaultClockJump
	}
	if s.cfg.Monotonic == nil && sysClock {
		start := time.Now()
		s.cfg.Monotonic = func() time.Duration { return time.Since(start) }
	}
	c := &floorClock{threshold: s.cfg.ClockJump, fresh: true}
	txn := s.db.NewTransactionAt(s.ts.Load(), false)
	defer txn.Discard()
	item, err := txn.Get(floorKey)
	switch {
	case err == nil:
		v, err := item.ValueCopy(nil)
		if err != nil {
			return fmt.Errorf("store: time floor: %w", err)
		}
		if c.floor, c.pending, err = decodeFloor(v); err != nil {
			return err
		}
	case !errors.Is(err, badger.ErrKeyNotFound):
		return fmt.Errorf("store: time floor: %w", err)
	}
	s.clock, s.sysNow = c, s.cfg.Now
	if s.cfg.Monotonic != nil {
		c.mono = s.cfg.Monotonic()
	}
	s.saved.Store(c.floor.UnixNano())
	s.cfg.Now = s.now
	if c.pending > 0 {
		s.log.Warn("a forward clock jump is still unconfirmed; retention discounts it", "jump", c.pending.String())
	}
	return nil
}

// now reads the system clock through the floor: the store's clock.
func (s *Store) now() time.Time {
	sys := s.sysNow()
	s.clock.mu.Lock()
	mono := s.clock.mono
	if s.cfg.Monotonic != nil {
		mono = s.cfg.Monotonic()
	} else {
		if s.clock.epoch.IsZero() {
			s.clock.epoch = sys
		}
		mono = max(mono, sys.Sub(s.clock.epoch)) // Now, stepping back never
	}
	r := s.clock.observe(sys, mono)
	pending := s.clock.pending
	s.clock.mu.Unlock()
	s.reportClock(r, sys, pending)
	return r.stamp
}

func (s *Store) reportClock(r clockReading, sys time.Time, pending time.Duration) {
	switch {
	case r.fellBack:
		s.log.Warn("system clock is behind the time floor; stamping with the floor", "behind", r.behind.String(), "floor", r.stamp.UTC(), "system", sys.UTC())
	case r.caughtUp:
		s.log.Info("system clock caught up with the time floor", "system", sys.UTC())
	}
	if r.jump > 0 {
		s.log.Warn("system clock jumped forward; retention discounts the jump until the time is confirmed",
			slog.String("jump", r.jump.String()), slog.String("unconfirmed", pending.String()), slog.Time("system", sys.UTC()))
	}
}

// Now is the store's time: the system clock, but never earlier than a time
// the store gave before (see ClockStatus). Components that stamp records
// they hand to the store (the gateway's receive time) use it.
func (s *Store) Now() time.Time { return s.cfg.Now() }

// Clock reports what the store's clock has seen.
func (s *Store) Clock() ClockStatus {
	s.clock.mu.Lock()
	defer s.clock.mu.Unlock()
	return s.clock.status(s.monotonic())
}

// ConfirmTime tells the store a trusted time t, read just now: the core's
// clock as received over the link. The floor rises to t if it is behind,
// and retention ages records by t from now on, which settles a forward
// jump: a jump the core's time bears out stops being discounted, one it
// contradicts stays discounted. It persists the result.
func (s *Store) ConfirmTime(ctx context.Context, t time.Time) error {
	s.clock.mu.Lock()
	was := s.clock.pending
	now := s.clock.confirm(t, s.monotonic())
	pending := s.clock.pending
	s.clock.mu.Unlock()
	if off := now.Sub(t); off > s.cfg.ClockJump || off < -s.cfg.ClockJump {
		s.log.Warn("store time disagrees with the confirmed time", "offset", off.String(), "store", now.UTC(), "confirmed", t.UTC())
	}
	if was > s.cfg.ClockJump && pending <= s.cfg.ClockJump {
		s.log.Info("forward clock jump confirmed; retention resumes", "jump", was.String())
	}
	return s.saveFloor(ctx)
}

// retentionNow is the time retention ages records against.
func (s *Store) retentionNow() time.Time {
	s.cfg.Now() // a reading, so that a jump since the last one counts
	s.clock.mu.Lock()
	defer s.clock.mu.Unlock()
	return s.clock.retentionNow(s.monotonic())
}

// monotonic is the monotonic clock's reading; without one, that of the
// last reading of Now. s.clock.mu is held.
func (s *Store) monotonic() time.Duration {
	if s.cfg.Monotonic != nil {
		return s.cfg.Monotonic()
	}
	return s.clock.mono
}

// stampFloor records the floor in the group's transaction: every append
// carries it, so the floor persisted is never behind a stamp stored.
func (w *wtx) stampFloor() error {
	if w.floorStamped {
		return nil // once a transaction: the key is the same
	}
	w.floorStamped = true
	w.s.clock.mu.Lock()
	pending := w.s.clock.pending
	w.s.clock.mu.Unlock()
	if err := w.txnSet(floorKey, encodeFloor(w.now, pending)); err != nil {
		return err
	}
	w.s.saved.Store(w.now.UnixNano())
	return nil
}

// saveFloor persists the floor in a commit of its own.
func (s *Store) saveFloor(ctx context.Context) error {
	return s.do(ctx, 32, true, func(w *wtx) error {
		w.writes++
		return w.stampFloor()
	})
}

// tickClock reads the clock (so that jumps are seen when nothing is
// written) and persists the floor when it moved since last saved.
func (s *Store) tickClock(ctx context.Context) {
	now := s.cfg.Now()
	if now.UnixNano()-s.saved.Load() < int64(time.Second) {
		return
	}
	switch err := s.saveFloor(ctx); {
	case err == nil, errors.Is(err, ErrClosed), ctx.Err() != nil:
	case errors.Is(err, ErrDiskFull):
		s.log.Debug("time floor not saved", "err", err) // the writes refused say so
	default:
		s.log.Warn("time floor not saved", "err", err)
	}
}

// AtLeast raises the store's time to t if it is behind: t is evidence of
// the time (the start of a certificate the node was issued), not a
// reading to trust for ages, so retention is unchanged. It persists the
// floor.
func (s *Store) AtLeast(ctx context.Context, t time.Time) error {
	s.clock.mu.Lock()
	mono := s.monotonic()
	raised := t.After(s.clock.floor.Add(mono - s.clock.mono))
	if raised {
		s.clock.floor, s.clock.mono = t, mono
	}
	s.clock.mu.Unlock()
	if !raised {
		return nil
	}
	return s.saveFloor(ctx)
}
