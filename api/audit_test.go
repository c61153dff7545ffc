package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/store"
)

// auditRecords appends n audit records to topic (a node's name) of the
// audit stream, stamped a millisecond apart from t0: subject s<i%3>,
// action act.<i%2>, object /shadows/devices/d<i%5>.
func auditRecords(t *testing.T, st *store.Store, topic string, n int, t0 time.Time) {
	t.Helper()
	var msgs []store.Message
	flush := func() {
		if len(msgs) == 0 {
			return
		}
		if _, err := st.AppendMany(t.Context(), []store.AppendRequest{{Path: store.AuditStream, Topic: topic, Partition: 0, Messages: msgs}}); err != nil {
			t.Fatal(err)
		}
		msgs = nil
	}
	for i := range n {
		at := t0.Add(time.Duration(i) * time.Millisecond)
		b, _ := json.Marshal(map[string]any{"ts": at, "action": fmt.Sprintf("act.%d", i%2), "object": fmt.Sprintf("/shadows/devices/d%d", i%5),
			"node": topic, "detail": map[string]any{"subject": fmt.Sprintf("s%d", i%3), "detail": map[string]any{"i": i}}})
		msgs = append(msgs, store.Message{Value: b, Timestamp: at})
		if len(msgs) == 1000 {
			flush()
		}
	}
	flush()
}

// allAudit follows the cursor from the first page of query to the last,
// returning every record in the order the pages gave them, and the number
// of pages.
func (e *env) allAudit(query string) ([]AuditRecord, int) {
	e.t.Helper()
	var all []AuditRecord
	pages := 0
	cursor := ""
	for {
		q, _ := url.ParseQuery(query)
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		var page AuditResponse
		e.get("/api/v1/audit?"+q.Encode(), certs.RoleAdmin, http.StatusOK, &page)
		pages++
		all = append(all, page.Records...)
		if !page.More {
			if page.Next != "" {
				e.t.Fatalf("a last page with a cursor: %+v", page)
			}
			return all, pages
		}
		if page.Next == "" {
			e.t.Fatal("more without a cursor")
		}
		cursor = page.Next
		if pages > 1000 {
			e.t.Fatal("pages without end")
		}
	}
}

func detailI(t *testing.T, r AuditRecord) int {
	var d struct{ I int }
	if err := json.Unmarshal(r.Detail, &d); err != nil {
		t.Fatalf("detail %s", r.Detail)
	}
	return d.I
}

// TestAuditPaging: the cursor pages through every record the filters
// select, of every node's topic, newest first without from and oldest
// first with it, each record once.
func TestAuditPaging(t *testing.T) {
	e := newEnv(t)
	t0 := time.Now().Add(-time.Hour).UTC()
	auditRecords(t, e.st, "core-1", 300, t0)
	auditRecords(t, e.st, "edge-1", 200, t0.Add(500*time.Microsecond))

	for _, c := range []struct {
		query string
		want  func(node string, i int) bool
	}{
		{"limit=37", func(string, int) bool { return true }},
		{"limit=50&action=act.1", func(_ string, i int) bool { return i%2 == 1 }},
		{"limit=10&action=act.&subject=s2", func(_ string, i int) bool { return i%3 == 2 }},
		{"limit=25&device=d3", func(_ string, i int) bool { return i%5 == 3 }},
		{"limit=25&action=act.0,act.1&object=/shadows/devices/d1", func(_ string, i int) bool { return i%5 == 1 }},
		{"limit=33&from=" + t0.Format(time.RFC3339Nano), func(string, int) bool { return true }},
		{"limit=20&action=act.0&from=" + t0.Add(100*time.Millisecond).Format(time.RFC3339Nano), func(_ string, i int) bool { return i%2 == 0 && i >= 100 }},
	} {
		t.Run(c.query, func(t *testing.T) {
			all, pages := e.allAudit(c.query)
			// The records of the test's nodes, not the store's own.
			var got []AuditRecord
			for _, r := range all {
				if r.Node == "core-1" || r.Node == "edge-1" {
					got = append(got, r)
				}
			}
			want := 0
			for i := range 300 {
				if c.want("core-1", i) {
					want++
				}
			}
			for i := range 200 {
				if c.want("edge-1", i) {
					want++
				}
			}
			seen := map[string]bool{}
			for _, r := range got {
				k := fmt.Sprintf("%s/%d", r.Node, detailI(t, r))
				if seen[k] {
					t.Fatalf("%s twice", k)
				}
				seen[k] = true
				if !c.want(r.Node, detailI(t, r)) {
					t.Fatalf("record %s not selected", k)
				}
			}
			if len(got) != want || pages < 2 {
				t.Fatalf("%d records in %d pages, want %d", len(got), pages, want)
			}
			// Pages go back in time without from, forward with it.
			asc := strings.Contains(c.query, "from=")
			times := make([]time.Time, len(got))
			for i, r := range got {
				times[i] = r.Time
			}
			var first, last time.Time = times[0], times[len(times)-1]
			if asc != first.Before(last) {
				t.Fatalf("order: first %s last %s (ascending %v)", first, last, asc)
			}
		})
	}

	// A cursor of another query's direction, or not one at all: 400.
	var page AuditResponse
	e.get("/api/v1/audit?limit=5", certs.RoleAdmin, http.StatusOK, &page)
	resp, body := e.do("GET", "/api/v1/audit?from="+url.QueryEscape(t0.Format(time.RFC3339))+"&cursor="+page.Next, e.token(certs.RoleAdmin), "")
	problem(t, resp, body, http.StatusBadRequest)
	resp, body = e.do("GET", "/api/v1/audit?cursor=nonsense", e.token(certs.RoleAdmin), "")
	problem(t, resp, body, http.StatusBadRequest)
}

