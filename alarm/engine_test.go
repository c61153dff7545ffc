package alarm

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/weft-io/weft/store"
)

// TestEngineCheck drives an edge's engine by hand with its own clock:
// which devices are offline, the clear when one is heard from, and the
// pruning of alarms cleared past the retention.
func TestEngineCheck(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(store.Config{Dir: t.TempDir(), Name: "edge1", MinFreeBytes: -1, RetentionInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := st.Now().UTC()
	clock := func() time.Time { return now }
	shadowAt := func(id string, connected bool, seen time.Time) {
		t.Helper()
		doc := fmt.Appendf(nil, `{"edge":"edge1","connected":%t,"last_seen":%q}`, connected, seen.Format(time.RFC3339Nano))
		if _, err := st.Table(store.ShadowsTable).Put(ctx, id, doc); err != nil {
			t.Fatal(err)
		}
	}
	// quiet-but-talking connected an hour ago and sent telemetry a minute
	// ago; gone has not been seen for an hour; fresh a minute ago;
	// elsewhere is another edge's.
	shadowAt("quiet-but-talking", true, now.Add(-time.Hour))
	if _, err := st.Stream(store.ByDeviceStream).Append(ctx, "quiet-but-talking", store.Message{Value: []byte(`{"t":1}`), Timestamp: now.Add(-time.Minute)}); err != nil {
		t.Fatal(err)
	}
	shadowAt("gone", false, now.Add(-time.Hour))
	shadowAt("fresh", true, now.Add(-time.Minute))
	if _, err := st.Table(store.ShadowsTable).Put(ctx, "elsewhere", fmt.Appendf(nil, `{"edge":"edge2","last_seen":%q}`, now.Add(-time.Hour).Format(time.RFC3339Nano))); err != nil {
		t.Fatal(err)
	}
	e, err := New(Config{Store: st, Edge: true, Now: clock, Retention: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := Ensure(ctx, st); err != nil {
		t.Fatal(err)
	}
	offline := func() string {
		t.Helper()
		if err := e.Check(ctx); err != nil {
			t.Fatal(err)
		}
		l, err := List(ctx, st, Filter{Type: DeviceOffline})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, a := range l {
			out = append(out, a.Device+":"+a.State)
		}
		return strings.Join(out, " ")
	}
	if got := offline(); got != "gone:active" {
		t.Fatalf("offline: %q, want gone:active", got)
	}
	if got := offline(); got != "gone:active" {
		t.Fatalf("checked again: %q, want the same one alarm", got)
	}
	now = now.Add(time.Minute)
	shadowAt("gone", true, now)
	if got := offline(); got != "gone:cleared" {
		t.Fatalf("heard from: %q, want gone:cleared", got)
	}
	now = now.Add(25 * time.Hour)
	shadowAt("gone", true, now)
	shadowAt("quiet-but-talking", true, now)
	shadowAt("fresh", true, now)
	if got := offline(); got != "" {
		t.Fatalf("past the retention: %q, want nothing kept", got)
	}
}
