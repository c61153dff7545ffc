package replicate

import (
	"container/heap"
	"fmt"

	"github.com/weft-io/weft/sync/wire"
)

// tp names a topic partition.
type tp struct {
	topic string
	part  int
}

func (k tp) String() string { return fmt.Sprintf("%q/%d", k.topic, k.part) }

// defaultKeepIdle is how many caught-up topic partitions a tracker keeps
// beyond those behind: the recently active ones, so that their next news
// needs no new offer. The others are let go; their positions are asked
// again when they have news.
const defaultKeepIdle = 1024

// topicState is what a sender knows of one topic partition.
type topicState struct {
	key     tp
	acked   uint64 // the receiver's next offset, as last acknowledged
	sent    uint64 // the next offset to send
	end     uint64 // the source's next offset, as last seen
	epoch   uint64 // bumped when the sender goes back after a gap
	refused bool   // the receiver does not take it: never sent
	failed  string // a data error at sent: not sent until retried
	flights int    // batches in flight

	// due is the Unix nanoseconds of the oldest data not yet sent (a
	// lower bound: the last message sent, or when the news was seen; 0 when
	// not known, which goes first). Topic partitions are served oldest
	// data first, ties in the order they got news (seq).
	due int64
	seq uint64
	idx int // in the tracker's heap of partitions to send; -1 when not in it

	idleAt uint64 // the stamp of its entry in the idle queue; 0 when not idle
}

// flight is a batch sent and not yet acknowledged.
type flight struct {
	key   tp
	first uint64
	count int
	bytes int
	epoch uint64
	time  int64 // Unix nanoseconds of its first message
	gap   bool  // a Gap frame: offsets quarantined at the source, no messages
}

type idleEntry struct {
	key   tp
	stamp uint64
}

// tracker is a sender's state: where each topic partition behind its
// source stands (and a few recently active ones), the batches in flight,
// the window that bounds them, and the sums the figures are read from. It
// does no I/O. Acknowledgements arrive in the order batches were sent (one
// stream, one receiver loop).
type tracker struct {
	topics   map[tp]*topicState
	dirty    dueHeap // partitions that may have more to send, oldest data first
	seq      uint64
	queue    []flight
	inflight int // bytes
	window   int

	keepIdle int // 0: defaultKeepIdle
	idle     []idleEntry
	nidle    int
	stamp    uint64

	// Sums over the partitions taken: lag is end-acked, unsent end-sent.
	lag, unsent uint64
	live        int
	failed      map[tp]*topicState
}

func newTracker(window int) *tracker {
	return &tracker{topics: map[tp]*topicState{}, window: window, failed: map[tp]*topicState{}}
}

// dueHeap orders partitions oldest data first.
type dueHeap []*topicState

func (h dueHeap) Len() int { return len(h) }
func (h dueHeap) Less(i, j int) bool {
	if h[i].due != h[j].due {
		return h[i].due < h[j].due
	}
	return h[i].seq < h[j].seq
}
func (h dueHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = i, j
}
func (h *dueHeap) Push(x any) { s := x.(*topicState); s.idx = len(*h); *h = append(*h, s) }
func (h *dueHeap) Pop() any {
	old := *h
	s := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	s.idx = -1
	return s
}

// sat is a-b, or 0 when b is past a.
func sat(a, b uint64) uint64 {
	if a > b {
		return a - b
	}
	return 0
}

// unaccount and account take s out of the sums and put it back, around a
// change.
func (t *tracker) unaccount(s *topicState) {
	if s.refused {
		return
	}
	t.lag -= sat(s.end, s.acked)
	t.unsent -= sat(s.end, s.sent)
}

func (t *tracker) account(s *topicState) {
	if s.refused {
		return
	}
	t.lag += sat(s.end, s.acked)
	t.unsent += sat(s.end, s.sent)
}

// known reports whether the receiver's position of k is known.
func (t *tracker) known(k tp) bool { _, ok := t.topics[k]; return ok }

// position records the receiver's position of k, from Positions, and the
// source's end as offered.
func (t *tracker) position(k tp, next, end uint64) {
	if s, ok := t.topics[k]; ok {
		t.unaccount(s)
		s.acked = max(s.acked, next)
		s.end = max(s.end, end)
		t.account(s)
		t.settle(s)
		return
	}
	s := &topicState{key: k, acked: next, sent: next, end: end, idx: -1}
	t.topics[k] = s
	t.live++
	t.account(s)
	if next < end {
		t.push(s, 0)
	}
	t.settle(s)
}

