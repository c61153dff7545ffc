package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
)

// raceEnabled is set in race builds, where the heavy tests are skipped.
var raceEnabled bool

// TestMillionTopics writes one message to each of a million topics of one
// stream, pages through the topic list, reads random topics, and checks
// that idle topics hold no memory: the heap after the run is far smaller
// than the topic count would need if each kept even 64 bytes.
func TestMillionTopics(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("writes a million topics; runs without -short and -race")
	}
	const topics = 1_000_000
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	s := openTest(t)
	ctx := context.Background()
	name := func(i int) string { return fmt.Sprintf("dev-%07d", i) }

	var wg sync.WaitGroup
	const workers, per = 4, 2000
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for base := w * per; base < topics; base += workers * per {
				reqs := make([]AppendRequest, 0, per)
				for i := base; i < base+per && i < topics; i++ {
					reqs = append(reqs, AppendRequest{Path: ByDeviceStream, Topic: name(i), Partition: -1, Messages: []Message{{Value: []byte(name(i))}}})
				}
				if _, err := s.AppendMany(ctx, reqs); err != nil {
					errs <- err
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}

	st := s.Stream(ByDeviceStream)
	count, after := 0, ""
	for {
		page, err := st.Topics(ctx, "", after, 5000)
		if err != nil {
			t.Fatal(err)
		}
		for i, tp := range page {
			if tp != name(count+i) {
				t.Fatalf("topic %d is %q, want %q", count+i, tp, name(count+i))
			}
		}
		count += len(page)
		if len(page) < 5000 {
			break
		}
		after = page[len(page)-1]
	}
	if count != topics {
		t.Fatalf("listed %d topics, want %d", count, topics)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 2000; i++ {
		n := r.IntN(topics)
		got, err := st.Read(ctx, name(n), 0, 0, ReadOptions{})
		if err != nil || len(got) != 1 || string(got[0].Value) != name(n) || got[0].Offset != 0 {
			t.Fatalf("read of topic %s: %v %v", name(n), got, err)
		}
	}

	// What the store itself keeps: close Badger (its memtables, caches and
	// flush buffers are bounded by configuration, not by topics) and
	// measure what the Store still holds.
	if n := len(s.heads); n > maxHeadCache {
		t.Fatalf("%d partition heads cached, the cap is %d", n, maxHeadCache)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	var after2 runtime.MemStats
	runtime.ReadMemStats(&after2)
	grown := int64(after2.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("heap grew by %d MiB for %d topics", grown>>20, topics)
	// A million topics at even 64 bytes each would be 61 MiB.
	if limit := int64(topics * 64); grown > limit {
		t.Fatalf("heap grew by %d bytes for %d idle topics (limit %d)", grown, topics, limit)
	}
	runtime.KeepAlive(s)
}
