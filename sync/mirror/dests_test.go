package mirror

import (
	"context"
	"strings"
	"testing"
)

// TestTwoDestinationsSendOnlyChanges: a core mirroring a volume to two
// edges sends each, after the first whole copy, only what changed since
// that edge's copy: one edge's publication does not delete the snapshot
// the other's next update starts from.
func TestTwoDestinationsSendOnlyChanges(t *testing.T) {
	ctx := context.Background()
	srcStore := openStore(t, t.TempDir())
	defer srcStore.Close()
	put := func(path, body string) {
		t.Helper()
		if _, err := srcStore.File(path).Write(ctx, strings.NewReader(body)); err != nil {
			t.Fatal(err)
		}
	}
	put("/models/big.img", strings.Repeat("x", 1<<20))
	clock := stepClock()
	type edge struct {
		src *Source
		dst *Dest
	}
	var edges []edge
	for _, name := range []string{"edge-1", "edge-2"} {
		dstStore := openStore(t, t.TempDir())
		defer dstStore.Close()
		edges = append(edges, edge{&Source{Store: srcStore, Volume: "models", Dest: name, Now: clock}, &Dest{Store: dstStore, Volume: "models"}})
	}
	// round offers each edge its update and carries it out; it returns
	// the snapshot each update started from.
	round := func() []string {
		t.Helper()
		var from []string
		for _, e := range edges {
			st, err := e.dst.State(ctx)
			if err != nil {
				t.Fatal(err)
			}
			u, ok, err := e.src.Offer(ctx, st)
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				from = append(from, "(nothing)")
				continue
			}
			from = append(from, u.From)
			if sent, err := transfer(t, e.src, e.dst, 0); err != nil || !sent {
				t.Fatalf("transfer: %v %v", sent, err)
			}
			st, _ = e.dst.State(ctx)
			if err := e.src.Published(ctx, st.Have); err != nil {
				t.Fatal(err)
			}
		}
		return from
	}
	if got := round(); got[0] != "" || got[1] != "" {
		t.Fatalf("first round from %q, want whole copies", got)
	}
	var have []string
	for _, e := range edges {
		st, _ := e.dst.State(ctx)
		have = append(have, st.Have)
	}
	put("/models/notes.txt", "small change")
	if got := round(); got[0] != have[0] || got[1] != have[1] {
		t.Fatalf("second round from %q, want each edge's own copy %q (not the whole volume again)", got, have)
	}
	if got := round(); got[0] != "(nothing)" || got[1] != "(nothing)" {
		t.Fatalf("an idle round sent updates from %q", got)
	}
	got, err := files(t, edges[1].dst.Store, "/models")
	if err != nil || len(got) != 2 {
		t.Fatalf("edge-2 holds %v, %v", got, err)
	}
}
