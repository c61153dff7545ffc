package cluster

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestLeastApplied(t *testing.T) {
	peers := []Peer{{Name: "a"}, {Name: "b"}, {Name: "c"}}
	for _, tc := range []struct {
		applied map[string]int64
		want    int64
	}{
		{map[string]int64{}, 0},
		{map[string]int64{"a": 9, "b": 7}, 0}, // c has applied nothing yet
		{map[string]int64{"a": 9, "b": 7, "c": 8}, 7},
		{map[string]int64{"a": 9, "b": 7, "c": 8, "gone": 1}, 7}, // only voting members count
	} {
		if got := leastApplied(peers, tc.applied); got != tc.want {
			t.Errorf("leastApplied(%v) = %d, want %d", tc.applied, got, tc.want)
		}
	}
}

// TestLogFollowedInOrder: writes proposed at every member are followed
// by every member in the same order; a member following again from a
// revision gets the rest; once every member recorded how far it applied,
// the history before is compacted and a follower from before it is told
// so.
func TestLogFollowedInOrder(t *testing.T) {
	nodes := startThree(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var want []string
	var revs []int64
	for i := range 9 {
		v := fmt.Sprintf("w%d", i)
		rev, err := nodes[i%3].Propose(ctx, []byte(v))
		if err != nil {
			t.Fatal(err)
		}
		want, revs = append(want, v), append(revs, rev)
	}
	follow := func(n *Node, after int64, count int) ([]string, error) {
		fctx, fcancel := context.WithCancel(ctx)
		defer fcancel()
		var mu sync.Mutex
		var got []string
		err := n.Follow(fctx, after, func(_ context.Context, es []Entry) error {
			mu.Lock()
			defer mu.Unlock()
			for _, e := range es {
				got = append(got, string(e.Value))
			}
			if len(got) >= count {
				fcancel()
			}
			return nil
		})
		return got, err
	}
	for _, n := range nodes {
		got, err := follow(n, 0, len(want))
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("%s followed %v (%v), want %v", n.Name(), got, err, want)
		}
	}
	if got, _ := follow(nodes[1], revs[5], 3); !reflect.DeepEqual(got, want[6:]) {
		t.Fatalf("from revision %d: %v, want %v", revs[5], got, want[6:])
	}

	for _, n := range nodes {
		if err := n.Applied(ctx, revs[4]); err != nil {
			t.Fatal(err)
		}
	}
	least, err := nodes[0].AppliedEverywhere(ctx)
	if err != nil || least != revs[4] {
		t.Fatalf("applied everywhere: %d (%v), want %d", least, err, revs[4])
	}
	if err := nodes[0].Compact(ctx, least); err != nil {
		t.Fatal(err)
	}
	if err := nodes[2].Compact(ctx, least); err != nil {
		t.Fatalf("compacting again: %v", err)
	}
	if got, _ := follow(nodes[2], revs[4], 4); !reflect.DeepEqual(got, want[5:]) {
		t.Fatalf("after compaction, from revision %d: %v, want %v", revs[4], got, want[5:])
	}
	if _, err := follow(nodes[2], 0, 1); !errors.Is(err, ErrCompacted) {
		t.Fatalf("following from before the compaction: %v, want ErrCompacted", err)
	}
}

// BenchmarkPropose measures writes to the log of three members in this
// process: 16 proposers, each write acknowledged once a majority holds
// it, the time per write and the time until a member's follower saw it.
//
//	go test ./cluster -run '^$' -bench Propose -benchtime 2000x
func BenchmarkPropose(b *testing.B) {
	nodes := startThree(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var seen sync.Map // rev -> time seen by nodes[1]
	go nodes[1].Follow(ctx, 0, func(_ context.Context, es []Entry) error {
		now := time.Now()
		for _, e := range es {
			seen.Store(e.Rev, now)
		}
		return nil
	})
	value := make([]byte, 512)
	var mu sync.Mutex
	var lat, vis []time.Duration
	b.ResetTimer()
	b.SetParallelism(8) // 16 proposers on two cores
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			n := nodes[i%3]
			i++
			t0 := time.Now()
			rev, err := n.Propose(ctx, value)
			if err != nil {
				b.Error(err)
				return
			}
			d := time.Since(t0)
			for {
				if at, ok := seen.Load(rev); ok {
					mu.Lock()
					lat, vis = append(lat, d), append(vis, at.(time.Time).Sub(t0))
					mu.Unlock()
					break
				}
				time.Sleep(100 * time.Microsecond) // a benchmark's own poll, not a test's wait
			}
		}
	})
	b.StopTimer()
	slices.Sort(lat)
	slices.Sort(vis)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(vis[len(vis)/2].Microseconds())/1000, "seen-p50-ms")
}
