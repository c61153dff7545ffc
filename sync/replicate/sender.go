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
	ChangeEnds(cursor uint64) (parts []store.PartEnd, next uint64, complete bool)
}

var _ Log = (*store.Stream)(nil)

const (
	topicPage     = 1000
	readLimit     = 4096
	readMaxBytes  = 4 << 20
	defaultWindow = 32 << 20
)

// defaultRecheck is how long a topic the sender's filter withheld waits
// before the filter is asked again (a device may have come to the edge);
// topic partitions that failed on a data error are tried again as often.
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
	// linger, if positive, is how long news waits before it is read, so
	// that what comes meanwhile goes in the same batches.
	linger   time.Duration
	after    func(time.Duration) <-chan time.Time // the linger's timer; nil: a time.Timer
	keepIdle int                                  // caught-up partitions kept; 0: defaultKeepIdle
	now      func() time.Time
	logger   *slog.Logger
	// allow, if set, decides which topics go to this receiver; the others
	// are withheld and asked about again after recheck.
	allow    func(topic string) error
	recheck  time.Duration // 0: defaultRecheck
	withheld map[string]time.Time
	// gaps: the receiver takes Gap frames (wire.FeatureGap), so a
	// quarantined range is sent as one instead of waiting at it.
	gaps     bool
	cursor   uint64          // in the log's Changes
	lastLook time.Time       // when the news were last read
	changed  <-chan struct{} // closed at the log's next append; nil while a look waits

	mu       sync.Mutex // guards t, avgSize, failures against the loop's helpers
	t        *tracker
	avgSize  float64
	failures map[tp]Failure
	// unoffered are partitions whose bounds could not be read for damage,
	// never offered: the next recheck lists every topic to try them again.
	unoffered map[tp]bool

	in   chan wire.Message
	errc chan error
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

// Wait takes n bytes from the link's budget (urgent as in
// Limiter.Reserve): what a link's mirrors draw from, shared with its
// streams.
func (l *LinkLimiter) Wait(ctx context.Context, n int, urgent bool) error {
	return l.wait(ctx, n, urgent, nil)
}

