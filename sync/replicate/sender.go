package replicate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/weft-io/weft/store"
	"github.com/weft-io/weft/sync/wire"
)

// Log is the source a sender reads. *store.Stream implements it.
type Log interface {
	Read(ctx context.Context, topic string, part int, from uint64, opts store.ReadOptions) ([]store.Message, error)
	Bounds(ctx context.Context, topic string, part int) (low, next uint64, err error)
	Topics(ctx context.Context, prefix, after string, limit int) ([]string, error)
	Changed() <-chan struct{}
	Changes(cursor uint64) (parts []store.TopicPart, next uint64, complete bool)
}

var _ Log = (*store.Stream)(nil)

const (
	topicPage     = 1000
	readLimit     = 4096
	readMaxBytes  = 4 << 20
	defaultWindow = 32 << 20
	maxLagReads   = 100 // topics read to date the oldest unreplicated message
)

// defaultRecheck is how long a topic the sender's filter withheld waits
// before the filter is asked again (a device may have come to the edge).
const defaultRecheck = 30 * time.Second

// sender sends one stream to one receiver over one frame connection.
type sender struct {
	log      Log
	path     string
	parts    int
	conn     *wire.Conn
	stats    *StreamStats
	limit    *LinkLimiter
	window   int
	maxBytes int
	compress bool
	now      func() time.Time
	logger   *slog.Logger
	// allow, if set, decides which topics go to this receiver; the others
	// are withheld and asked about again after recheck.
	allow    func(topic string) error
	recheck  time.Duration // 0: defaultRecheck
	withheld map[string]time.Time
	cursor   uint64 // in the log's Changes

	mu      sync.Mutex // guards t, avgSize and stopped against status readers
	t       *tracker
	avgSize float64
	stopped bool

	in   chan wire.Message
	errc chan error

	backlog     map[tp]uint64 // what follows each topic partition's last full batch, about
	lastBacklog time.Time     // when the backlog was last looked up
}

// LinkLimiter is a Limiter shared by the senders of one link, on a clock.
// A nil *LinkLimiter is no cap.
type LinkLimiter struct {
	mu  sync.Mutex
	lim *Limiter
	now func() time.Time
}

// NewLinkLimiter returns the budget of a link capped at rate bytes per
// second (0: no cap), on the clock now (nil: time.Now).
func NewLinkLimiter(rate int64, now func() time.Time) *LinkLimiter {
	if now == nil {
		now = time.Now
	}
	return &LinkLimiter{lim: NewLimiter(rate), now: now}
}

// Rate is the cap in bytes per second, 0 for none.
func (l *LinkLimiter) Rate() int64 {
	if l == nil {
		return 0
	}
	return l.lim.Rate()
}

func (l *LinkLimiter) wait(ctx context.Context, n int, urgent bool) error {
	if l.Rate() == 0 {
		return nil
	}
	for {
		l.mu.Lock()
		d, ok := l.lim.Reserve(l.now(), n, urgent)
		l.mu.Unlock()
		if d <= 0 {
			if ok {
				return nil
			}
			continue
		}
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		if ok {
			return nil
		}
	}
}

