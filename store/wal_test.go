package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// TestWALPowerLoss keeps what a power cut keeps: the database's files as
// they were at its last sync (what it wrote since lived in the page
// cache) and the write-ahead log as the writer left it (every record was
// fdatasync'd before its group was acknowledged). Every acknowledged
// message must be there after open, once, at its offset.
func TestWALPowerLoss(t *testing.T) {
	cfg := Config{Dir: t.TempDir(), Name: "node1", MinFreeBytes: -1, MemTableSize: 16 << 20, RetentionInterval: -1}
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	acked := map[string]map[uint64]string{}
	var mu sync.Mutex
	appendAll := func(round string, n int) {
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				topic := fmt.Sprintf("t%d", g%3)
				for i := range n {
					v := fmt.Sprintf("%s-%d-%d", round, g, i)
					res, err := s.AppendMany(ctx, []AppendRequest{
						{Path: EventsStream, Topic: topic, Partition: -1, Messages: msgs(v)},
						{Path: ByDeviceStream, Topic: topic, Partition: -1, Messages: msgs(v)},
					})
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					if acked[topic] == nil {
						acked[topic] = map[uint64]string{}
					}
					acked[topic][res[0][0].Offset] = v
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
	}
	appendAll("synced", 50)
	if err := s.db.Sync(); err != nil {
		t.Fatal(err)
	}
	crashed := copyDir(t, cfg.Dir)
	appendAll("logged", 200)
	copyFile(t, filepath.Join(cfg.Dir, walName), filepath.Join(crashed, walName), 0o600)

	verifyAcked(t, crashed, acked)
	// by_device holds the same messages at the same offsets.
	s2, err := Open(Config{Dir: crashed, MinFreeBytes: -1, MemTableSize: 16 << 20, RetentionInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	for topic, want := range acked {
		got, err := s2.Stream(ByDeviceStream).Read(ctx, topic, 0, 0, ReadOptions{Limit: 100000})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("by_device %s: %d messages, %d acknowledged", topic, len(got), len(want))
		}
		for _, m := range got {
			if want[m.Offset] != string(m.Value) {
				t.Fatalf("by_device %s offset %d = %q, acknowledged %q", topic, m.Offset, m.Value, want[m.Offset])
			}
		}
	}
	// Appends go on after the replay, numbered after the replayed ones.
	pos, err := s2.Stream(EventsStream).Append(ctx, "t0", msgs("after")...)
	if err != nil {
		t.Fatal(err)
	}
	if want := uint64(len(acked["t0"])); pos[0].Offset != want {
		t.Fatalf("append after replay at offset %d, want %d", pos[0].Offset, want)
	}
}

// TestWALTornTail opens a store whose log ends in a torn record: the
// record was never acknowledged, and the store opens without it.
func TestWALTornTail(t *testing.T) {
	cfg := Config{Dir: t.TempDir(), Name: "node1", MinFreeBytes: -1, MemTableSize: 16 << 20, RetentionInterval: -1}
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := s.Stream(EventsStream).Append(ctx, "t", msgs("a", "b")...); err != nil {
		t.Fatal(err)
	}
	if err := s.db.Sync(); err != nil {
		t.Fatal(err)
	}
	crashed := copyDir(t, cfg.Dir)
	if _, err := s.Stream(EventsStream).Append(ctx, "t", msgs("c")...); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// The last record, cut short.
	b, err := os.ReadFile(filepath.Join(cfg.Dir, walName))
	if err != nil {
		t.Fatal(err)
	}
	l := s.wal
	if err := os.WriteFile(filepath.Join(crashed, walName), b[:l.off-3], 0o600); err != nil {
		t.Fatal(err)
	}
	verifyAcked(t, crashed, map[string]map[uint64]string{"t": {0: "a", 1: "b"}})
}