// wait is Wait that calls tick every tenth of a second while it waits (a
// sender looks at its news meanwhile, so its figures count them however
// slow the link); an error from tick ends the wait.
func (l *LinkLimiter) wait(ctx context.Context, n int, urgent bool, tick func() error) error {
	if l.Rate() == 0 {
		return nil
	}
	var tc <-chan time.Time
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
		if tick != nil && tc == nil && d > 100*time.Millisecond {
			tk := time.NewTicker(100 * time.Millisecond)
			defer tk.Stop()
			tc = tk.C
		}
	sleep:
		for {
			select {
			case <-t.C:
				break sleep
			case <-tc:
				if err := tick(); err != nil {
					t.Stop()
					return err
				}
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

func (s *sender) run(ctx context.Context) error {
	s.t = newTracker(s.window)
	s.t.keepIdle = s.keepIdle
	s.failures = map[tp]Failure{}
	if s.recheck <= 0 {
		s.recheck = defaultRecheck
	}
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

	s.changed = s.log.Changed()
	_, s.cursor, _ = s.log.Changes(0)
	s.lastLook = s.now()
	defer s.stopped()
	if err := s.discover(ctx, false); err != nil {
		return err
	}
	// The figures are this sender's from now on (until then, those a
	// stopped sender left, counted on).
	s.stats.setLag(s.figures)
	s.stats.sentMsg.Store(0)
	s.stats.running.Store(true)
	blocked, err := s.sendAll(ctx)
	if err != nil {
		return err
	}
	var waitTimer *time.Timer
	var waitC <-chan time.Time
	recheck := time.NewTicker(s.recheck)
	defer recheck.Stop()
	cost := time.Duration(0)
	for {
		everything := false
		select {
		case <-recheck.C:
			s.mu.Lock()
			failed := len(s.t.failed) > 0
			s.t.retry()
			unoffered := len(s.unoffered) > 0
			clear(s.unoffered)
			s.mu.Unlock()
			if len(s.withheld) == 0 && !failed && !unoffered {
				continue
			}
			everything = len(s.withheld) > 0 || unoffered
		case <-s.changed:
			s.changed = nil
			// News waits the linger, so that what follows goes with it;
			// and a stream of many topics is looked at no more than every
			// few times the last look took.
			wait := s.linger
			if cost > 5*time.Millisecond {
				wait = max(wait, min(4*cost, time.Second))
			}
			if wait > 0 {
				if s.after != nil {
					waitC = s.after(wait)
				} else {
					waitTimer = time.NewTimer(wait)
					waitC = waitTimer.C
				}
				continue
			}
		case <-waitC:
			waitC = nil
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
		s.changed = s.log.Changed()
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
		if waitTimer != nil {
			waitTimer.Stop()
			waitTimer, waitC = nil, nil
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
		s.publish()
		s.mu.Unlock()
		if err != nil {
			return err
		}
		if r.rewound {
			s.logger.Info("receiver is behind, going back", "topic", m.Topic, "partition", m.Part, "offset", m.Next)
		}
		if r.gap {
			s.stats.quarantined.Add(int64(r.count))
			return nil
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
// since the last look, as the store's change log tells, with their new
// ends; every topic when it cannot tell or when everything is set.
func (s *sender) look(ctx context.Context, everything bool) error {
	parts, next, complete := s.log.ChangeEnds(s.cursor)
	s.cursor = next
	since := s.lastLook.UnixNano() // the news are no older
	s.lastLook = s.now()
	if everything || !complete {
		return s.discover(ctx, !complete)
	}
	var offer []wire.Bound
	for _, p := range parts {
		k := tp{p.Topic, p.Partition}
		s.mu.Lock()
		ok := p.Partition < s.parts && s.allowed(k.topic)
		known := ok && s.t.known(k)
		s.mu.Unlock()
		switch {
		case !ok:
		case known:
			// The change log says how far the partition reaches: no
			// lookup per partition (a damaged one shows on the read).
			s.mu.Lock()
			s.t.touch(k, p.End, since)
			s.mu.Unlock()
		default:
			offer = append(offer, wire.Bound{Topic: k.topic, Part: k.part})
		}
	}
	err := s.offerNew(ctx, offer)
	s.mu.Lock()
	s.publish()
	s.mu.Unlock()
	return err
}

// discover lists the stream's topics and learns the receiver's position
// of those it does not know yet; with lost set (the change log could not
// say what changed) every known one may have more to send too.
func (s *sender) discover(ctx context.Context, lost bool) error {
	at := s.lastLook.UnixNano()
	after := ""
	for {
		topics, err := s.log.Topics(ctx, "", after, topicPage)
		if err != nil {
			return fmt.Errorf("replicate: %s topics: %w", s.path, err)
		}
		var offer, seen []wire.Bound
		s.mu.Lock()
		for _, topic := range topics {
			if !s.allowed(topic) {
				continue
			}
			for p := 0; p < s.parts; p++ {
				if !s.t.known(tp{topic, p}) {
					offer = append(offer, wire.Bound{Topic: topic, Part: p})
				} else if lost {
					seen = append(seen, wire.Bound{Topic: topic, Part: p})
				}
			}
		}
		s.mu.Unlock()
		for _, b := range seen {
			_, end, ok, err := s.bounds(ctx, tp{b.Topic, b.Part})
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			s.mu.Lock()
			s.t.touch(tp{b.Topic, b.Part}, end, at)
			s.mu.Unlock()
		}
		if err := s.offerNew(ctx, offer); err != nil {
			return err
		}
		if len(topics) < topicPage {
			s.mu.Lock()
			s.publish()
			s.mu.Unlock()
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
	sound := offer[:0]
	for _, b := range offer {
		low, next, ok, err := s.bounds(ctx, tp{b.Topic, b.Part})
		if err != nil {
			return err
		}
		if ok {
			b.Low, b.Next = low, next
			sound = append(sound, b)
		}
	}
	if len(sound) == 0 {
		return nil
	}
	return s.offer(ctx, sound)
}

// bounds reads k's bounds at the source. When they cannot be read for
// damage (its last batch is corrupt), k is set aside like a damaged range
// — listed under failed, tried again every recheck — and ok is false: the
// stream's other partitions and the link go on.
func (s *sender) bounds(ctx context.Context, k tp) (low, next uint64, ok bool, err error) {
	low, next, err = s.log.Bounds(ctx, k.topic, k.part)
	switch {
	case err == nil:
		return low, next, true, nil
	case isDataError(err) && ctx.Err() == nil:
		s.mu.Lock()
		known := s.t.known(k) && !s.t.topics[k].refused
		from := uint64(0)
		if known {
			from = s.t.next(k)
		} else {
			if s.unoffered == nil {
				s.unoffered = map[tp]bool{}
			}
			s.unoffered[k] = true
		}
		s.mu.Unlock()
		s.failed(k, from, err)
		return 0, 0, false, nil
	}
	return 0, 0, false, fmt.Errorf("replicate: %s %s: %w", s.path, k, err)
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
			defer s.publish()
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
				k := tp{b.Topic, b.Part}
				s.t.position(k, p.Next, b.Next)
				if _, ok := s.failures[k]; ok && s.t.topics[k].failed == "" {
					// Its bounds read again: not failed unless its data fails.
					delete(s.failures, k)
					delete(s.unoffered, k)
					s.stats.setFailures(s.failures)
				}
			}
			return nil
		case err := <-s.errc:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// sendAll sends what the topics with news hold past what was sent, one
// batch at a time from the topic partition whose oldest unsent data is the
// oldest, until there is nothing more or the window is full (blocked).
func (s *sender) sendAll(ctx context.Context) (blocked bool, err error) {
	for {
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
		// News that came during a long catch-up is looked at every
		// tenth of a second: the figures count it, and it takes its turn
		// by age.
		if s.changed != nil && s.now().Sub(s.lastLook) >= 100*time.Millisecond {
			select {
			case <-s.changed:
				s.changed = s.log.Changed()
				if err := s.look(ctx, false); err != nil {
					return false, err
				}
			default:
			}
		}
		s.mu.Lock()
		k, ok := s.t.pick()
		full := s.t.full()
		s.mu.Unlock()
		if !ok {
			return false, nil
		}
		if full {
			return true, nil
		}
		if err := s.sendOne(ctx, k); err != nil {
			return false, err
		}
	}
}

// lookWhileWaiting takes the acknowledgements and looks at the news that
// came while the sender waits for the link's budget, so that its figures
// (and the backlog it reports to the receiver) are right even when one
// batch waits long.
func (s *sender) lookWhileWaiting(ctx context.Context) error {
	for drained := false; !drained; {
		select {
		case m := <-s.in:
			if err := s.handle(m); err != nil {
				return err
			}
		case err := <-s.errc:
			return err
		default:
			drained = true
		}
	}
	if s.changed == nil || s.now().Sub(s.lastLook) < 100*time.Millisecond {
		return nil
	}
	select {
	case <-s.changed:
		s.changed = s.log.Changed()
		return s.look(ctx, false)
	default:
		return nil
	}
}

// isDataError reports whether err is damage to the stream's data (a
// corrupt or quarantined range), which concerns one topic partition only.
func isDataError(err error) bool {
	return errors.Is(err, store.ErrCorrupt) || errors.Is(err, store.ErrQuarantined)
}

// sendOne sends k's next batch, if it has one, and files k as done when
// the read reached the end of what the source holds.
func (s *sender) sendOne(ctx context.Context, k tp) error {
	s.mu.Lock()
	from := s.t.next(k)
	s.mu.Unlock()
	opts := store.ReadOptions{Limit: readLimit, MaxBytes: s.maxBytes}
	msgs, err := s.log.Read(ctx, k.topic, k.part, from, opts)
	low := uint64(0)
	if errors.Is(err, store.ErrTrimmed) {
		if low, _, err = s.log.Bounds(ctx, k.topic, k.part); err != nil {
			return fmt.Errorf("replicate: %s %s: %w", s.path, k, err)
		}
		s.mu.Lock()
		n := s.t.skip(k, low)
		s.mu.Unlock()
		s.stats.dropped.Add(int64(n))
		s.logger.Warn("messages dropped at the source before they were replicated (retention or a full volume)", "topic", k.topic, "partition", k.part, "from", from, "to", low)
		from = low
		msgs, err = s.log.Read(ctx, k.topic, k.part, from, opts)
	}
	var ge *store.GapError
	if s.gaps && errors.As(err, &ge) && ge.To > from && ctx.Err() == nil {
		return s.sendGap(ctx, k, from, ge)
	}
	if isDataError(err) && ctx.Err() == nil {
		s.failed(k, from, err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("replicate: %s %s: read at %d: %w", s.path, k, from, err)
	}
	if len(msgs) == 0 {
		s.mu.Lock()
		s.t.done(k)
		s.publish()
		s.mu.Unlock()
		return nil
	}
	b, err := wire.NewBatch(k.topic, k.part, low, msgs, s.compress)
	if err != nil {
		return err
	}
	// The budget first: while the batch waits for it, its messages count
	// as not sent (the backlog the receiver is told), and the sender takes
	// acknowledgements and looks at news.
	size := b.Size()
	if err := s.limit.wait(ctx, size, Urgency(s.path) <= Urgency(store.ShadowChanges), func() error { return s.lookWhileWaiting(ctx) }); err != nil {
		return err
	}
	s.mu.Lock()
	if s.t.next(k) != b.First {
		// An acknowledgement sent the partition back meanwhile: it is read
		// again from there.
		s.mu.Unlock()
		return nil
	}
	// The stream's messages the sender will not have sent once this batch
	// is: the receiver's view of the lag.
	s.t.sent(k, b.First, b.Count, 0, msgs[0].Timestamp.UnixNano(), msgs[len(msgs)-1].Timestamp.UnixNano())
	if s.t.next(k) >= s.t.topics[k].end {
		// The read reached the source's end as last seen: the next news
		// will say if there is more.
		s.t.done(k)
	}
	b.Backlog = s.t.unsent
	s.mu.Unlock()
	if err := s.conn.Send(b); err != nil {
		return wire.FromQUIC(err)
	}
	s.stats.sentMsg.Add(uint64(b.Count))
	s.mu.Lock()
	s.t.charge(size)
	per := float64(b.RawLen) / float64(b.Count)
	if s.avgSize == 0 {
		s.avgSize = per
	} else {
		s.avgSize += (per - s.avgSize) / 16
	}
	if _, ok := s.failures[k]; ok {
		delete(s.failures, k)
		s.stats.setFailures(s.failures)
	}
	s.publish()
	s.mu.Unlock()
	return nil
}

// maxGapFlight bounds the offsets one Gap frame covers, so that a flight
// counts them in an int.
const maxGapFlight = 1 << 30

// sendGap tells the receiver that offsets from to ge.To of k were
// quarantined here and will never come: it records the same gap, and the
// offsets after it line up. The Gap frame is a batch in flight like any
// other, acknowledged with the receiver's new position.
func (s *sender) sendGap(ctx context.Context, k tp, from uint64, ge *store.GapError) error {
	g := &wire.Gap{Topic: k.topic, Part: k.part, From: from, To: ge.To, Reason: "quarantined at the source"}
	if g.To-g.From > maxGapFlight {
		g.To = g.From + maxGapFlight // the rest follows as another gap
	}
	s.logger.Warn("sending a quarantined range as a gap", "topic", k.topic, "partition", k.part, "from", g.From, "to", g.To)
	s.mu.Lock()
	s.t.sent(k, g.From, int(g.To-g.From), 0, 0, 0)
	s.t.queue[len(s.t.queue)-1].gap = true
	if s.t.next(k) >= s.t.topics[k].end {
		s.t.done(k)
	}
	s.mu.Unlock()
	const size = 64
	if err := s.limit.Wait(ctx, size, Urgency(s.path) <= Urgency(store.ShadowChanges)); err != nil {
		return err
	}
	if err := s.conn.Send(g); err != nil {
		return wire.FromQUIC(err)
	}
	s.mu.Lock()
	s.t.charge(size)
	if _, ok := s.failures[k]; ok {
		delete(s.failures, k)
		s.stats.setFailures(s.failures)
	}
	s.publish()
	s.mu.Unlock()
	return nil
}

// failed sets k aside after a data error at offset from: the stream's
// figures name the range and the other topic partitions go on. It is tried
// again every recheck (a quarantine may have made the range readable).
func (s *sender) failed(k tp, from uint64, err error) {
	f := Failure{Topic: k.topic, Partition: k.part, From: from, Error: err.Error()}
	var ce *store.CorruptError
	var ge *store.GapError
	switch {
	case errors.As(err, &ge):
		f.From, f.To = ge.From, ge.To
	case errors.As(err, &ce):
		f.From, f.To = ce.From, ce.To
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.failures[k]; !ok {
		s.logger.Error("topic partition not replicated: its data cannot be read", "topic", k.topic, "partition", k.part, "from", f.From, "to", f.To, "err", err)
	}
	if s.t.known(k) {
		s.t.fail(k, err.Error())
	}
	s.failures[k] = f
	s.stats.setFailures(s.failures)
	s.publish()
}

// publish files the sender's figures where the monitor reads them,
// without waiting for the sender. The caller holds s.mu.
func (s *sender) publish() {
	s.stats.fig.Store(&lagFigures{msgs: s.t.lag, oldest: s.t.oldest(), bytes: int64(float64(s.t.lag) * s.avgSize), topics: s.t.live,
		unsent: s.t.unsent, unsentOldest: s.t.oldestUnsent()})
}

// figures are the sender's figures for the monitor, as last published.
func (s *sender) figures() lagFigures {
	if f := s.stats.fig.Load(); f != nil {
		return *f
	}
	return lagFigures{}
}

// stopped hands the figures of a sender that stopped (its link is down)
// to a stoppedLag, which keeps counting what the source gets meanwhile.
func (s *sender) stopped() {
	s.stats.running.Store(false)
	s.mu.Lock()
	d := &stoppedLag{log: s.log, cursor: s.cursor, ends: s.t.ends(), lag: s.t.lag, oldest: s.t.oldest(),
		avg: s.avgSize, live: s.t.live, at: s.now().UnixNano()}
	s.mu.Unlock()
	s.stats.setLag(d.figures)
}

// stoppedLag counts the lag of a stream whose sender stopped: the figures
// it left, and the news the store's change log tells of since.
type stoppedLag struct {
	mu     sync.Mutex
	log    Log
	cursor uint64
	ends   map[tp][2]uint64  // source end and acknowledged position, by partition kept
	pend   []store.TopicPart // news not yet counted
	lag    uint64
	oldest int64
	avg    float64
	live   int
	at     int64 // when the sender stopped
}

func (d *stoppedLag) figures() lagFigures {
	d.mu.Lock()
	defer d.mu.Unlock()
	parts, next, complete := d.log.Changes(d.cursor)
	d.cursor = next
	if complete {
		d.pend = append(d.pend, parts...)
	}
	if len(d.pend) > 0 {
		// A quarter of a second of store reads at most per look at the
		// figures; the rest waits for the next look.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		start := time.Now()
		for len(d.pend) > 0 && time.Since(start) < 250*time.Millisecond {
			p := d.pend[0]
			d.pend = d.pend[1:]
			k := tp{p.Topic, p.Partition}
			_, end, err := d.log.Bounds(ctx, k.topic, k.part)
			if err != nil {
				continue
			}
			e, ok := d.ends[k]
			if !ok {
				// A partition the sender had let go of (caught up): at
				// least one message is new.
				e = [2]uint64{end - min(end, 1), end - min(end, 1)}
				d.live++
			}
			if end > e[0] {
				d.lag += end - e[0]
				e[0] = end
				if d.oldest == 0 {
					d.oldest = d.at
				}
			}
			d.ends[k] = e
		}
	}
	return lagFigures{msgs: d.lag, oldest: d.oldest, bytes: int64(float64(d.lag) * d.avg), topics: d.live, unsent: d.lag, unsentOldest: d.oldest}
}