func (s *sender) run(ctx context.Context) error {
	s.t = newTracker(s.window)
	if s.recheck <= 0 {
		s.recheck = defaultRecheck
	}
	defer func() {
		s.mu.Lock()
		s.stopped = true
		s.mu.Unlock()
	}()
	s.in = make(chan wire.Message, 256)
	s.errc = make(chan error, 1)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		for {
			m, err := s.conn.Recv()
			if err != nil {
				s.errc <- wire.FromQUIC(err)
				return
			}
			select {
			case s.in <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	s.stats.setLag(s.lag)

	changed := s.log.Changed()
	_, s.cursor, _ = s.log.Changes(0)
	if err := s.discover(ctx, false); err != nil {
		return err
	}
	blocked, err := s.sendAll(ctx)
	if err != nil {
		return err
	}
	var scanTimer *time.Timer
	var scanC <-chan time.Time
	recheck := time.NewTicker(s.recheck)
	defer recheck.Stop()
	cost := time.Duration(0)
	for {
		everything := false
		select {
		case <-recheck.C:
			if len(s.withheld) == 0 {
				continue
			}
			everything = true
		case <-changed:
			changed = nil
			// A stream of many topics is looked at no more than every few
			// times the last look took.
			if cost > 5*time.Millisecond {
				scanTimer = time.NewTimer(min(4*cost, time.Second))
				scanC = scanTimer.C
				continue
			}
		case <-scanC:
			scanC = nil
		case m := <-s.in:
			if err := s.handle(m); err != nil {
				return err
			}
			// An acknowledgement may open the window, or send the sender
			// back to where the receiver is.
			if s.full() || !blocked && !s.pending() {
				continue
			}
			if blocked, err = s.sendAll(ctx); err != nil {
				return err
			}
			continue
		case err := <-s.errc:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
		start := s.now()
		changed = s.log.Changed()
		if err := s.look(ctx, everything); err != nil {
			return err
		}
		cost = s.now().Sub(start)
		start = s.now()
		before := s.stats.batches.Load() + int64(s.inFlight())
		if blocked, err = s.sendAll(ctx); err != nil {
			return err
		}
		if s.stats.batches.Load()+int64(s.inFlight()) == before {
			// A look that found nothing to send costs like the listing:
			// it is the part that grows with the topics. Time spent
			// sending is not.
			cost += s.now().Sub(start)
		}
		if scanTimer != nil {
			scanTimer.Stop()
		}
	}
}

// inFlight is the number of batches sent and not acknowledged.
func (s *sender) inFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.t.queue)
}

// pending reports whether some topic partition may have more to send.
func (s *sender) pending() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.t.dirty) > 0
}

func (s *sender) full() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.t.full()
}

// handle takes one frame from the receiver outside an offer.
func (s *sender) handle(m wire.Message) error {
	switch m := m.(type) {
	case *wire.Ack:
		s.mu.Lock()
		r, err := s.t.ack(m)
		s.mu.Unlock()
		if err != nil {
			return err
		}
		if r.rewound {
			s.logger.Info("receiver is behind, going back", "topic", m.Topic, "partition", m.Part, "offset", m.Next)
		}
		s.stats.record(s.now(), r.count, r.bytes)
		s.stats.dups.Add(int64(m.Dups))
		return nil
	case *wire.Error:
		m.Remote = true
		return m
	default:
		return wire.Errorf(wire.CodeProtocol, "sender of %s got an unexpected frame %T", s.path, m)
	}
}

// look finds what there is to send: the topic partitions appended to
// since the last look, as the store's change log tells; every topic when
// it cannot tell or when everything is set.
func (s *sender) look(ctx context.Context, everything bool) error {
	parts, next, complete := s.log.Changes(s.cursor)
	s.cursor = next
	if everything || !complete {
		return s.discover(ctx, !complete)
	}
	var offer []wire.Bound
	s.mu.Lock()
	for _, p := range parts {
		k := tp{p.Topic, p.Partition}
		switch {
		case p.Partition >= s.parts || !s.allowed(k.topic):
		case s.t.known(k):
			s.t.touch(k)
		default:
			offer = append(offer, wire.Bound{Topic: k.topic, Part: k.part})
		}
	}
	s.mu.Unlock()
	return s.offerNew(ctx, offer)
}

// discover lists the stream's topics and learns the receiver's position
// of those it does not know yet; with lost set (the change log could not
// say what changed) every known one may have more to send too.
func (s *sender) discover(ctx context.Context, lost bool) error {
	if lost {
		s.mu.Lock()
		s.t.touchAll()
		s.mu.Unlock()
	}
	after := ""
	for {
		topics, err := s.log.Topics(ctx, "", after, topicPage)
		if err != nil {
			return fmt.Errorf("replicate: %s topics: %w", s.path, err)
		}
		var offer []wire.Bound
		s.mu.Lock()
		for _, topic := range topics {
			if !s.allowed(topic) {
				continue
			}
			for p := 0; p < s.parts; p++ {
				if !s.t.known(tp{topic, p}) {
					offer = append(offer, wire.Bound{Topic: topic, Part: p})
				}
			}
		}
		s.mu.Unlock()
		if err := s.offerNew(ctx, offer); err != nil {
			return err
		}
		if len(topics) < topicPage {
			return nil
		}
		after = topics[len(topics)-1]
	}
}

