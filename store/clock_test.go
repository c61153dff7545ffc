package store

import (
	"context"
	"sync"
	"testing"
	"time"
)

// testClock is a wall clock and a monotonic clock stepped apart.
type testClock struct {
	mu   sync.Mutex
	wall time.Time
	mono time.Duration
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.wall
}

func (c *testClock) Monotonic() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mono
}

// pass lets d go by on both clocks; step moves the wall clock only.
func (c *testClock) pass(d time.Duration) {
	c.mu.Lock()
	c.wall, c.mono = c.wall.Add(d), c.mono+d
	c.mu.Unlock()
}
func (c *testClock) step(d time.Duration) { c.mu.Lock(); c.wall = c.wall.Add(d); c.mu.Unlock() }

func (c *testClock) config(cfg *Config) { cfg.Now, cfg.Monotonic = c.Now, c.Monotonic }

func TestFloorObserve(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name      string
		sys       time.Time
		mono      time.Duration
		stamp     time.Time
		fellBack  bool
		jump      time.Duration
		unconfirm time.Duration
	}{
		{"steady", t0.Add(time.Minute), time.Minute, t0.Add(time.Minute), false, 0, 0},
		{"small step back", t0.Add(time.Minute - time.Second), time.Minute, t0.Add(time.Minute), false, 0, 0},
		{"step back", t0.Add(-9 * time.Minute), time.Minute, t0.Add(time.Minute), true, 0, 0},
		{"reset to 1970", time.Unix(0, 0), time.Minute, t0.Add(time.Minute), true, 0, 0},
		{"small step forward", t0.Add(4 * time.Minute), time.Minute, t0.Add(4 * time.Minute), false, 0, 0},
		{"day forward", t0.Add(24*time.Hour + time.Minute), time.Minute, t0.Add(24*time.Hour + time.Minute), false, 24 * time.Hour, 24 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &floorClock{threshold: DefaultClockJump, floor: t0}
			r := c.observe(tc.sys, tc.mono)
			if !r.stamp.Equal(tc.stamp) || r.fellBack != tc.fellBack || r.jump != tc.jump || c.pending != tc.unconfirm {
				t.Fatalf("stamp %v fellBack %v jump %v pending %v, want %v %v %v %v", r.stamp, r.fellBack, r.jump, c.pending, tc.stamp, tc.fellBack, tc.jump, tc.unconfirm)
			}
		})
	}
	// At open a forward gap is downtime, not a jump.
	c := &floorClock{threshold: DefaultClockJump, floor: t0, fresh: true}
	if r := c.observe(t0.Add(24*time.Hour), 0); r.jump != 0 || c.pending != 0 {
		t.Fatalf("a gap at open counted as a jump of %v", r.jump)
	}
}

func TestClockStepBackStampsWithFloor(t *testing.T) {
	clk := &testClock{wall: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	dir := t.TempDir()
	s := openTest(t, clk.config, func(c *Config) { c.Dir = dir })
	ctx := context.Background()
	ev := s.Stream(EventsStream)
	var stamps []time.Time
	appendOne := func() {
		t.Helper()
		pos, err := ev.Append(ctx, "e", msgs("x")...)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ev.Read(ctx, "e", pos[0].Partition, pos[0].Offset, ReadOptions{Limit: 1})
		if err != nil || len(got) != 1 {
			t.Fatalf("read back: %v %d", err, len(got))
		}
		stamps = append(stamps, got[0].Timestamp)
	}
	appendOne()
	clk.pass(time.Minute)
	appendOne()
	clk.step(-10 * time.Minute)
	clk.pass(time.Second)
	appendOne()
	for i := 1; i < len(stamps); i++ {
		if stamps[i].Before(stamps[i-1]) {
			t.Fatalf("stamp %d %v is before stamp %d %v", i, stamps[i], i-1, stamps[i-1])
		}
	}
	if want := stamps[1].Add(time.Second); !stamps[2].Equal(want) {
		t.Fatalf("stamp after the step back %v, want the floor %v", stamps[2], want)
	}
	st := s.Clock()
	if st.BehindEpisodes != 1 || st.Behind < 10*time.Minute-time.Second {
		t.Fatalf("clock status %+v: the step back is not reported", st)
	}
	// The floor survives a restart: a clock reset at power-up stamps
	// after what is stored.
	floor := st.Floor
	s.Close()
	clk.step(-365 * 24 * time.Hour)
	s = openTest(t, clk.config, func(c *Config) { c.Dir = dir })
	if now := s.Now(); now.Before(floor) {
		t.Fatalf("after reopening with the clock a year behind, store time %v is before the floor %v", now, floor)
	}
}

func TestRetentionAcrossForwardJump(t *testing.T) {
	for _, tc := range []struct {
		name    string
		confirm func(clk *testClock) time.Time // the core's time; zero: no confirmation
		deleted bool                           // right after the jump (and confirmation)
	}{
		{"unconfirmed", nil, false},
		{"core agrees", func(clk *testClock) time.Time { return clk.Now() }, true},
		{"core disagrees", func(clk *testClock) time.Time { return clk.Now().Add(-24 * time.Hour) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := &testClock{wall: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
			s := openTest(t, clk.config)
			ctx := context.Background()
			if err := s.CreateStream(ctx, "/telemetry/ttl", StreamOptions{TTL: time.Hour}); err != nil {
				t.Fatal(err)
			}
			st := s.Stream("/telemetry/ttl")
			for range 421 {
				if _, err := st.Append(ctx, "t", msgs("v")...); err != nil {
					t.Fatal(err)
				}
			}
			clk.pass(90 * time.Second)
			clk.step(24 * time.Hour)
			if tc.confirm != nil {
				if err := s.ConfirmTime(ctx, tc.confirm(clk)); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.EnforceRetention(ctx); err != nil {
				t.Fatal(err)
			}
			low, next, _ := st.Bounds(ctx, "t", 0)
			if deleted := low == next; deleted != tc.deleted || next != 421 {
				t.Fatalf("bounds %d..%d after the jump: deleted %v, want %v", low, next, deleted, tc.deleted)
			}
			if tc.confirm == nil && s.Clock().Unconfirmed < 24*time.Hour {
				t.Fatalf("clock status %+v: the jump is not reported", s.Clock())
			}
			// Once the records have really aged their TTL, they go.
			clk.pass(time.Hour)
			if err := s.EnforceRetention(ctx); err != nil {
				t.Fatal(err)
			}
			if low, next, _ := st.Bounds(ctx, "t", 0); low != 421 || next != 421 {
				t.Fatalf("bounds %d..%d an hour on, want all gone", low, next)
			}
		})
	}
}