// refuse records that the receiver does not take k.
func (t *tracker) refuse(k tp) {
	s, ok := t.topics[k]
	if !ok {
		t.topics[k] = &topicState{key: k, refused: true, idx: -1}
		return
	}
	if s.refused {
		return
	}
	t.unaccount(s)
	t.live--
	s.refused = true
	t.pop(s)
	t.unidle(s)
}

// push puts s among the partitions to send, due at due if it has nothing
// older pending.
func (t *tracker) push(s *topicState, due int64) {
	if s.refused || s.failed != "" || s.idx >= 0 {
		return
	}
	t.unidle(s)
	t.seq++
	s.seq = t.seq
	if s.acked == s.sent || s.due == 0 {
		s.due = due
	}
	heap.Push(&t.dirty, s)
}

func (t *tracker) pop(s *topicState) {
	if s.idx >= 0 {
		heap.Remove(&t.dirty, s.idx)
	}
}

// touch marks k, if it is known and taken, as possibly having more to
// send, up to end (the source's next offset, when known, else 0): its
// news are no older than at (Unix nanoseconds).
func (t *tracker) touch(k tp, end uint64, at int64) {
	s, ok := t.topics[k]
	if !ok || s.refused {
		return
	}
	if end > s.end {
		t.unaccount(s)
		s.end = end
		t.account(s)
	}
	t.push(s, at)
}

// touchAll marks every known topic partition taken.
func (t *tracker) touchAll(at int64) {
	for _, s := range t.topics {
		t.push(s, at)
	}
}

// retry marks the partitions that failed on a data error for another try.
func (t *tracker) retry() {
	for k, s := range t.failed {
		s.failed = ""
		delete(t.failed, k)
		t.push(s, 0)
	}
}

// fail records a data error at k's send position: k is not sent until
// retried.
func (t *tracker) fail(k tp, why string) {
	s := t.topics[k]
	t.pop(s)
	s.failed = why
	t.failed[k] = s
}

// pick returns the partition to send from next: the one with the oldest
// data not sent.
func (t *tracker) pick() (tp, bool) {
	if len(t.dirty) == 0 {
		return tp{}, false
	}
	return t.dirty[0].key, true
}

// done records that k has nothing more to send for now: the source ends
// where the send position is.
func (t *tracker) done(k tp) {
	s, ok := t.topics[k]
	if !ok {
		return
	}
	t.pop(s)
	if s.failed == "" && s.end != s.sent {
		t.unaccount(s)
		s.end = s.sent
		t.account(s)
	}
	t.settle(s)
}

// full reports whether the window allows no more batches.
func (t *tracker) full() bool { return t.inflight >= t.window }

// next returns where k's next batch starts.
func (t *tracker) next(k tp) uint64 { return t.topics[k].sent }

// skip moves k's send position forward to from (the source trimmed what
// lies before it) and returns how many offsets were skipped.
func (t *tracker) skip(k tp, from uint64) uint64 {
	s := t.topics[k]
	if from <= s.sent {
		return 0
	}
	t.unaccount(s)
	n := from - s.sent
	s.sent = from
	s.end = max(s.end, from)
	t.account(s)
	return n
}

// sent records a batch sent, of messages from first stamped from time
// (Unix nanoseconds) to last.
func (t *tracker) sent(k tp, first uint64, count, bytes int, time, last int64) {
	s := t.topics[k]
	t.unaccount(s)
	s.sent = first + uint64(count)
	s.end = max(s.end, s.sent)
	t.account(s)
	s.flights++
	s.due = last
	if s.idx >= 0 {
		heap.Fix(&t.dirty, s.idx)
	}
	t.queue = append(t.queue, flight{key: k, first: first, count: count, bytes: bytes, epoch: s.epoch, time: time})
	t.inflight += bytes
}

// charge counts the bytes of the batch sent last against the window.
func (t *tracker) charge(bytes int) {
	t.queue[len(t.queue)-1].bytes += bytes
	t.inflight += bytes
}

