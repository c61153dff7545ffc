package api

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/store"
)

// TestHistoryStepsOverGaps: a device's history whose topic holds a gap
// replicated from its edge (offsets 10-19 quarantined there) answers with
// the messages on both sides and names the gap, whichever way the range
// is read: forward from a time, the latest before a time, a range that
// starts or ends inside the gap, and one that lies wholly in it.
func TestHistoryStepsOverGaps(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	at := func(off uint64) time.Time { return t0.Add(time.Duration(off) * time.Minute) }
	msgs := func(first, n uint64) []store.Message {
		var out []store.Message
		for off := first; off < first+n; off++ {
			out = append(out, store.Message{Offset: off, Key: []byte("pump-1"), Value: fmt.Appendf(nil, `{"n":%d}`, off), Timestamp: at(off)})
		}
		return out
	}
	if _, err := e.st.ApplyReplica(ctx, []store.ReplicaBatch{
		{Path: store.ByDeviceStream, Topic: "pump-1", Messages: msgs(0, 10)},
		{Path: store.ByDeviceStream, Topic: "pump-1", Gap: &store.Gap{From: 10, To: 20}, Reason: "quarantined at the edge"},
		{Path: store.ByDeviceStream, Topic: "pump-1", Messages: msgs(20, 10)},
	}); err != nil {
		t.Fatal(err)
	}
	want := []Gap{{From: 10, To: 20, Partition: 0}}
	for _, c := range []struct {
		name        string
		query       url.Values
		first, last uint64 // offsets of the first and last message; last < first: none
		n           int
		gaps        []Gap
		more        bool
	}{
		{"forward over the gap", url.Values{"from": {at(5).Format(time.RFC3339)}, "to": {at(25).Format(time.RFC3339)}}, 5, 24, 10, want, false},
		{"the latest", url.Values{}, 0, 29, 20, want, false},
		{"the latest few, short of the gap", url.Values{"limit": {"5"}}, 25, 29, 5, []Gap{}, true},
		{"the latest before a time, over the gap", url.Values{"to": {at(22).Format(time.RFC3339)}, "limit": {"5"}}, 7, 21, 5, want, true},
		{"from inside the gap", url.Values{"from": {at(15).Format(time.RFC3339)}, "to": {at(23).Format(time.RFC3339)}}, 20, 22, 3, want, false},
		{"to inside the gap", url.Values{"from": {at(8).Format(time.RFC3339)}, "to": {at(15).Format(time.RFC3339)}}, 8, 9, 2, want, false},
		{"wholly in the gap", url.Values{"from": {at(12).Format(time.RFC3339)}, "to": {at(18).Format(time.RFC3339)}}, 1, 0, 0, want, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			var h HistoryResponse
			e.get("/api/v1/devices/pump-1/history?"+c.query.Encode(), certs.RoleViewer, http.StatusOK, &h)
			if len(h.Messages) != c.n || h.More != c.more || fmt.Sprint(h.Gaps) != fmt.Sprint(c.gaps) || h.Gaps == nil {
				t.Fatalf("%d messages, more %v, gaps %v; want %d, %v, %v", len(h.Messages), h.More, h.Gaps, c.n, c.more, c.gaps)
			}
			if c.n > 0 && (h.Messages[0].Offset != c.first || h.Messages[len(h.Messages)-1].Offset != c.last) {
				t.Fatalf("offsets %d..%d, want %d..%d", h.Messages[0].Offset, h.Messages[len(h.Messages)-1].Offset, c.first, c.last)
			}
			for _, m := range h.Messages {
				if m.Offset >= 10 && m.Offset < 20 {
					t.Fatalf("a message at %d, in the gap", m.Offset)
				}
			}
		})
	}
}

// TestFirstAtOrAfterOverGaps: the binary search for a time counts an
// offset it cannot read as stamped like the first one after it.
func TestFirstAtOrAfterOverGaps(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var batches []store.ReplicaBatch
	var ms []store.Message
	for off := uint64(0); off < 40; off++ {
		if off >= 10 && off < 30 {
			continue
		}
		ms = append(ms, store.Message{Offset: off, Value: []byte("v"), Timestamp: t0.Add(time.Duration(off) * time.Second)})
	}
	batches = append(batches,
		store.ReplicaBatch{Path: store.UplinkStream, Topic: "e", Messages: ms[:10]},
		store.ReplicaBatch{Path: store.UplinkStream, Topic: "e", Gap: &store.Gap{From: 10, To: 30}},
		store.ReplicaBatch{Path: store.UplinkStream, Topic: "e", Messages: ms[10:]})
	if _, err := e.st.ApplyReplica(ctx, batches); err != nil {
		t.Fatal(err)
	}
	st := e.st.Stream(store.UplinkStream)
	for _, c := range []struct {
		sec  int
		want uint64
	}{{0, 0}, {5, 5}, {9, 9}, {10, 10}, {20, 10}, {30, 10}, {31, 31}, {39, 39}, {40, 40}} {
		got, err := firstAtOrAfter(ctx, st, "e", 0, 0, 40, t0.Add(time.Duration(c.sec)*time.Second))
		if err != nil || got != c.want {
			t.Errorf("first at or after +%ds: %d, %v; want %d", c.sec, got, err, c.want)
		}
	}
}
