package shadow

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/weft-io/weft/internal/testenv/wait"
	"github.com/weft-io/weft/store"
)

// fill puts n shadows: ids dev-000000.., classes pump, chiller and meter in
// turn, edges edge-a and edge-b in turn, every fourth disconnected, every
// fifth out of sync, every hundredth anomalous (score 0.9 + i/1e7).
func fill(t testing.TB, st *store.Store, n int) {
	t.Helper()
	classes := []string{"pump", "chiller", "meter"}
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	const workers = 32
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				desired := 4
				if i%5 == 0 {
					desired = 5
				}
				score := 0.1
				if i%100 == 0 {
					score = 0.9 + float64(i)/1e7
				}
				doc := fmt.Sprintf(`{"reported":{"setpoint":4},"desired":{"setpoint":%d},"class":%q,"edge":"edge-%c","connected":%v,"score":%g,"last_seen":"2026-03-01T11:00:00Z"}`,
					desired, classes[i%3], 'a'+i%2, i%4 != 0, score)
				if _, err := st.Table(store.ShadowsTable).Put(context.Background(), fmt.Sprintf("dev-%06d", i), json.RawMessage(doc)); err != nil {
					select {
					case errs <- err:
					default:
					}
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
}

func ptr(b bool) *bool { return &b }

func TestList(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	const n = 3000
	fill(t, st, n)
	for _, tt := range []struct {
		name string
		f    Filter
		want func(i int) bool
	}{
		{"all", Filter{}, func(int) bool { return true }},
		{"class", Filter{Class: "chiller"}, func(i int) bool { return i%3 == 1 }},
		{"edge and connected", Filter{Edge: "edge-b", Connected: ptr(true)}, func(i int) bool { return i%2 == 1 && i%4 != 0 }},
		{"out of sync", Filter{InSync: ptr(false)}, func(i int) bool { return i%5 == 0 }},
		{"anomalous", Filter{Anomalous: ptr(true)}, func(i int) bool { return i%100 == 0 }},
		{"not anomalous at 0.05", Filter{Anomalous: ptr(false), Threshold: 0.05}, func(int) bool { return false }},
		{"prefix", Filter{Prefix: "dev-0012"}, func(i int) bool { return i/100 == 12 }},
		{"device", Filter{Device: "dev-000042"}, func(i int) bool { return i == 42 }},
		{"device outside prefix", Filter{Device: "dev-000042", Prefix: "x"}, func(int) bool { return false }},
		{"scope and query disagree", Filter{Class: "nope"}, func(int) bool { return false }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var want []string
			for i := range n {
				if tt.want(i) {
					want = append(want, fmt.Sprintf("dev-%06d", i))
				}
			}
			var got []string
			after, pages := "", 0
			for {
				p, err := List(ctx, st, tt.f, after, 97)
				if err != nil {
					t.Fatal(err)
				}
				pages++
				if len(p.Devices) > 97 {
					t.Fatalf("page of %d", len(p.Devices))
				}
				for _, d := range p.Devices {
					if !tt.f.Match(&d) {
						t.Fatalf("%s does not match the filter", d.ID)
					}
					got = append(got, d.ID)
				}
				if p.Next == "" {
					break
				}
				if p.Next <= after {
					t.Fatalf("next %q does not move past %q", p.Next, after)
				}
				after = p.Next
				if pages > n {
					t.Fatal("paging does not end")
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("listed %d devices, want %d (first %v, want %v)", len(got), len(want), head(got), head(want))
			}
		})
	}
}

func head(s []string) []string { return s[:min(len(s), 3)] }

// TestListBoundsItsWork: a page whose filter matches nothing reads at most
// MaxScan documents and hands back where to go on.
func TestListBoundsItsWork(t *testing.T) {
	if testing.Short() {
		t.Skip("fills 12000 shadows")
	}
	st := openStore(t)
	fill(t, st, 12000)
	p, err := List(context.Background(), st, Filter{Class: "none"}, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Devices) != 0 || p.Next != fmt.Sprintf("dev-%06d", MaxScan-1) {
		t.Fatalf("page %d devices, next %q; want none and next at the %dth", len(p.Devices), p.Next, MaxScan)
	}
	p, _ = List(context.Background(), st, Filter{Class: "none"}, p.Next, 100)
	p, _ = List(context.Background(), st, Filter{Class: "none"}, p.Next, 100)
	if p.Next != "" {
		t.Fatalf("third page next %q, want the end", p.Next)
	}
}

func TestSummarize(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	fill(t, st, 1200)
	s, err := Summarize(ctx, st, Filter{}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if s.Devices != 1200 || s.Connected != 900 || s.InSync != 960 || s.Anomalous != 12 {
		t.Fatalf("summary %+v", s)
	}
	if len(s.Classes) != 3 || s.Classes[0] != (Count{"chiller", 400, 300, 80, 4}) {
		t.Fatalf("classes %+v", s.Classes)
	}
	if len(s.Edges) != 2 || s.Edges[0].Name != "edge-a" || s.Edges[0].Devices != 600 || s.Edges[0].Anomalous != 12 {
		t.Fatalf("edges %+v", s.Edges)
	}
	if len(s.Anomalies) != TopAnomalies || s.Anomalies[0].ID != "dev-001100" || s.Anomalies[9].ID != "dev-000200" {
		var ids []string
		for _, d := range s.Anomalies {
			ids = append(ids, d.ID)
		}
		t.Fatalf("anomalies %v", ids)
	}
	scoped, _ := Summarize(ctx, st, Filter{Class: "pump"}, t0)
	if scoped.Devices != 400 || len(scoped.Classes) != 1 {
		t.Fatalf("scoped summary %+v", scoped)
	}

	now := t0
	c := NewSummaryCache(st, time.Minute, func() time.Time { return now })
	a, _ := c.Get(ctx, Filter{})
	fill(t, st, 1500)
	if b, _ := c.Get(ctx, Filter{}); b.Devices != a.Devices {
		t.Fatalf("cached summary changed within its time to live: %d -> %d", a.Devices, b.Devices)
	}
	if p, _ := c.Get(ctx, Filter{Class: "pump"}); p.Devices != 500 {
		t.Fatalf("another filter's summary: %d devices", p.Devices)
	}
	// Just expired: served while counted again in the background.
	now = now.Add(time.Minute)
	if b, _ := c.Get(ctx, Filter{}); b.Devices != 1200 {
		t.Fatalf("just expired summary: %d devices, want the stale 1200", b.Devices)
	}
	wait.For(t, 0, "the background count", func() bool {
		b, _ := c.Get(ctx, Filter{})
		return b.Devices == 1500
	})
	// Long expired: counted before answering.
	fill(t, st, 1600)
	now = now.Add(10 * time.Minute)
	if b, _ := c.Get(ctx, Filter{}); b.Devices != 1600 {
		t.Fatalf("long expired summary: %d devices, want a new count", b.Devices)
	}
}