// ackResult is what an acknowledgement meant.
type ackResult struct {
	flight
	rewound bool // the sender goes back to the receiver's position
}

// ack takes the acknowledgement of the oldest batch in flight.
func (t *tracker) ack(a *wire.Ack) (ackResult, error) {
	if len(t.queue) == 0 {
		return ackResult{}, wire.Errorf(wire.CodeProtocol, "acknowledgement with no batch in flight")
	}
	f := t.queue[0]
	if f.key.topic != a.Topic || f.key.part != a.Part {
		return ackResult{}, wire.Errorf(wire.CodeProtocol, "acknowledgement of %s, expected %s", tp{a.Topic, a.Part}, f.key)
	}
	t.queue[0] = flight{}
	t.queue = t.queue[1:]
	if len(t.queue) == 0 {
		t.queue = nil
	}
	t.inflight -= f.bytes
	s := t.topics[f.key]
	s.flights--
	r := ackResult{flight: f}
	t.unaccount(s)
	if a.Gap {
		// The receiver is behind what was sent: go back, once per epoch
		// (later batches of the same epoch gap too).
		s.acked = a.Next
		if f.epoch == s.epoch {
			s.sent = a.Next
			s.epoch++
			r.rewound = true
			t.account(s)
			t.push(s, 0)
			return r, nil
		}
		t.account(s)
		return r, nil
	}
	s.acked = max(s.acked, a.Next)
	t.account(s)
	t.settle(s)
	return r, nil
}

// settle files s as idle when it is caught up, and lets go of the idle
// partitions beyond the ones kept.
func (t *tracker) settle(s *topicState) {
	if s.refused || s.failed != "" || s.idx >= 0 || s.flights > 0 || s.acked < s.end || s.sent < s.end || s.idleAt != 0 {
		return
	}
	t.stamp++
	s.idleAt = t.stamp
	t.idle = append(t.idle, idleEntry{s.key, t.stamp})
	t.nidle++
	keep := t.keepIdle
	if keep <= 0 {
		keep = defaultKeepIdle
	}
	for t.nidle > keep {
		e := t.idle[0]
		t.idle[0] = idleEntry{}
		t.idle = t.idle[1:]
		if o, ok := t.topics[e.key]; ok && o.idleAt == e.stamp {
			t.nidle--
			t.unaccount(o)
			t.live--
			delete(t.topics, e.key)
		}
	}
	if len(t.idle) > 4*keep+64 {
		// Drop the entries of partitions that became busy again.
		out := t.idle[:0]
		for _, e := range t.idle {
			if o, ok := t.topics[e.key]; ok && o.idleAt == e.stamp {
				out = append(out, e)
			}
		}
		clear(t.idle[len(out):])
		t.idle = out
	}
}

func (t *tracker) unidle(s *topicState) {
	if s.idleAt != 0 {
		s.idleAt = 0
		t.nidle--
	}
}

// oldest is the Unix nanoseconds of the oldest message not acknowledged,
// as far as the tracker knows (0: none, or not known).
func (t *tracker) oldest() int64 {
	var o int64
	take := func(v int64) {
		if v > 0 && (o == 0 || v < o) {
			o = v
		}
	}
	if len(t.queue) > 0 {
		take(t.queue[0].time)
	}
	if len(t.dirty) > 0 {
		take(t.dirty[0].due)
	}
	for _, s := range t.failed {
		take(s.due)
	}
	return o
}

// oldestUnsent is the Unix nanoseconds of the oldest message not sent yet,
// as far as the tracker knows (0: none, or not known).
func (t *tracker) oldestUnsent() int64 {
	var o int64
	if len(t.dirty) > 0 && t.dirty[0].due > 0 {
		o = t.dirty[0].due
	}
	for _, s := range t.failed {
		if s.due > 0 && (o == 0 || s.due < o) {
			o = s.due
		}
	}
	return o
}

// ends returns the source's end and the acknowledged position of every
// partition kept, for the figures of a stopped sender.
func (t *tracker) ends() map[tp][2]uint64 {
	out := make(map[tp][2]uint64, len(t.topics))
	for k, s := range t.topics {
		if !s.refused {
			out[k] = [2]uint64{s.end, s.acked}
		}
	}
	return out
}
