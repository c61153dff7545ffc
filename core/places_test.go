package core

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/weft-io/weft/firmware"
	"github.com/weft-io/weft/internal/testenv/wait"
	"github.com/weft-io/weft/store"
)

// TestFollowPlaces: the places of devices come from the shadows at
// start, follow every change of them (a device coming, moving, going),
// and are the same after a restart that missed changes.
func TestFollowPlaces(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.Open(store.Config{Dir: dir, Name: "core-1", MinFreeBytes: -1, RetentionInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { st.Close() }()
	put := func(id, edge, class string) {
		t.Helper()
		if _, err := st.Table(store.ShadowsTable).Put(ctx, id, fmt.Appendf(nil, `{"edge":%q,"class":%q,"reported":{}}`, edge, class)); err != nil {
			t.Fatal(err)
		}
	}
	classes := func(p *firmware.Places) string {
		got, _ := p.EdgeClasses(ctx)
		return fmt.Sprint(got)
	}
	follow := func() (*firmware.Places, context.CancelFunc, chan error) {
		p := &firmware.Places{}
		fctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- followPlaces(fctx, st, p, nil) }()
		return p, cancel, done
	}
	put("p1", "e1", "pump")
	p, cancel, done := follow()
	wait.For(t, 10*time.Second, "the scan's places", func() bool { return classes(p) == "map[e1:map[pump:true]]" })
	put("t1", "e2", "thermo")
	put("p2", "e2", "pump")
	wait.For(t, 10*time.Second, "a thermo and a pump on e2", func() bool {
		return classes(p) == "map[e1:map[pump:true] e2:map[pump:true thermo:true]]"
	})
	put("p2", "e1", "pump") // moved
	if err := st.Table(store.ShadowsTable).Delete(ctx, "t1"); err != nil {
		t.Fatal(err)
	}
	want := "map[e1:map[pump:true]]"
	wait.For(t, 10*time.Second, "e2 empty", func() bool { return classes(p) == want })
	cancel()
	<-done
	// Changes while nobody follows, then a new follower.
	put("m1", "e3", "meter")
	put("p1", "e3", "pump")
	p, cancel, done = follow()
	defer func() { cancel(); <-done }()
	want = "map[e1:map[pump:true] e3:map[meter:true pump:true]]"
	wait.For(t, 10*time.Second, "the places after a restart", func() bool { return classes(p) == want })
}