// offerNew offers topic partitions the receiver has not been asked about,
// with their bounds.
func (s *sender) offerNew(ctx context.Context, offer []wire.Bound) error {
	if len(offer) == 0 {
		return nil
	}
	for i := range offer {
		b := &offer[i]
		var err error
		if b.Low, b.Next, err = s.log.Bounds(ctx, b.Topic, b.Part); err != nil {
			return fmt.Errorf("replicate: %s topic %q: %w", s.path, b.Topic, err)
		}
	}
	return s.offer(ctx, offer)
}

// allowed reports whether topic goes to the receiver: a topic already
// known does; a new one when the filter lets it, asked again at most every
// recheck. The caller holds s.mu.
func (s *sender) allowed(topic string) bool {
	if s.allow == nil || s.t.known(tp{topic, 0}) {
		return true
	}
	now := s.now()
	if at, ok := s.withheld[topic]; ok && now.Sub(at) < s.recheck {
		return false
	}
	if err := s.allow(topic); err != nil {
		if s.withheld == nil {
			s.withheld = map[string]time.Time{}
		}
		if _, ok := s.withheld[topic]; !ok {
			s.logger.Debug("topic withheld from this peer", "topic", topic, "reason", err)
		}
		s.withheld[topic] = now
		return false
	}
	delete(s.withheld, topic)
	return true
}

