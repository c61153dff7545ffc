package store

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"
)

// StartAt is where a consumer starts on a partition it has no cursor for.
type StartAt int

const (
	// StartOldest starts at the partition's oldest message.
	StartOldest StartAt = iota
	// StartNewest starts at the partition's end: only what comes later is
	// consumed.
	StartNewest
)

// ConsumerConfig configures a Consumer. Group is required; the zero value
// of every other field works.
type ConsumerConfig struct {
	// Group names the consumer's durable cursors (one per topic
	// partition).
	Group string
	// Start is where the consumer starts, on its first pass, on the
	// partitions the group has no cursor for. Default StartOldest. A
	// partition that appears later is always read from its oldest
	// message: nothing in it was there before the consumer ran.
	Start StartAt
	// Fresh, if set, is called once, on the first pass, when the group
	// had no cursor for some partition, after the consumer has fixed
	// where it starts on each and before it consumes anything: for a
	// consumer that catches up by other means with StartNewest (the
	// shadow watcher reconciles every shadow). Those starting positions
	// are recorded as cursors once it returns.
	Fresh func(ctx context.Context) error
	// Skip, if set, names topics the consumer does not follow.
	Skip func(topic string) bool
	// Limit is the most messages in a batch. Default 500.
	Limit int
	// Logger receives the consumer's warnings. Nil discards them.
	Logger *slog.Logger
}

// Batch is the next messages of one topic partition past the consumer's
// cursor.
type Batch struct {
	Topic     string
	Partition int
	Messages  []Message
	// Lost is how many messages the consumer will never read: removed by
	// retention before it read them (its cursor was below the partition's
	// low-water mark) or quarantined as damaged (Stream.Quarantine).
	// Messages start after the gap.
	Lost uint64
}

// Handler processes a batch and returns what to commit with the cursor
// past it. It runs outside the store's writer and may do anything; stage,
// if not nil, runs inside the write transaction that moves the cursor, so
// that what it stages and the cursor are durable together. stage may run
// more than once and must only read and stage through its Tx. A handler
// that fails leaves the cursor where it was: the batch comes again.
type Handler func(ctx context.Context, b Batch) (stage func(tx *Tx) error, err error)

// Consumer follows every topic and partition of a stream for one consumer
// group: it hands each new batch to a handler and commits the group's
// cursor past it in the same transaction as what the handler writes, so a
// restart neither loses nor repeats a batch. It is woken by commits to the
// stream, never polls, and after its first pass looks only at the
// partitions appended to. It is not safe for concurrent use.
type Consumer struct {
	st     *Stream
	cfg    ConsumerConfig
	log    *slog.Logger
	pos    map[TopicPart]uint64 // next offset to consume
	behind map[TopicPart]bool   // partitions that may hold more
	seen   uint64               // the stream's change log cursor
	primed bool
}

