package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/weft-io/weft/internal/testenv/wait"
	"slices"
	"sync"
	"testing"
)

// collector is a consumer's handler that records what it was given and
// writes, in the same transaction as the cursor, one table row per
// message.
type collector struct {
	mu   sync.Mutex
	got  map[string][]uint64 // topic/partition -> offsets
	lost uint64
	fail error // returned once by the next call
}

func (c *collector) handle(_ context.Context, b Batch) (func(tx *Tx) error, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.fail; err != nil {
		c.fail = nil
		return nil, err
	}
	k := fmt.Sprintf("%s/%d", b.Topic, b.Partition)
	for _, m := range b.Messages {
		c.got[k] = append(c.got[k], m.Offset)
	}
	c.lost += b.Lost
	return func(tx *Tx) error {
		for _, m := range b.Messages {
			if _, err := tx.Put("/telemetry/seen", fmt.Sprintf("%s-%d", k, m.Offset), json.RawMessage(`true`)); err != nil {
				return err
			}
		}
		return nil
	}, nil
}

func (c *collector) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, offs := range c.got {
		n += len(offs)
	}
	return n
}

func newCollector() *collector { return &collector{got: map[string][]uint64{}} }

// runConsumer runs a consumer of the group until the returned stop.
func runConsumer(t *testing.T, st *Stream, cfg ConsumerConfig, c *collector) (stop func()) {
	t.Helper()
	cons, err := st.Consumer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); cons.Run(ctx, c.handle) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

func waitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	wait.For(t, 0, what, ok)
}

// TestConsumer: every message of every topic and partition is handed over
// once and in order per partition, woken by appends; what the handler
// stages commits with the cursor; a new consumer of the group resumes
// after it; a failed batch comes again.
func TestConsumer(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	if err := s.CreateStream(ctx, "/telemetry/s", StreamOptions{Partitions: 3}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateTable(ctx, "/telemetry/seen", TableOptions{}); err != nil {
		t.Fatal(err)
	}
	st := s.Stream("/telemetry/s")
	appendAll := func(round int) {
		for i := range 30 {
			key := []byte(fmt.Sprintf("k%d", i)) // spread over the partitions
			if _, err := st.Append(ctx, fmt.Sprintf("t%d", i%4), Message{Key: key, Value: fmt.Appendf(nil, "%d-%d", round, i)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	appendAll(0) // before the consumer starts
	c := newCollector()
	stop := runConsumer(t, st, ConsumerConfig{Group: "g", Limit: 7}, c)
	waitUntil(t, "the first 30", func() bool { return c.total() == 30 })
	appendAll(1) // while it runs: woken, no polling
	waitUntil(t, "60", func() bool { return c.total() == 60 })
	stop()

	parts := map[int]bool{}
	for k, offs := range c.got {
		var topic string
		var part int
		fmt.Sscanf(k, "%2s/%d", &topic, &part)
		parts[part] = true
		if !slices.IsSorted(offs) || offs[0] != 0 || int(offs[len(offs)-1]) != len(offs)-1 {
			t.Fatalf("%s: offsets %v, want 0..n in order once each", k, offs)
		}
	}
	if len(parts) != 3 {
		t.Fatalf("messages seen in partitions %v, want all three", parts)
	}
	rows, _, err := s.Table("/telemetry/seen").Scan(ctx, "", "", 1000)
	if err != nil || len(rows) != 60 {
		t.Fatalf("rows written with the cursors: %d %v", len(rows), err)
	}

	// A new consumer of the group resumes after the cursors; a failing
	// batch is handed over again.
	appendAll(2)
	c2 := newCollector()
	c2.fail = errors.New("not now")
	runConsumer(t, st, ConsumerConfig{Group: "g"}, c2)
	waitUntil(t, "the 30 new ones", func() bool { return c2.total() == 30 })
	for k, offs := range c2.got {
		if len(offs) == 0 || offs[0] < uint64(len(c.got[k])) {
			t.Fatalf("%s: resumed at %v, after %d consumed", k, offs, len(c.got[k]))
		}
	}
}

// TestConsumerStartNewest: a consumer starting at the end of the
// partitions it has no cursor for calls Fresh once and consumes only what
// comes later; a topic that appears later is read from its start.
func TestConsumerStartNewest(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	s.CreateTable(ctx, "/telemetry/seen", TableOptions{})
	st := s.Stream(EventsStream)
	st.Append(ctx, "old", Message{Value: []byte("before")})
	c := newCollector()
	fresh := 0
	stop := runConsumer(t, st, ConsumerConfig{Group: "g", Start: StartNewest, Fresh: func(context.Context) error { fresh++; return nil }}, c)
	// Fresh runs before the first pass ends; an append after it is news.
	waitUntil(t, "the fresh start", func() bool {
		_, ok, _ := st.Cursor(ctx, "g", "old", 0)
		return ok
	})
	st.Append(ctx, "old", Message{Value: []byte("after")})
	st.Append(ctx, "new", Message{Value: []byte("first"), Key: []byte("x")}, Message{Value: []byte("second"), Key: []byte("x")})
	waitUntil(t, "three", func() bool { return c.total() == 3 })
	stop()
	if fresh != 1 || len(c.got["old/0"]) != 1 || c.got["old/0"][0] != 1 {
		t.Fatalf("fresh %d, got %v", fresh, c.got)
	}
}

// TestConsumerLost: messages removed by retention before the consumer
// read them are reported as lost, and it goes on after them.
func TestConsumerLost(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	s.CreateTable(ctx, "/telemetry/seen", TableOptions{})
	s.CreateStream(ctx, "/telemetry/capped", StreamOptions{MaxBytes: 3000})
	st := s.Stream("/telemetry/capped")
	for range 10 {
		st.Append(ctx, "t", Message{Value: bytes.Repeat([]byte("x"), 500)})
	}
	if err := st.SetCursor(ctx, "g", "t", 0, 0); err != nil { // the group was here
		t.Fatal(err)
	}
	if err := s.EnforceRetention(ctx); err != nil {
		t.Fatal(err)
	}
	low, _, _ := st.Bounds(ctx, "t", 0)
	if low == 0 {
		t.Fatal("retention removed nothing")
	}
	c := newCollector()
	runConsumer(t, st, ConsumerConfig{Group: "g"}, c)
	waitUntil(t, "the rest", func() bool { return c.total() == int(10-low) })
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lost != low {
		t.Fatalf("lost %d, want %d", c.lost, low)
	}
}
