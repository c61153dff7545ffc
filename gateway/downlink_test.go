package gateway

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/weft-io/weft/store"
)

// TestDownlinkPartitions: the downlink follows every partition of
// /updates/down, keeps each partition's order, and keeps a cursor per
// partition, so a restart neither loses nor replays what was delivered.
func TestDownlinkPartitions(t *testing.T) {
	const parts = 3
	e := newEnvStore(t, func(c *store.Config) { c.Partitions = map[string]int{store.UpdatesStream: parts} }, nil)
	info, err := e.st.Stat(context.Background(), store.UpdatesStream)
	if err != nil || info.Partitions != parts {
		t.Fatalf("stream: %+v, %v", info, err)
	}
	const topic = "device/part-1"
	up := e.st.Stream(store.UpdatesStream)
	appendTo := func(p int, payloads ...string) {
		t.Helper()
		var msgs []store.Message
		for _, pl := range payloads {
			msgs = append(msgs, store.Message{Value: []byte(pl), Headers: map[string]string{HeaderSubtopic: "x", HeaderRetain: "false"}})
		}
		if _, err := e.st.AppendMany(context.Background(), []store.AppendRequest{{Path: store.UpdatesStream, Topic: topic, Partition: p, Messages: msgs}}); err != nil {
			t.Fatal(err)
		}
	}
	cursorsAt := func(n uint64) func() bool {
		return func() bool {
			for p := range parts {
				off, ok, err := up.Cursor(context.Background(), CursorGroup(testEdge), topic, p)
				if err != nil || !ok || off != n {
					return false
				}
			}
			return true
		}
	}
	d := e.device(t, "part-1", "pump")
	c := e.mustPaho(t, d, persistent())
	c.subscribe(t, 1, "updates/device/part-1/#")

	// receive reads n messages and checks each partition's come in order.
	receive := func(want []string) {
		t.Helper()
		var got []string
		for range want {
			got = append(got, string(c.next(t).Payload))
		}
		for p := range parts {
			var g, w []string
			for _, s := range got {
				if s[1] == byte('0'+p) {
					g = append(g, s)
				}
			}
			for _, s := range want {
				if s[1] == byte('0'+p) {
					w = append(w, s)
				}
			}
			if !slices.Equal(g, w) {
				t.Fatalf("partition %d: got %v, want %v (all: %v)", p, g, w, got)
			}
		}
	}

	var want []string
	for p := range parts {
		ps := []string{fmt.Sprintf("p%d-0", p), fmt.Sprintf("p%d-1", p)}
		appendTo(p, ps...)
		want = append(want, ps...)
	}
	receive(want)
	waitFor(t, "a cursor at 2 in every partition", cursorsAt(2))

	// Away and restarted: what comes meanwhile, in every partition, is
	// delivered once, and nothing delivered before comes again.
	c.close()
	waitFor(t, "disconnect", func() bool { return e.srv.Metrics().Connections() == 0 })
	e.stop()
	want = nil
	for p := range parts {
		s := fmt.Sprintf("p%d-2", p)
		appendTo(p, s)
		want = append(want, s)
	}
	e.start()
	waitFor(t, "a cursor at 3 in every partition", cursorsAt(3))
	c = e.mustPaho(t, d, persistent())
	if !c.connack.SessionPresent {
		t.Fatal("session not present after restart")
	}
	receive(want)
	// A message sent now comes after whatever the session held: nothing
	// else was queued for it.
	appendTo(0, "p0-marker")
	if m := c.next(t); string(m.Payload) != "p0-marker" {
		t.Fatalf("got %q, want the marker", m.Payload)
	}
}
