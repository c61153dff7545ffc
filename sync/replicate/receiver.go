package replicate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/weft-io/weft/store"
	"github.com/weft-io/weft/sync/wire"
)

// Replica is where a receiver applies batches. *store.Store implements it.
type Replica interface {
	ApplyReplica(ctx context.Context, batches []store.ReplicaBatch) ([]int, error)
}

var _ Replica = (*store.Store)(nil)

const (
	applyMaxBytes   = 16 << 20
	applyMaxBatches = 256
)

// receiver applies one stream's batches from one sender.
type receiver struct {
	replica Replica
	log     Log // the replica's copy of the stream, for positions
	path    string
	// allow, if set, says whether the sender may write a topic.
	allow  func(topic string) error
	conn   *wire.Conn
	stats  *StreamStats
	now    func() time.Time
	logger *slog.Logger
}

type work struct {
	offer *wire.Offer
	gap   *wire.Gap
	batch *wire.Batch
	msgs  []store.Message
}

func (r *receiver) run(ctx context.Context) error {
	r.stats.down.Store(0)
	r.stats.recvMsg.Store(0)
	r.stats.rep.Store(nil) // a report of another connection counted other batches
	r.stats.setFailures(nil)
	defer func() { r.stats.down.Store(r.now().UnixNano()) }()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	in := make(chan work, 64)
	errc := make(chan error, 1)
	go func() {
		for {
			m, err := r.conn.Recv()
			if err != nil {
				errc <- wire.FromQUIC(err)
				return
			}
			var w work
			switch m := m.(type) {
			case *wire.Offer:
				w.offer = m
			case *wire.Gap:
				if r.allow != nil {
					if err := r.allow(m.Topic); err != nil {
						errc <- wire.Errorf(wire.CodeProtocol, "gap of refused topic %q: %v", m.Topic, err)
						return
					}
				}
				w.gap = m
			case *wire.Batch:
				if r.allow != nil {
					if err := r.allow(m.Topic); err != nil {
						errc <- wire.Errorf(wire.CodeProtocol, "batch of refused topic %q: %v", m.Topic, err)
						return
					}
				}
				msgs, err := m.Messages()
				if err != nil {
					errc <- err
					return
				}
				w.batch, w.msgs = m, msgs
				r.stats.recvMsg.Add(uint64(m.Count))
			case *wire.Error:
				m.Remote = true
				errc <- m
				return
			default:
				errc <- wire.Errorf(wire.CodeProtocol, "receiver of %s got an unexpected frame %T", r.path, m)
				return
			}
			select {
			case in <- w:
			case <-ctx.Done():
				return
			}
		}
	}()
	var group []work
	for {
		var w work
		select {
		case w = <-in:
		case err := <-errc:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
		if w.batch == nil {
			if err := r.other(ctx, w); err != nil {
				return err
			}
			continue
		}
		// Gather the batches that are waiting into one commit.
		group = append(group[:0], w)
		size := w.batch.RawLen
		var after *work
	gather:
		for len(group) < applyMaxBatches && size < applyMaxBytes {
			select {
			case w := <-in:
				if w.batch == nil {
					after = &w
					break gather
				}
				group = append(group, w)
				size += w.batch.RawLen
			default:
				break gather
			}
		}
		if err := r.apply(ctx, group); err != nil {
			return err
		}
		if after != nil {
			if err := r.other(ctx, *after); err != nil {
				return err
			}
		}
	}
}

// other answers what is not a batch: an offer or a gap.
func (r *receiver) other(ctx context.Context, w work) error {
	if w.gap != nil {
		return r.applyGap(ctx, w.gap)
	}
	return r.positions(ctx, w.offer)
}

// applyGap records in the replica a range the source quarantined, and
// acknowledges it like a batch: the replica's position moves past it.
func (r *receiver) applyGap(ctx context.Context, g *wire.Gap) error {
	reason := g.Reason
	if reason == "" {
		reason = "quarantined at the source"
	}
	_, err := r.replica.ApplyReplica(ctx, []store.ReplicaBatch{{Path: r.path, Topic: g.Topic, Partition: g.Part,
		Gap: &store.Gap{From: g.From, To: g.To}, Reason: reason}})
	if errors.Is(err, store.ErrGap) {
		_, next, err := r.log.Bounds(ctx, g.Topic, g.Part)
		if err != nil {
			return storeError(r.path, err)
		}
		return wire.FromQUIC(r.conn.Send(&wire.Ack{Topic: g.Topic, Part: g.Part, Next: next, Gap: true}))
	}
	if err != nil {
		return storeError(r.path, err)
	}
	r.logger.Warn("the source quarantined a range; recorded as a gap", "topic", g.Topic, "partition", g.Part, "from", g.From, "to", g.To, "reason", reason)
	r.stats.quarantined.Add(int64(g.To - g.From))
	return wire.FromQUIC(r.conn.Send(&wire.Ack{Topic: g.Topic, Part: g.Part, Next: g.To}))
}

// positions answers an offer with the replica's next offsets.
func (r *receiver) positions(ctx context.Context, o *wire.Offer) error {
	p := &wire.Positions{Positions: make([]wire.Position, len(o.Topics))}
	for i, b := range o.Topics {
		if r.allow != nil {
			if err := r.allow(b.Topic); err != nil {
				p.Positions[i] = wire.Position{Topic: b.Topic, Part: b.Part, Refused: err.Error()}
				continue
			}
		}
		_, next, err := r.log.Bounds(ctx, b.Topic, b.Part)
		if err != nil {
			if errors.Is(err, store.ErrBadPartition) || errors.Is(err, store.ErrNotFound) {
				return wire.Errorf(wire.CodeStream, "%s topic %q partition %d: %v", r.path, b.Topic, b.Part, err)
			}
			return fmt.Errorf("replicate: %s positions: %w", r.path, err)
		}
		p.Positions[i] = wire.Position{Topic: b.Topic, Part: b.Part, Next: next}
	}
	return wire.FromQUIC(r.conn.Send(p))
}

// apply applies a group of batches in one commit and acknowledges each.
// A group the store cannot take in one transaction is split in halves,
// and halves of those, down to single batches and then to parts of a
// batch's messages; the pieces are applied in order.
func (r *receiver) apply(ctx context.Context, group []work) error {
	pending := [][]work{group} // a stack: the next piece to apply last
	for len(pending) > 0 {
		g := pending[len(pending)-1]
		pending = pending[:len(pending)-1]
		batches := make([]store.ReplicaBatch, len(g))
		var skipped uint64
		for i, w := range g {
			batches[i] = store.ReplicaBatch{Path: r.path, Topic: w.batch.Topic, Partition: w.batch.Part, Messages: w.msgs, Low: w.batch.Low}
			skipped += r.skipped(ctx, w.batch)
		}
		applied, err := r.replica.ApplyReplica(ctx, batches)
		switch {
		case err == nil:
			r.stats.dropped.Add(int64(skipped))
			for i, w := range g {
				if err := r.ack(w, applied[i]); err != nil {
					return err
				}
			}
		case errors.Is(err, store.ErrGap):
			// Find the batches that gap: apply one at a time.
			for _, w := range g {
				if err := r.apply1(ctx, w); err != nil {
					return err
				}
			}
		case splittable(ctx, err) && len(g) > 1:
			// Perhaps too big for one transaction of this store: halves,
			// the first on top.
			pending = append(pending, g[len(g)/2:], g[:len(g)/2])
		case splittable(ctx, err) && len(g[0].msgs) > 1:
			n, err := r.applySplit(ctx, g[0].batch, g[0].msgs)
			if errors.Is(err, store.ErrGap) {
				err = r.apply1(ctx, g[0]) // answers the gap
			} else if err == nil {
				err = r.ack(g[0], n)
			} else {
				err = storeError(r.path, err)
			}
			if err != nil {
				return err
			}
		default:
			return storeError(r.path, err)
		}
	}
	return nil
}

// splittable reports whether a failed apply may work in smaller pieces.
func splittable(ctx context.Context, err error) bool {
	return ctx.Err() == nil && !errors.Is(err, store.ErrGap) && !errors.Is(err, store.ErrQuotaExceeded) &&
		!errors.Is(err, store.ErrDiskFull) && !errors.Is(err, store.ErrClosed)
}

// applySplit applies one batch's messages in halves, and halves of those,
// for a store whose transactions cannot take the whole batch. It returns
// how many messages were new.
func (r *receiver) applySplit(ctx context.Context, b *wire.Batch, msgs []store.Message) (int, error) {
	type piece struct{ from, to int }
	pending := []piece{{0, len(msgs)}} // a stack: the next piece last
	total := 0
	for len(pending) > 0 {
		p := pending[len(pending)-1]
		pending = pending[:len(pending)-1]
		rb := store.ReplicaBatch{Path: r.path, Topic: b.Topic, Partition: b.Part, Messages: msgs[p.from:p.to]}
		if p.from == 0 {
			// Only the piece that starts the batch starts at the source's
			// low-water mark; the others start past it.
			rb.Low = b.Low
		}
		applied, err := r.replica.ApplyReplica(ctx, []store.ReplicaBatch{rb})
		if err == nil {
			total += applied[0]
			continue
		}
		if p.to-p.from < 2 || !splittable(ctx, err) {
			return total, err
		}
		half := p.from + (p.to-p.from)/2
		pending = append(pending, piece{half, p.to}, piece{p.from, half})
	}
	return total, nil
}

func (r *receiver) apply1(ctx context.Context, w work) error {
	b := w.batch
	skipped := r.skipped(ctx, b)
	applied, err := r.replica.ApplyReplica(ctx, []store.ReplicaBatch{{Path: r.path, Topic: b.Topic, Partition: b.Part, Messages: w.msgs, Low: b.Low}})
	if err == nil {
		r.stats.dropped.Add(int64(skipped))
	}
	if errors.Is(err, store.ErrGap) {
		_, next, err := r.log.Bounds(ctx, b.Topic, b.Part)
		if err != nil {
			return storeError(r.path, err)
		}
		return wire.FromQUIC(r.conn.Send(&wire.Ack{Topic: b.Topic, Part: b.Part, Next: next, Gap: true}))
	}
	if err != nil {
		return storeError(r.path, err)
	}
	return r.ack(w, applied[0])
}

// skipped is how many messages the source dropped before batch b (it
// starts past the replica's end and carries a low-water mark at or before
// its start): the gap the replica's low-water mark moves over. Rare, so the
// replica's end is read only then.
func (r *receiver) skipped(ctx context.Context, b *wire.Batch) uint64 {
	if b.First == 0 || b.Low < b.First {
		return 0
	}
	if _, next, err := r.log.Bounds(ctx, b.Topic, b.Part); err == nil && b.First > next {
		return b.First - next
	}
	return 0
}

func (r *receiver) ack(w work, applied int) error {
	b := w.batch
	dups := b.Count - applied
	if err := r.conn.Send(&wire.Ack{Topic: b.Topic, Part: b.Part, Next: b.First + uint64(b.Count), Applied: applied, Dups: dups}); err != nil {
		return wire.FromQUIC(err)
	}
	r.stats.record(r.now(), applied, b.Size())
	r.stats.dups.Add(int64(dups))
	r.stats.lastTime.Store(w.msgs[len(w.msgs)-1].Timestamp.UnixNano())
	// The sender's backlog of the whole stream once this batch is applied.
	r.stats.backlog.Store(b.Backlog)
	r.stats.reported.Store(r.now().UnixNano())
	return nil
}

// storeError turns a store failure into the wire error the sender is told.
func storeError(path string, err error) error {
	switch {
	case errors.Is(err, store.ErrQuotaExceeded), errors.Is(err, store.ErrDiskFull):
		return wire.Errorf(wire.CodeQuota, "%s: %v", path, err)
	case errors.Is(err, store.ErrClosed), errors.Is(err, context.Canceled):
		return wire.Errorf(wire.CodeShutdown, "%s: %v", path, err)
	}
	return wire.Errorf(wire.CodeStore, "%s: %v", path, err)
}