// TestAuditNoWindow: a record behind more than MaxRangeScan others that
// the filter does not select is still reached, page after page.
func TestAuditNoWindow(t *testing.T) {
	e := newEnv(t)
	t0 := time.Now().Add(-time.Hour).UTC()
	rare, _ := json.Marshal(map[string]any{"ts": t0, "action": "token.revoke", "object": "/api/v1/tokens/x", "node": "core-1",
		"detail": map[string]any{"subject": "alice", "detail": nil}})
	if _, err := e.st.Stream(store.AuditStream).Append(t.Context(), "core-1", store.Message{Value: rare, Timestamp: t0}); err != nil {
		t.Fatal(err)
	}
	auditRecords(t, e.st, "core-1", MaxRangeScan+500, t0.Add(time.Millisecond))
	got, pages := e.allAudit("action=token.revoke")
	if len(got) != 1 || got[0].Subject != "alice" || pages < 2 {
		t.Fatalf("%d records in %d pages: %+v", len(got), pages, got)
	}
}

// TestAuditSystemSubject: what a node records of its own actions has the
// subject system, and subject=system selects it.
func TestAuditSystemSubject(t *testing.T) {
	e := newEnv(t)
	if err := e.st.CreateVolume(t.Context(), "scratch", store.VolumeOptions{}); err != nil {
		t.Fatal(err)
	}
	e.post("/api/v1/streams/telemetry/events/messages", `{"messages":[{"topic":"x","value":"1"}]}`, http.StatusOK, nil)
	var page AuditResponse
	e.get("/api/v1/audit?subject=system&action=volume.create", certs.RoleAdmin, http.StatusOK, &page)
	if len(page.Records) != 1 || page.Records[0].Object != "/scratch" || page.Records[0].Subject != SystemSubject {
		t.Fatalf("system records: %+v", page.Records)
	}
	e.get("/api/v1/audit?subject=alice@admin", certs.RoleAdmin, http.StatusOK, &page)
	if len(page.Records) == 0 || slices.ContainsFunc(page.Records, func(r AuditRecord) bool { return r.Subject != "alice@admin" }) {
		t.Fatalf("alice's records: %+v", page.Records)
	}
}

// TestAuditRetention: the audit volume keeps 400 days unless told
// otherwise; a TTL set on it is kept; starting again writes nothing.
func TestAuditRetention(t *testing.T) {
	e := newEnv(t)
	ttl := func() time.Duration {
		vi, err := e.st.Volume("audit")
		if err != nil {
			t.Fatal(err)
		}
		return vi.TTL
	}
	if got := ttl(); got != DefaultAuditRetention {
		t.Fatalf("ttl %s", got)
	}
	policy := func() int {
		var page AuditResponse
		e.get("/api/v1/audit?action=volume.policy&object=/audit", certs.RoleAdmin, http.StatusOK, &page)
		return len(page.Records)
	}
	n := policy()
	mk := func(d time.Duration) {
		if _, err := New(Config{Store: e.st, TokenKey: e.srv.cfg.TokenKey, AuditRetention: d}); err != nil {
			t.Fatal(err)
		}
	}
	mk(0)
	if policy() != n || ttl() != DefaultAuditRetention {
		t.Fatal("a start with the same retention changed the volume")
	}
	other := 30 * 24 * time.Hour
	if _, err := e.st.ChangeVolume(t.Context(), "audit", store.VolumeChange{TTL: &other}); err != nil {
		t.Fatal(err)
	}
	mk(0)
	if ttl() != other {
		t.Fatalf("a TTL set on the volume was replaced: %s", ttl())
	}
	mk(90 * 24 * time.Hour)
	if ttl() != 90*24*time.Hour {
		t.Fatalf("setting: %s", ttl())
	}
	mk(-1)
	if ttl() != 0 {
		t.Fatalf("for ever: %s", ttl())
	}
}
