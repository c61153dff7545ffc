package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/weft-io/weft/store"
)

// titles are the problem titles the package writes besides the error
// table's.
var titles = []string{"Bad request", "Body too large", "Missing token", "Invalid token", "Forbidden",
	"Method not allowed", "Precondition failed", "Internal error", "Not found", "Tokens owned elsewhere",
	"Token issuing not configured", "No console"}

// TestProblemTypesDocumented checks that every problem type resolves to a
// heading of docs/api.md.
func TestProblemTypesDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	headings := map[string]bool{}
	for line := range strings.Lines(string(doc)) {
		if h, ok := strings.CutPrefix(line, "#"); ok {
			headings[anchor(strings.TrimSpace(strings.TrimLeft(h, "#")))] = true
		}
	}
	all := append([]string(nil), titles...)
	for _, e := range errorTable {
		all = append(all, e.title)
	}
	for _, title := range all {
		if !headings[anchor(title)] {
			t.Errorf("problem %q has no heading in docs/api.md", title)
		}
	}
}

func TestProblemFor(t *testing.T) {
	tests := []struct {
		err     error
		ifMatch bool
		status  int
		title   string
	}{
		{fmt.Errorf("%w: /a/b", store.ErrNotFound), false, 404, "Not found"},
		{store.ErrBadPath, false, 400, "Bad path"},
		{store.ErrInvalid, false, 400, "Invalid argument"},
		{store.ErrBadDocument, false, 400, "Bad document"},
		{store.ErrBadPartition, false, 400, "No such partition"},
		{store.ErrWrongKind, false, 409, "Wrong object kind"},
		{store.ErrVersion, false, 409, "Version conflict"},
		{store.ErrVersion, true, 412, "Precondition failed"},
		{store.ErrExists, false, 409, "Already exists"},
		{store.ErrTrimmed, false, 410, "Offset trimmed"},
		{store.ErrQuotaExceeded, false, 507, "Quota exceeded"},
		{store.ErrDiskFull, false, 507, "Disk full"},
		{store.ErrCorrupt, false, 500, "Corrupt data"},
		{store.ErrClosed, false, 503, "Unavailable"},
		{fmt.Errorf("read: %w", context.DeadlineExceeded), false, 503, "Timeout"},
		{errors.New("badger: value log /var/lib/weft/000001.vlog truncated"), false, 500, "Internal error"},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("PUT", "/", nil)
		if tt.ifMatch {
			r.Header.Set("If-Match", `"3"`)
		}
		p := problemFor(r, tt.err)
		if p.Status != tt.status || p.Title != tt.title {
			t.Errorf("%v: %d %q, want %d %q", tt.err, p.Status, p.Title, tt.status, tt.title)
		}
		if p.Status == 500 && p.Title == "Internal error" && strings.Contains(p.Detail, "vlog") {
			t.Errorf("internal error detail leaks %q", p.Detail)
		}
	}
}

func TestProblemWriter(t *testing.T) {
	w := httptest.NewRecorder()
	Problem(w, http.StatusTeapot, "Offset trimmed", "detail here")
	if w.Code != 418 || w.Header().Get("Content-Type") != "application/problem+json" {
		t.Fatalf("%d %q", w.Code, w.Header().Get("Content-Type"))
	}
	want := `{"type":"` + ProblemTypeBase + `offset-trimmed","title":"Offset trimmed","status":418,"detail":"detail here"}` + "\n"
	if w.Body.String() != want {
		t.Fatalf("body %s, want %s", w.Body, want)
	}
}
