package replicate

import (
	"context"
	"reflect"
	"sort"
	"time"

	"github.com/weft-io/weft/sync/wire"
)

// DefaultBacklogEvery is how often a side of a link that has a lasting
// backlog reports it to the other (Session.ReportBacklog).
const DefaultBacklogEvery = time.Second

// backlogReport is a sender's last Backlog report of one stream, at the
// receiver.
type backlogReport struct {
	unsent       uint64 // messages the sender had not sent
	bytes        int64  // about their bytes
	sent         uint64 // messages it had sent on this connection
	oldest       int64  // Unix nanoseconds, on this node's clock, of the oldest not acknowledged (0: none)
	unsentOldest int64  // of the oldest not sent (0: none or not known)
	at           int64  // when the report came, Unix nanoseconds
}

// reportStatus fills st from the sender's last report: the messages it had
// not sent, and those it had sent that have not arrived yet (the receiver
// counts what arrives, so the figure stays exact as batches come in).
func (s *StreamStats) reportStatus(st *StreamStatus, rep *backlogReport, now time.Time) {
	inFlight := uint64(0)
	if recv := s.recvMsg.Load(); rep.sent > recv {
		inFlight = rep.sent - recv
	}
	st.LagMessages = rep.unsent + inFlight
	per := int64(0)
	switch {
	case rep.unsent > 0:
		per = rep.bytes / int64(rep.unsent)
	case st.Messages > 0:
		per = st.Bytes / st.Messages
	}
	st.BacklogBytes = rep.bytes + int64(inFlight)*per
	oldest := rep.oldest
	if inFlight == 0 && rep.unsentOldest != 0 {
		// All that was sent is here: the lag is the unsent messages.
		oldest = rep.unsentOldest
	}
	if st.LagMessages > 0 && oldest != 0 {
		st.LagSeconds = max(0, now.Sub(time.Unix(0, oldest)).Seconds())
	}
	st.ReportedAt = time.Unix(0, rep.at).UTC()
}

// backlogs are the figures of the streams this side of the link sends,
// for a Backlog frame; lasting reports whether one of them has had a
// message waiting for at least every.
func (l *LinkStats) backlogs(now time.Time, every time.Duration) (out []wire.StreamBacklog, lasting bool) {
	l.mu.Lock()
	streams := make([]*StreamStats, 0, len(l.streams))
	for _, s := range l.streams {
		if s.dir == DirSend && s.running.Load() {
			streams = append(streams, s)
		}
	}
	l.mu.Unlock()
	sort.Slice(streams, func(i, j int) bool { return streams[i].path < streams[j].path })
	for _, s := range streams {
		s.mu.Lock()
		lag := s.lag
		s.mu.Unlock()
		if lag == nil {
			continue
		}
		f := lag()
		b := wire.StreamBacklog{Path: s.path, Messages: f.unsent, Sent: s.sentMsg.Load()}
		s.mu.Lock()
		for _, fl := range s.failures[:min(len(s.failures), wire.MaxReportedFailures)] {
			b.Failed = append(b.Failed, wire.FailedRange{Topic: fl.Topic, Part: fl.Partition, From: fl.From, To: fl.To, Error: fl.Error})
		}
		s.mu.Unlock()
		// Damage waiting is a lasting backlog, even of no known messages.
		lasting = lasting || len(b.Failed) > 0
		if f.msgs > 0 {
			b.Bytes = int64(float64(f.bytes) * float64(f.unsent) / float64(f.msgs))
			if f.oldest != 0 {
				age := now.Sub(time.Unix(0, f.oldest))
				b.Age = max(0, age.Milliseconds())
				lasting = lasting || age >= every
			}
			if f.unsent > 0 && f.unsentOldest != 0 {
				b.UnsentAge = max(0, now.Sub(time.Unix(0, f.unsentOldest)).Milliseconds())
			}
		}
		out = append(out, b)
	}
	return out, lasting
}

// ReportBacklog sends on the link's control stream fc, every `every`
// (default DefaultBacklogEvery), a Backlog frame with the figures of the
// streams this side sends, while one of them has had a message waiting
// that long (a stall, a full window, a slow link, a long catch-up), and
// once more when that is over, so that the other side shows this side's
// backlog even while no batch moves. A link whose messages are
// acknowledged within the period sends none: on a metered link the
// reports cost nothing at rest. It returns when ctx ends or a send fails.
func (s *Session) ReportBacklog(ctx context.Context, fc *wire.Conn, every time.Duration) error {
	if every <= 0 {
		every = DefaultBacklogEvery
	}
	now := s.Now
	if now == nil {
		now = time.Now
	}
	t := time.NewTicker(every)
	defer t.Stop()
	r := &reporter{link: s.Link, every: every}
	for {
		select {
		case <-t.C:
		case <-ctx.Done():
			return nil
		}
		if b := r.next(now()); b != nil {
			if err := fc.Send(b); err != nil {
				return wire.FromQUIC(err)
			}
		}
	}
}

// reporter decides the Backlog frames of a link, one look at a time.
type reporter struct {
	link     *LinkStats
	every    time.Duration
	last     []wire.StreamBacklog
	reported bool // the last frame sent was of a lasting backlog
}

// next returns the frame to send at now, or nil: one while a backlog
// lasts, and one more when it no longer does (unless it says nothing new).
func (r *reporter) next(now time.Time) *wire.Backlog {
	bl, lasting := r.link.backlogs(now, r.every)
	if !lasting && (!r.reported || reflect.DeepEqual(bl, r.last)) {
		return nil
	}
	r.last, r.reported = bl, lasting
	return &wire.Backlog{Streams: bl}
}

// TakeBacklog files the peer's Backlog report as the figures of the
// streams this side receives; now is when it came.
func (l *LinkStats) TakeBacklog(b *wire.Backlog, now time.Time) {
	for _, sb := range b.Streams {
		l.mu.Lock()
		s, ok := l.streams[DirReceive+sb.Path]
		l.mu.Unlock()
		if !ok {
			continue // not a stream this side receives
		}
		rep := &backlogReport{unsent: sb.Messages, bytes: sb.Bytes, sent: sb.Sent, at: now.UnixNano()}
		if sb.Age > 0 || sb.Messages > 0 {
			rep.oldest = now.Add(-time.Duration(sb.Age) * time.Millisecond).UnixNano()
		}
		if sb.UnsentAge > 0 {
			rep.unsentOldest = now.Add(-time.Duration(sb.UnsentAge) * time.Millisecond).UnixNano()
		}
		s.rep.Store(rep)
		var failed []Failure
		for _, fl := range sb.Failed {
			failed = append(failed, Failure{Topic: fl.Topic, Partition: fl.Part, From: fl.From, To: fl.To, Error: fl.Error})
		}
		s.mu.Lock()
		s.failures = failed
		s.mu.Unlock()
	}
}
