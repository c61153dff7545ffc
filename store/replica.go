package store

import (
	"context"
	"encoding/binary"
	"fmt"
)

// ReplicaBatch is a run of messages a replica applies at the offsets its
// source gave them: Messages carry dense offsets from their first one.
type ReplicaBatch struct {
	Path      string
	Topic     string
	Partition int
	Messages  []Message
	// Low is the source's low-water mark. When the batch starts past the
	// replica's next offset and Low is at or past the batch's first
	// offset, the source has trimmed what lies between: the replica's
	// low-water mark moves to the batch instead of refusing a gap.
	Low uint64
	// Gap, with no Messages, says that the source quarantined offsets
	// [Gap.From, Gap.To) of the partition (Stream.Quarantine): they will
	// never come. The replica records the same gap (see
	// Store.ApplyReplica) and goes on from Gap.To. Reason says why, for
	// the audit record.
	Gap    *Gap
	Reason string
}

// ApplyReplica applies batches at their source offsets in one durable
// commit, the way a replica follows its source (one writer per topic, so
// offsets are the same at both ends). What a replica holds already is
// skipped: applying the same batch twice changes nothing. It returns how
// many messages of each batch were new. A batch that would leave a gap is
// refused with ErrGap, unless the source trimmed the gap away (Low): then
// the replica's low-water mark moves to the batch and what it held below
// goes, so its offsets stay dense.
//
// A batch with a Gap records offsets its source quarantined: the part of
// the range the replica does not hold yet becomes a gap of the replica,
// exactly as Stream.Quarantine records one (Stream.Gaps lists it, a read
// from inside it fails with a *GapError naming it, ReadPast and consumers
// step over it, Info.Quarantined counts it, the audit stream records
// "stream.gap"), and the replica's next offset moves to its end, so the
// offsets after it line up with the source's. It is not an error and
// nothing is hidden: the hole is named wherever the replica is read. A
// gap that starts past the replica's end is refused with ErrGap like a
// batch; one the replica holds already changes nothing.
func (s *Store) ApplyReplica(ctx context.Context, batches []ReplicaBatch) ([]int, error) {
	size := 0
	for _, b := range batches {
		if b.Gap != nil {
			if len(b.Messages) > 0 || b.Gap.To <= b.Gap.From {
				return nil, fmt.Errorf("%w: %s topic %q: a replica gap %d-%d with messages or no offsets", ErrInvalid, b.Path, b.Topic, b.Gap.From, b.Gap.To)
			}
			size += 256
		}
		for i := range b.Messages {
			size += encodedSize(&b.Messages[i])
		}
		for i := range b.Messages {
			if b.Messages[i].Offset != b.Messages[0].Offset+uint64(i) {
				return nil, fmt.Errorf("%w: %s topic %q: offsets of a replica batch are not dense", ErrInvalid, b.Path, b.Topic)
			}
		}
	}
	var applied []int
	err := s.do(ctx, size, false, func(w *wtx) error {
		applied = make([]int, len(batches))
		type plan struct {
			m       *Info
			vol     string
			name    string
			from    int    // first message not yet held
			moveLow bool   // the low-water mark jumps to the batch
			moveTo  uint64 // where it jumps
			gap     Gap    // offsets to record as a gap (Gap batches)
		}
		plans := make([]plan, len(batches))
		need := map[string]int{}
		heads := map[string]uint64{} // next offset per partition as planned so far
		for i, b := range batches {
			m, vol, name, err := w.object(b.Path, KindStream)
			if err != nil {
				return err
			}
			if err := checkTopic(b.Topic); err != nil {
				return err
			}
			if b.Partition < 0 || b.Partition >= m.Partitions {
				return fmt.Errorf("%w: %s has %d partitions, asked for %d", ErrBadPartition, b.Path, m.Partitions, b.Partition)
			}
			p := plan{m: m, vol: vol, name: name}
			if b.Gap != nil {
				id := partID(b.Path, b.Topic, b.Partition)
				next, ok := heads[id]
				if !ok {
					h, err := w.head(b.Path, vol, name, b.Topic, b.Partition)
					if err != nil {
						return err
					}
					next = h.next
				}
				switch {
				case next >= b.Gap.To: // held already
				case next < b.Gap.From:
					return fmt.Errorf("%w: %s topic %q partition %d: replica is at %d, the source's gap starts at %d", ErrGap, b.Path, b.Topic, b.Partition, next, b.Gap.From)
				default:
					p.gap = Gap{From: next, To: b.Gap.To}
					heads[id] = b.Gap.To
				}
				plans[i] = p
				continue
			}
			if len(b.Messages) == 0 {
				plans[i] = p
				continue
			}
			id := partID(b.Path, b.Topic, b.Partition)
			next, ok := heads[id]
			if !ok {
				h, err := w.head(b.Path, vol, name, b.Topic, b.Partition)
				if err != nil {
					return err
				}
				next = h.next
			}
			first := b.Messages[0].Offset
			end := first + uint64(len(b.Messages))
			switch {
			case end <= next:
				p.from = len(b.Messages) // all held already
			case first <= next:
				p.from = int(next - first)
			case b.Low >= first:
				p.moveLow, p.moveTo = true, first
			default:
				return fmt.Errorf("%w: %s topic %q partition %d: replica is at %d, batch starts at %d", ErrGap, b.Path, b.Topic, b.Partition, next, first)
			}
			if end > next {
				heads[id] = end
			}
			for j := p.from; j < len(b.Messages); j++ {
				need[vol] += encodedSize(&b.Messages[j])
			}
			plans[i] = p
		}
		for vol, n := range need {
			if err := w.checkQuota(vol, n); err != nil {
				return err
			}
		}
		for i, b := range batches {
			p := plans[i]
			if p.gap.To > p.gap.From {
				if err := w.replicaGap(b.Path, b.Topic, b.Partition, p.gap, b.Reason); err != nil {
					return err
				}
				continue
			}
			if p.from >= len(b.Messages) {
				continue
			}
			if p.moveLow {
				h, err := w.head(b.Path, p.vol, p.name, b.Topic, b.Partition)
				if err != nil {
					return err
				}
				h.low, h.next = p.moveTo, p.moveTo
				if err := w.put(p.vol, lowKey(p.vol, p.name, b.Topic, b.Partition), binary.BigEndian.AppendUint64(nil, p.moveTo)); err != nil {
					return err
				}
			}
			if _, err := w.stage(b.Path, p.m, b.Topic, b.Partition, b.Messages[p.from:]); err != nil {
				return err
			}
			applied[i] = len(b.Messages) - p.from
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Batches left below a moved low-water mark are unreadable; remove them.
	for i, b := range batches {
		if applied[i] > 0 && len(b.Messages) > 0 && b.Low >= b.Messages[0].Offset {
			if err := s.trimBelow(ctx, b.Path, b.Topic, b.Partition, b.Messages[0].Offset); err != nil {
				return applied, err
			}
		}
	}
	return applied, nil
}
