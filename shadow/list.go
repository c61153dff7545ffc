package shadow

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/weft-io/weft/store"
)

// Filter selects shadows. The zero Filter selects all of them; each field
// set narrows the selection.
type Filter struct {
	// Prefix selects device ids that start with it.
	Prefix string
	// Device selects this one device id.
	Device string
	// Class, Edge and Site select devices of that class, behind that
	// edge, at that site.
	Class, Edge, Site string
	// Connected, InSync and Anomalous select devices that are, or are not,
	// connected, in sync (empty delta), anomalous (score at or above
	// Threshold).
	Connected, InSync, Anomalous *bool
	// Threshold is the anomaly score threshold. Default
	// DefaultAnomalyThreshold.
	Threshold float64
}

// Match reports whether the filter selects d.
func (f *Filter) Match(d *Doc) bool {
	switch {
	case f.Prefix != "" && !strings.HasPrefix(d.ID, f.Prefix),
		f.Device != "" && d.ID != f.Device,
		f.Class != "" && d.Class != f.Class,
		f.Edge != "" && d.Edge != f.Edge,
		f.Site != "" && d.Site != f.Site,
		f.Connected != nil && d.Connected != *f.Connected,
		f.InSync != nil && d.InSync != *f.InSync,
		f.Anomalous != nil && d.Anomalous(f.Threshold) != *f.Anomalous:
		return false
	}
	return true
}

// filtering reports whether the filter needs documents read to decide.
func (f *Filter) filtering() bool {
	return f.Class != "" || f.Edge != "" || f.Site != "" || f.Connected != nil || f.InSync != nil || f.Anomalous != nil
}

// scanPrefix is the key prefix to scan, false when no key can match.
func (f *Filter) scanPrefix() (string, bool) {
	if f.Device == "" {
		return f.Prefix, true
	}
	return f.Device, strings.HasPrefix(f.Device, f.Prefix)
}

// key identifies the filter in a cache.
func (f *Filter) key() string {
	b := func(p *bool) string {
		if p == nil {
			return "-"
		}
		return fmt.Sprint(*p)
	}
	return fmt.Sprintf("%q %q %q %q %q %s %s %s %g", f.Prefix, f.Device, f.Class, f.Edge, f.Site, b(f.Connected), b(f.InSync), b(f.Anomalous), f.Threshold)
}

// MaxScan is the most shadows List reads for one page. A page whose
// filter matches few devices may therefore hold fewer than its limit, even
// none, and still have a Next: the following page goes on from there.
const MaxScan = 5000

// Page is a page of shadows in device id order. Next is the after of the
// following page, empty on the last one.
type Page struct {
	Devices []Doc
	Next    string
}

// List returns up to limit shadows that f selects, in device id order,
// after the device id after. It reads at most MaxScan documents, so that
// a page costs the same in a fleet of any size.
func List(ctx context.Context, st *store.Store, f Filter, after string, limit int) (Page, error) {
	page := Page{Devices: []Doc{}}
	if limit <= 0 {
		limit = 100
	}
	prefix, ok := f.scanPrefix()
	if !ok {
		return page, nil
	}
	chunk := limit
	if f.filtering() {
		chunk = min(max(4*limit, 256), 1000)
	}
	t := st.Table(store.ShadowsTable)
	scanned, cursor := 0, after
	for {
		docs, next, err := t.Scan(ctx, prefix, cursor, min(chunk, MaxScan-scanned))
		if err != nil {
			return Page{}, err
		}
		for i, d := range docs {
			scanned++
			doc, err := Parse(d)
			if err != nil || !f.Match(&doc) {
				continue
			}
			page.Devices = append(page.Devices, doc)
			if len(page.Devices) == limit {
				if i < len(docs)-1 || next != "" {
					page.Next = d.Key
				}
				return page, nil
			}
		}
		if next == "" {
			return page, nil
		}
		cursor = next
		if scanned >= MaxScan {
			page.Next = cursor
			return page, nil
		}
	}
}

// Count is how many devices of one class or edge there are, and how many
// of them are connected, out of sync and anomalous.
type Count struct {
	Name      string `json:"name"`
	Devices   int    `json:"devices"`
	Connected int    `json:"connected"`
	OutOfSync int    `json:"out_of_sync"`
	Anomalous int    `json:"anomalous"`
}

// TopAnomalies is how many of the highest-scoring devices a Summary lists.
const TopAnomalies = 10

// Summary counts the shadows a filter selects.
type Summary struct {
	Devices   int     `json:"devices"`
	Connected int     `json:"connected"`
	InSync    int     `json:"in_sync"`
	Anomalous int     `json:"anomalous"`
	Classes   []Count `json:"classes"`
	Edges     []Count `json:"edges"`
	// Anomalies are the anomalous devices with the highest scores,
	// highest first, at most TopAnomalies.
	Anomalies []Doc     `json:"anomalies"`
	Taken     time.Time `json:"taken"`
}

