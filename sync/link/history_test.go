package link

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/weft-io/weft/store"
	"github.com/weft-io/weft/sync/wire"
)

// TestHistoryOverLink has the core ask an edge for a device's messages it
// does not hold.
func TestHistoryOverLink(t *testing.T) {
	f := newFabric(t, ServerConfig{})
	ctx := context.Background()
	base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < 20; i++ {
		f.edge.Stream(store.ByDeviceStream).Append(ctx, "d1", store.Message{
			Value: []byte(fmt.Sprintf("m%d", i)), Headers: map[string]string{"device": "d1"}, Timestamp: base.Add(time.Duration(i) * time.Minute)})
	}
	history := func(ctx context.Context, device string, from, to time.Time, limit int) ([]store.Message, bool, error) {
		all, err := f.edge.Stream(store.ByDeviceStream).Read(ctx, device, 0, 0, store.ReadOptions{})
		if err != nil {
			return nil, false, err
		}
		var out []store.Message
		for _, m := range all {
			if !m.Timestamp.Before(from) && m.Timestamp.Before(to) {
				out = append(out, m)
			}
		}
		more := len(out) > limit
		return out[:min(limit, len(out))], more, nil
	}
	f.startLink(ClientConfig{History: history})
	waitFor(t, "the edge's link", func() bool {
		_, _, err := f.srv.History(ctx, "edge1", "d1", base, base.Add(time.Hour), 1)
		return err == nil
	})
	msgs, more, err := f.srv.History(ctx, "edge1", "d1", base.Add(5*time.Minute), base.Add(10*time.Minute), 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 3 || !more || string(msgs[0].Value) != "m5" || msgs[0].Offset != 5 || msgs[0].Headers["device"] != "d1" || !msgs[0].Timestamp.Equal(base.Add(5*time.Minute)) {
		t.Fatalf("history: %d messages, more %v, first %+v", len(msgs), more, msgs)
	}
	if _, _, err := f.srv.History(ctx, "edge9", "d1", base, base.Add(time.Hour), 3); err == nil {
		t.Fatal("history from an edge that is not connected")
	}
	// The link is unharmed: replication goes on.
	appendN(t, f.edge, store.UplinkStream, "edge1", 5, 50, "after")
	waitSame(t, f.edge, f.core, store.UplinkStream)
}

// TestHistoryRefusedWithoutReader checks an edge without a history reader
// says so.
func TestHistoryRefusedWithoutReader(t *testing.T) {
	f := newFabric(t, ServerConfig{})
	ctx := context.Background()
	f.startLink(ClientConfig{})
	var err error
	waitFor(t, "an answer", func() bool {
		_, _, err = f.srv.History(ctx, "edge1", "d1", time.Time{}, time.Now(), 10)
		var we *wire.Error
		return errors.As(err, &we)
	})
	if !errors.Is(err, wire.ErrStream) {
		t.Fatalf("history from an edge that keeps none: %v", err)
	}
}