// Consumer returns a consumer of the stream for cfg.Group.
func (st *Stream) Consumer(cfg ConsumerConfig) (*Consumer, error) {
	if err := checkName("group", cfg.Group); err != nil {
		return nil, err
	}
	if cfg.Limit <= 0 {
		cfg.Limit = 500
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Consumer{st: st, cfg: cfg, log: log, pos: map[TopicPart]uint64{}, behind: map[TopicPart]bool{}}, nil
}

// Run consumes until ctx ends, then returns nil. A pass that fails (a
// store error, a handler's error, a panic) is logged and retried with a
// growing pause, from the durable cursors.
func (c *Consumer) Run(ctx context.Context, handle Handler) error {
	failures := 0
	for {
		changed := c.st.Changed()
		more, err := c.safePass(ctx, handle)
		if ctx.Err() != nil {
			return nil
		}
		var retry <-chan time.Time
		switch {
		case err != nil:
			failures++
			c.log.Warn("consumer pass failed; retrying", "stream", c.st.path, "group", c.cfg.Group, "err", err, "failures", failures)
			retry = time.After(min(time.Duration(failures)*time.Second, 30*time.Second))
			changed = nil
		case more:
			failures = 0
			continue
		default:
			failures = 0
		}
		select {
		case <-changed:
		case <-retry:
		case <-ctx.Done():
			return nil
		}
	}
}

// safePass is Pass, turning a panic into an error and forgetting the
// positions in memory, so that the next pass starts from the cursors.
func (c *Consumer) safePass(ctx context.Context, handle Handler) (more bool, err error) {
	defer func() {
		if r := recover(); r != nil {
			c.pos, c.behind, c.seen, c.primed = map[TopicPart]uint64{}, map[TopicPart]bool{}, 0, false
			err = fmt.Errorf("store: consumer %s of %s panicked: %v\n%s", c.cfg.Group, c.st.path, r, debug.Stack())
		}
	}()
	return c.Pass(ctx, handle)
}

// Pass consumes one batch of every partition that has news and reports
// whether some partition may hold more. Run calls it in a loop.
func (c *Consumer) Pass(ctx context.Context, handle Handler) (more bool, err error) {
	defer func() {
		if err != nil {
			c.seen = 0 // what this pass did not reach: the next looks at every partition
		}
	}()
	parts, next, complete := c.st.Changes(c.seen)
	if !complete || !c.primed {
		if parts, err = c.allParts(ctx); err != nil {
			return false, err
		}
	}
	c.seen = next
	for tp := range c.behind {
		parts = append(parts, tp)
	}
	if err := c.prime(ctx, parts); err != nil {
		return false, err
	}
	done := map[TopicPart]bool{}
	for _, tp := range parts {
		if done[tp] || (c.cfg.Skip != nil && c.cfg.Skip(tp.Topic)) {
			continue
		}
		done[tp] = true
		full, err := c.consume(ctx, tp, handle)
		if err != nil {
			return false, err
		}
		if full {
			c.behind[tp] = true
		} else {
			delete(c.behind, tp)
		}
	}
	return len(c.behind) > 0, nil
}

// allParts lists every topic partition of the stream.
func (c *Consumer) allParts(ctx context.Context) ([]TopicPart, error) {
	info, err := c.st.v.s.Stat(ctx, c.st.path)
	if err != nil {
		return nil, err
	}
	var parts []TopicPart
	after := ""
	for {
		const page = 1000
		topics, err := c.st.Topics(ctx, "", after, page)
		if err != nil {
			return nil, err
		}
		for _, t := range topics {
			for p := range max(info.Partitions, 1) {
				parts = append(parts, TopicPart{t, p})
			}
		}
		if len(topics) < page {
			return parts, nil
		}
		after = topics[len(topics)-1]
	}
}

// prime finds where the consumer is in each partition it has no position
// for yet: the group's cursor, or where it starts.
func (c *Consumer) prime(ctx context.Context, parts []TopicPart) error {
	var fresh []TopicPart
	for _, tp := range parts {
		if _, ok := c.pos[tp]; ok || (c.cfg.Skip != nil && c.cfg.Skip(tp.Topic)) {
			continue
		}
		off, ok, err := c.st.Cursor(ctx, c.cfg.Group, tp.Topic, tp.Partition)
		if err != nil {
			return err
		}
		if !ok {
			low, end, err := c.st.Bounds(ctx, tp.Topic, tp.Partition)
			if err != nil {
				return err
			}
			off = low
			if !c.primed && c.cfg.Start == StartNewest {
				off = end
			}
			if !c.primed {
				fresh = append(fresh, tp)
			}
		}
		c.pos[tp] = off
	}
	first := !c.primed
	c.primed = true
	if !first || len(fresh) == 0 || c.cfg.Fresh == nil {
		return nil
	}
	if err := c.cfg.Fresh(ctx); err != nil {
		c.primed = false // call it again on the next pass
		return err
	}
	return c.st.v.s.Write(ctx, func(tx *Tx) error {
		for _, tp := range fresh {
			if err := tx.SetCursor(c.st.path, c.cfg.Group, tp.Topic, tp.Partition, c.pos[tp]); err != nil {
				return err
			}
		}
		return nil
	})
}

// consume hands the next batch of one partition to handle and commits the
// cursor past it; full reports that there may be more.
func (c *Consumer) consume(ctx context.Context, tp TopicPart, handle Handler) (full bool, err error) {
	from := c.pos[tp]
	b := Batch{Topic: tp.Topic, Partition: tp.Partition}
	var start uint64
	b.Messages, start, err = c.st.ReadPast(ctx, tp.Topic, tp.Partition, from, ReadOptions{Limit: c.cfg.Limit})
	if start > from {
		c.log.Warn("consumer skipped messages removed by retention or quarantined", "stream", c.st.path, "group", c.cfg.Group,
			"topic", tp.Topic, "partition", tp.Partition, "from", from, "to", start)
		b.Lost, from = start-from, start
	}
	if err != nil {
		return false, fmt.Errorf("store: consumer %s of %s topic %q partition %d: %w", c.cfg.Group, c.st.path, tp.Topic, tp.Partition, err)
	}
	if len(b.Messages) == 0 && b.Lost == 0 {
		return false, nil
	}
	stage, err := handle(ctx, b)
	if err != nil {
		return false, err
	}
	next := from
	if n := len(b.Messages); n > 0 {
		next = b.Messages[n-1].Offset + 1
	}
	// The batch is handled (a downlink has published it): its cursor is
	// committed even if ctx ends meanwhile, or a restart would hand it
	// over again.
	err = c.st.v.s.Write(context.WithoutCancel(ctx), func(tx *Tx) error {
		if stage != nil {
			if err := stage(tx); err != nil {
				return err
			}
		}
		return tx.SetCursor(c.st.path, c.cfg.Group, tp.Topic, tp.Partition, next)
	})
	if err != nil {
		return false, err
	}
	c.pos[tp] = next
	return len(b.Messages) > 0, nil // look again: a read may stop short of the limit
}