// Summarize reads every shadow f selects and counts them. Its cost grows
// with the fleet: serve it through a SummaryCache.
func Summarize(ctx context.Context, st *store.Store, f Filter, now time.Time) (Summary, error) {
	sum := Summary{Taken: now, Classes: []Count{}, Edges: []Count{}, Anomalies: []Doc{}}
	prefix, ok := f.scanPrefix()
	if !ok {
		return sum, nil
	}
	classes, edges := map[string]*Count{}, map[string]*Count{}
	add := func(m map[string]*Count, name string, d *Doc, anomalous bool) {
		c := m[name]
		if c == nil {
			c = &Count{Name: name}
			m[name] = c
		}
		c.Devices++
		if d.Connected {
			c.Connected++
		}
		if !d.InSync {
			c.OutOfSync++
		}
		if anomalous {
			c.Anomalous++
		}
	}
	t := st.Table(store.ShadowsTable)
	after := ""
	for {
		docs, next, err := t.Scan(ctx, prefix, after, 1000)
		if err != nil {
			return Summary{}, err
		}
		for _, d := range docs {
			doc, err := Parse(d)
			if err != nil || !f.Match(&doc) {
				continue
			}
			anomalous := doc.Anomalous(f.Threshold)
			sum.Devices++
			if doc.Connected {
				sum.Connected++
			}
			if doc.InSync {
				sum.InSync++
			}
			if anomalous {
				sum.Anomalous++
				sum.Anomalies = topAnomalies(sum.Anomalies, doc)
			}
			add(classes, doc.Class, &doc, anomalous)
			add(edges, doc.Edge, &doc, anomalous)
		}
		if next == "" {
			break
		}
		after = next
	}
	for _, c := range classes {
		sum.Classes = append(sum.Classes, *c)
	}
	for _, c := range edges {
		sum.Edges = append(sum.Edges, *c)
	}
	byName := func(a, b Count) int { return cmp.Compare(a.Name, b.Name) }
	slices.SortFunc(sum.Classes, byName)
	slices.SortFunc(sum.Edges, byName)
	return sum, nil
}

// topAnomalies inserts d into top, kept highest score first and at most
// TopAnomalies long.
func topAnomalies(top []Doc, d Doc) []Doc {
	i, _ := slices.BinarySearchFunc(top, *d.Score, func(e Doc, s float64) int { return cmp.Compare(s, *e.Score) })
	if i >= TopAnomalies {
		return top
	}
	top = slices.Insert(top, i, d)
	if len(top) > TopAnomalies {
		top = top[:TopAnomalies]
	}
	return top
}

// SummaryCache serves summaries no older than its time to live. A
// summary that has just expired is still served while a fresh one is
// counted in the background, so that a reader waits for a whole count only
// when there is no recent one at all.
type SummaryCache struct {
	st  *store.Store
	ttl time.Duration
	now func() time.Time

	mu      sync.Mutex
	entries map[string]*cachedSummary
}

type cachedSummary struct {
	sum      Summary
	counting bool // a background count is under way
}

// staleFactor is how many times its time to live an expired summary is
// still served while it is counted again.
const staleFactor = 4

// NewSummaryCache returns a cache of st's summaries that keeps each for
// ttl (default 5 s); now is its clock (default time.Now).
func NewSummaryCache(st *store.Store, ttl time.Duration, now func() time.Time) *SummaryCache {
	if ttl <= 0 {
		ttl = 5 * time.Second
	}
	if now == nil {
		now = time.Now
	}
	return &SummaryCache{st: st, ttl: ttl, now: now, entries: map[string]*cachedSummary{}}
}

// Get returns the summary of f: the cached one while it is younger than
// the time to live; after that, for a while, the cached one while a new
// one is counted in the background; else a new one.
func (c *SummaryCache) Get(ctx context.Context, f Filter) (Summary, error) {
	k := f.key()
	c.mu.Lock()
	now := c.now()
	e := c.entries[k]
	if e != nil {
		age := now.Sub(e.sum.Taken)
		if age < c.ttl {
			defer c.mu.Unlock()
			return e.sum, nil
		}
		if age < staleFactor*c.ttl {
			if !e.counting {
				e.counting = true
				go c.count(k, f)
			}
			defer c.mu.Unlock()
			return e.sum, nil
		}
	}
	c.mu.Unlock()
	sum, err := Summarize(ctx, c.st, f, now)
	if err != nil {
		return Summary{}, err
	}
	c.put(k, sum)
	return sum, nil
}

// count counts f in the background.
func (c *SummaryCache) count(k string, f Filter) {
	sum, err := Summarize(context.Background(), c.st, f, c.now())
	c.mu.Lock()
	if e := c.entries[k]; e != nil {
		e.counting = false
	}
	c.mu.Unlock()
	if err == nil {
		c.put(k, sum)
	}
}

// put keeps sum unless a newer one is there, and drops what is too old to
// serve.
func (c *SummaryCache) put(k string, sum Summary) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	for key, e := range c.entries {
		if now.Sub(e.sum.Taken) >= staleFactor*c.ttl && !e.counting {
			delete(c.entries, key)
		}
	}
	if e := c.entries[k]; e != nil {
		if e.sum.Taken.After(sum.Taken) {
			return
		}
		e.sum = sum
		return
	}
	c.entries[k] = &cachedSummary{sum: sum}
}