// offer sends an Offer and waits for its Positions, taking the
// acknowledgements that come before it.
func (s *sender) offer(ctx context.Context, offer []wire.Bound) error {
	if err := s.conn.Send(&wire.Offer{Topics: offer}); err != nil {
		return wire.FromQUIC(err)
	}
	for {
		select {
		case m := <-s.in:
			pos, ok := m.(*wire.Positions)
			if !ok {
				if err := s.handle(m); err != nil {
					return err
				}
				continue
			}
			if len(pos.Positions) != len(offer) {
				return wire.Errorf(wire.CodeProtocol, "%d positions for an offer of %d", len(pos.Positions), len(offer))
			}
			s.mu.Lock()
			defer s.mu.Unlock()
			for i, p := range pos.Positions {
				b := offer[i]
				if p.Topic != b.Topic || p.Part != b.Part {
					return wire.Errorf(wire.CodeProtocol, "position of %s for an offer of %s", tp{p.Topic, p.Part}, tp{b.Topic, b.Part})
				}
				if p.Next > b.Next {
					// The replica holds offsets the source never wrote (or
					// lost): nothing is sent until the source passes them.
					s.logger.Warn("replica is ahead of its source", "topic", b.Topic, "partition", b.Part, "source_next", b.Next, "replica_next", p.Next)
				}
				if p.Refused != "" {
					s.logger.Warn("receiver refuses a topic", "topic", b.Topic, "partition", b.Part, "reason", p.Refused)
					s.stats.SetErr(fmt.Errorf("topic %q refused: %s", b.Topic, p.Refused))
					s.t.refuse(tp{b.Topic, b.Part})
					continue
				}
				s.t.position(tp{b.Topic, b.Part}, p.Next)
			}
			return nil
		case err := <-s.errc:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// sendAll sends what the topics with news hold past what was sent, in passes
// over the topics, until there is nothing more or the window is full
// (blocked).
func (s *sender) sendAll(ctx context.Context) (blocked bool, err error) {
	for {
		s.mu.Lock()
		pass := s.t.pass()
		s.mu.Unlock()
		if len(pass) == 0 {
			return false, nil
		}
		for _, k := range pass {
			// Take acknowledgements as they come, to keep the window open.
			for drained := false; !drained; {
				select {
				case m := <-s.in:
					if err := s.handle(m); err != nil {
						return false, err
					}
				case err := <-s.errc:
					return false, err
				default:
					drained = true
				}
			}
			if s.full() {
				return true, nil
			}
			sent, err := s.sendOne(ctx, k)
			if err != nil {
				return false, err
			}
			if !sent {
				s.mu.Lock()
				s.t.done(k)
				s.mu.Unlock()
			}
		}
	}
}

// sendOne sends k's next batch, if it has one.
func (s *sender) sendOne(ctx context.Context, k tp) (bool, error) {
	s.mu.Lock()
	from := s.t.next(k)
	s.mu.Unlock()
	opts := store.ReadOptions{Limit: readLimit, MaxBytes: s.maxBytes}
	msgs, err := s.log.Read(ctx, k.topic, k.part, from, opts)
	low := uint64(0)
	if errors.Is(err, store.ErrTrimmed) {
		if low, _, err = s.log.Bounds(ctx, k.topic, k.part); err != nil {
			return false, fmt.Errorf("replicate: %s %s: %w", s.path, k, err)
		}
		s.mu.Lock()
		n := s.t.skip(k, low)
		s.mu.Unlock()
		s.stats.dropped.Add(int64(n))
		s.logger.Warn("messages dropped at the source before they were replicated (retention or a full volume)", "topic", k.topic, "partition", k.part, "from", from, "to", low)
		from = low
		msgs, err = s.log.Read(ctx, k.topic, k.part, from, opts)
	}
	if err != nil {
		return false, fmt.Errorf("replicate: %s %s: read at %d: %w", s.path, k, from, err)
	}
	if len(msgs) == 0 {
		return false, nil
	}
	b, err := wire.NewBatch(k.topic, k.part, low, msgs, s.compress)
	if err != nil {
		return false, err
	}
	if len(msgs) == readLimit || b.RawLen >= s.maxBytes/2 {
		// A full batch: tell the receiver how much follows. Looking at the
		// partition's end costs, so it is done four times a second at
		// most, and counted down in between.
		if s.backlog == nil {
			s.backlog = map[tp]uint64{}
		}
		left := s.backlog[k] - min(s.backlog[k], uint64(len(msgs)))
		if now := s.now(); now.Sub(s.lastBacklog) >= 250*time.Millisecond {
			s.lastBacklog = now
			if _, next, err := s.log.Bounds(ctx, k.topic, k.part); err == nil && next > from+uint64(len(msgs)) {
				left = next - from - uint64(len(msgs))
			}
		}
		s.backlog[k] = max(left, 1)
		b.Backlog = s.backlog[k]
	} else {
		delete(s.backlog, k)
	}
	size := b.Size()
	if err := s.limit.wait(ctx, size, Urgency(s.path) <= Urgency(store.ShadowChanges)); err != nil {
		return false, err
	}
	if err := s.conn.Send(b); err != nil {
		return false, wire.FromQUIC(err)
	}
	s.mu.Lock()
	s.t.sent(k, b.First, b.Count, size)
	per := float64(b.RawLen) / float64(b.Count)
	if s.avgSize == 0 {
		s.avgSize = per
	} else {
		s.avgSize += (per - s.avgSize) / 16
	}
	s.mu.Unlock()
	return true, nil
}

// lag computes, for the monitor, the messages the receiver has not
// acknowledged, the age of the oldest, an estimate of their bytes, and the
// number of topic partitions known. It reads the store, outside the
// sender's loop, for the topic partitions that may be behind only.
func (s *sender) lag() (uint64, time.Duration, int64, int) {
	s.mu.Lock()
	// A sender that has stopped (its link is down) no longer looks at the
	// news: every topic partition may be behind.
	acked, live := s.t.behind(s.stopped)
	avg := s.avgSize
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var total uint64
	var oldest time.Time
	reads := 0
	for k, a := range acked {
		low, next, err := s.log.Bounds(ctx, k.topic, k.part)
		if err != nil || next <= a {
			continue
		}
		total += next - max(a, low)
		if reads < maxLagReads {
			reads++
			if m, err := s.log.Read(ctx, k.topic, k.part, max(a, low), store.ReadOptions{Limit: 1}); err == nil && len(m) > 0 {
				if oldest.IsZero() || m[0].Timestamp.Before(oldest) {
					oldest = m[0].Timestamp
				}
			}
		}
	}
	var age time.Duration
	if !oldest.IsZero() {
		age = max(0, s.now().Sub(oldest))
	}
	return total, age, int64(float64(total) * avg), live
}
