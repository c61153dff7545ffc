package replicate

import (
	"fmt"
	"slices"
	"sort"

	"github.com/weft-io/weft/sync/wire"
)

// tp names a topic partition.
type tp struct {
	topic string
	part  int
}

func (k tp) String() string { return fmt.Sprintf("%q/%d", k.topic, k.part) }

// topicState is what a sender knows of one topic partition.
type topicState struct {
	acked   uint64 // the receiver's next offset, as last acknowledged
	sent    uint64 // the next offset to send
	epoch   uint64 // bumped when the sender goes back after a gap
	refused bool   // the receiver does not take it: never sent
}

// flight is a batch sent and not yet acknowledged.
type flight struct {
	key   tp
	first uint64
	count int
	bytes int
	epoch uint64
}

// tracker is a sender's state: where each topic partition stands, the
// batches in flight, and the window that bounds them. Acknowledgements
// arrive in the order batches were sent (one stream, one receiver loop).
// It does no I/O.
type tracker struct {
	topics   map[tp]*topicState
	dirty    map[tp]bool // known topic partitions that may have more to send
	passFrom tp          // where the last pass started, for fairness
	queue    []flight
	inflight int // bytes
	window   int
}

func newTracker(window int) *tracker {
	return &tracker{topics: map[tp]*topicState{}, dirty: map[tp]bool{}, window: window}
}

// known reports whether the receiver's position of k is known.
func (t *tracker) known(k tp) bool { _, ok := t.topics[k]; return ok }

// position records the receiver's position of k, from Positions.
func (t *tracker) position(k tp, next uint64) {
	if s, ok := t.topics[k]; ok {
		s.acked = max(s.acked, next)
		return
	}
	t.topics[k] = &topicState{acked: next, sent: next}
	t.dirty[k] = true
}

func less(a, b tp) bool {
	if a.topic != b.topic {
		return a.topic < b.topic
	}
	return a.part < b.part
}

// refuse records that the receiver does not take k.
func (t *tracker) refuse(k tp) {
	if _, ok := t.topics[k]; !ok {
		t.topics[k] = &topicState{refused: true}
		return
	}
	t.topics[k].refused = true
	delete(t.dirty, k)
}

// touch marks k, if it is known and taken, as possibly having more to send.
func (t *tracker) touch(k tp) {
	if s, ok := t.topics[k]; ok && !s.refused {
		t.dirty[k] = true
	}
}

// touchAll marks every known topic partition taken.
func (t *tracker) touchAll() {
	for k := range t.topics {
		t.touch(k)
	}
}

// done records that k has nothing more to send for now.
func (t *tracker) done(k tp) { delete(t.dirty, k) }

// full reports whether the window allows no more batches.
func (t *tracker) full() bool { return t.inflight >= t.window }

// next returns where k's next batch starts.
func (t *tracker) next(k tp) uint64 { return t.topics[k].sent }

// pass returns the topic partitions that may have more to send, in the
// order a sending pass visits them: by topic and partition, starting after
// where the last pass started, so that none always goes first.
func (t *tracker) pass() []tp {
	out := make([]tp, 0, len(t.dirty))
	for k := range t.dirty {
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b tp) int {
		if less(a, b) {
			return -1
		}
		return 1
	})
	i := sort.Search(len(out), func(i int) bool { return less(t.passFrom, out[i]) })
	if i == len(out) {
		i = 0
	}
	if len(out) > 0 {
		t.passFrom = out[i]
	}
	return slices.Concat(out[i:], out[:i])
}

// skip moves k's send position forward to from (the source trimmed what
// lies before it) and returns how many offsets were skipped.
func (t *tracker) skip(k tp, from uint64) uint64 {
	s := t.topics[k]
	if from <= s.sent {
		return 0
	}
	n := from - s.sent
	s.sent = from
	return n
}

// sent records a batch sent.
func (t *tracker) sent(k tp, first uint64, count, bytes int) {
	s := t.topics[k]
	s.sent = first + uint64(count)
	t.queue = append(t.queue, flight{key: k, first: first, count: count, bytes: bytes, epoch: s.epoch})
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
	r := ackResult{flight: f}
	if a.Gap {
		// The receiver is behind what was sent: go back, once per epoch
		// (later batches of the same epoch gap too).
		s.acked = a.Next
		if f.epoch == s.epoch {
			s.sent = a.Next
			s.epoch++
			r.rewound = true
			t.touch(f.key)
		}
		return r, nil
	}
	s.acked = max(s.acked, a.Next)
	return r, nil
}

// behind returns the acknowledged position of the topic partitions that
// may be behind their source: with all, every one taken; else those with
// something sent and not acknowledged, or with news not yet sent (the
// others were caught up at the sender's last look). live is the number of
// known topic partitions taken.
func (t *tracker) behind(all bool) (acked map[tp]uint64, live int) {
	acked = map[tp]uint64{}
	for k, s := range t.topics {
		if s.refused {
			continue
		}
		live++
		if all || t.dirty[k] || s.acked < s.sent {
			acked[k] = s.acked
		}
	}
	return acked, live
}
