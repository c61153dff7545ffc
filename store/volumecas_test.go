package store

import (
	"context"
	"sync"
	"testing"
	"time"
)

// TestChangeVolumeConcurrent changes different policies of one volume at
// once, many times over: no change is lost.
func TestChangeVolumeConcurrent(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	if err := s.CreateVolume(ctx, "v", VolumeOptions{}); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		ttl, quota, drop := time.Duration(i+1)*time.Hour, int64(i+1)<<20, i%2 == 0
		var wg sync.WaitGroup
		for _, c := range []VolumeChange{{TTL: &ttl}, {Quota: &quota}, {DropOldest: &drop}} {
			wg.Go(func() {
				if _, err := s.ChangeVolume(ctx, "v", c); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		vi, err := s.Volume("v")
		if err != nil {
			t.Fatal(err)
		}
		if vi.TTL != ttl || vi.Quota != quota || vi.DropOldest != drop {
			t.Fatalf("round %d: volume has ttl %v quota %d drop-oldest %v, want %v %d %v", i, vi.TTL, vi.Quota, vi.DropOldest, ttl, quota, drop)
		}
	}
}

func TestChangeVolume(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	if err := s.CreateVolume(ctx, "v", VolumeOptions{TTL: time.Hour, Quota: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	drop := true
	vi, err := s.ChangeVolume(ctx, "v", VolumeChange{DropOldest: &drop})
	if err != nil || vi.TTL != time.Hour || vi.Quota != 1<<20 || !vi.DropOldest {
		t.Fatalf("ChangeVolume = %+v, %v", vi, err)
	}
	neg := int64(-1)
	if _, err := s.ChangeVolume(ctx, "v", VolumeChange{Quota: &neg}); err == nil {
		t.Fatal("a negative quota was taken")
	}
	if _, err := s.ChangeVolume(ctx, "nope", VolumeChange{Quota: new(int64)}); err == nil {
		t.Fatal("a missing volume was changed")
	}
}
