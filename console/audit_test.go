package console

import (
	"encoding/json"
	"fmt"
	"html"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/store"
)

var olderLink = regexp.MustCompile(`href="([^"]+)" id="audit-older"`)

// TestAuditPage: the audit page filters by subject, action, device and
// time, and pages through every record, newest first.
func TestAuditPage(t *testing.T) {
	e := newEnv(t)
	t0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	var msgs []store.Message
	for i := range 250 {
		at := t0.Add(time.Duration(i) * time.Second)
		b, _ := json.Marshal(map[string]any{"ts": at, "action": []string{"shadow.desired", "device.command"}[i%2],
			"object": fmt.Sprintf("/shadows/devices/pump-%d", i%4), "node": "core-1",
			"detail": map[string]any{"subject": []string{"ann", "bob"}[i%2], "detail": map[string]any{"n": i}}})
		msgs = append(msgs, store.Message{Value: b, Timestamp: at})
	}
	if _, err := e.st.Stream(store.AuditStream).Append(t.Context(), "core-1", msgs...); err != nil {
		t.Fatal(err)
	}
	b := e.browser()
	b.signIn(e.token(certs.RoleAdmin, nil))

	// count follows the Older links from path and counts the rows of
	// records of core-1 (the store adds its own, of edge1).
	count := func(path string) (rows, pages int) {
		for path != "" {
			page := b.get(path, 200)
			rows += strings.Count(page, `<td class="muted hide-narrow">core-1</td>`)
			pages++
			path = ""
			if m := olderLink.FindStringSubmatch(page); m != nil {
				path = html.UnescapeString(m[1])
			}
		}
		return rows, pages
	}
	if rows, pages := count("/audit"); rows != 250 || pages != 3 {
		t.Fatalf("all: %d rows in %d pages", rows, pages)
	}
	if rows, _ := count("/audit?subject=ann"); rows != 125 {
		t.Fatalf("subject: %d rows", rows)
	}
	if rows, _ := count("/audit?action=device.command"); rows != 125 {
		t.Fatalf("action: %d rows", rows)
	}
	if rows, _ := count("/audit?action=shadow.&device=pump-2"); rows != 62 {
		t.Fatalf("action and device: %d rows", rows)
	}
	// From 10:01 to 10:03 (UTC): records 60 to 179.
	if rows, _ := count("/audit?" + url.Values{"from": {"2026-03-01T10:01"}, "to": {"2026-03-01T10:03"}}.Encode()); rows != 120 {
		t.Fatalf("time: %d rows", rows)
	}
	// Newest first.
	page := b.get("/audit?subject=bob", 200)
	if i, j := strings.Index(page, "249"), strings.Index(page, "247"); i < 0 || j < i {
		t.Fatalf("newest first: %s", page)
	}
	if page := b.get("/audit?from=yesterday", 200); !strings.Contains(page, "want a time like") {
		t.Fatalf("bad time: %s", page)
	}
	if page := b.get("/audit?cursor=stale", 200); !strings.Contains(page, "out of date") {
		t.Fatalf("bad cursor: %s", page)
	}
}
