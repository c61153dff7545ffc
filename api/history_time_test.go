package api

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/weft-io/weft/store"
)

// TestReadRangeWhereClocksDisagree stores a device's messages stamped by a
// clock that stepped back 10 minutes, then by one a day ahead.
func TestReadRangeWhereClocksDisagree(t *testing.T) {
	st, err := store.Open(store.Config{Dir: t.TempDir(), MinFreeBytes: -1, MemTableSize: 16 << 20, RetentionInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var stamps []time.Time
	for i := range 20 { // t0 .. t0+19m
		stamps = append(stamps, t0.Add(time.Duration(i)*time.Minute))
	}
	for i := range 20 { // stepped back: t0+10m .. t0+29m
		stamps = append(stamps, t0.Add(time.Duration(10+i)*time.Minute))
	}
	for i := range 3 { // a day ahead
		stamps = append(stamps, t0.Add(24*time.Hour+time.Duration(i)*time.Minute))
	}
	s := st.Stream(store.ByDeviceStream)
	for _, ts := range stamps {
		if _, err := s.Append(ctx, "dev1", store.Message{Key: []byte("dev1"), Value: []byte("v"), Timestamp: ts}); err != nil {
			t.Fatal(err)
		}
	}
	info, err := st.Stat(ctx, store.ByDeviceStream)
	if err != nil {
		t.Fatal(err)
	}
	read := func(q RangeQuery) []store.Message {
		t.Helper()
		msgs, _, err := ReadRange(ctx, s, info.Partitions, "dev1", q, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i < len(msgs); i++ {
			if msgs[i].Offset <= msgs[i-1].Offset {
				t.Fatalf("out of receive order: offset %d after %d", msgs[i].Offset, msgs[i-1].Offset)
			}
		}
		return msgs
	}
	// A range over the stepped-back stretch: every message stamped in it,
	// none from outside.
	from, to := t0.Add(12*time.Minute), t0.Add(15*time.Minute)
	msgs := read(RangeQuery{From: from, To: to, Limit: 100})
	for _, m := range msgs {
		if m.Timestamp.Before(from) || !m.Timestamp.Before(to) {
			t.Fatalf("offset %d stamped %v is outside [%v, %v)", m.Offset, m.Timestamp, from, to)
		}
	}
	if len(msgs) == 0 {
		t.Fatal("no message of the range")
	}
	// "Latest" at this node's now (the day before the future stamps)
	// still returns the last messages received.
	q, err := ParseRange(url.Values{"limit": {"3"}}, t0.Add(30*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	latest := read(q)
	if len(latest) != 3 || latest[2].Offset != uint64(len(stamps)-1) {
		t.Fatalf("latest: %d messages, last offset %d, want the last 3 received", len(latest), latest[len(latest)-1].Offset)
	}
}
