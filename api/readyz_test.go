package api

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/weft-io/weft/store"
)

// TestReadyz: GET /readyz needs no token and answers 200 while the store
// takes writes, 503 Unavailable saying why when its disk is read-only or
// below its reserve or the store is closed, and 200 again with the space
// back.
func TestReadyz(t *testing.T) {
	var sp atomic.Pointer[store.Space]
	ok := store.Space{FreeBytes: 1 << 40, FreeInodes: 1 << 20}
	sp.Store(&ok)
	st, err := store.Open(store.Config{Dir: t.TempDir(), RetentionInterval: -1,
		Statfs: func(string) (store.Space, error) { return *sp.Load(), nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	e := newEnv(t, func(c *Config) { c.Store = st })

	check := func(status int, detail string) {
		t.Helper()
		resp, body := e.do("GET", "/readyz", "", "")
		if resp.StatusCode != status {
			t.Fatalf("GET /readyz: %d %s, want %d", resp.StatusCode, body, status)
		}
		if status == http.StatusOK {
			if string(body) != "{\"status\":\"ready\"}\n" {
				t.Fatalf("GET /readyz: %s", body)
			}
			return
		}
		var p ProblemDetails
		if err := json.Unmarshal(body, &p); err != nil || p.Title != "Unavailable" || !strings.Contains(p.Detail, detail) {
			t.Fatalf("GET /readyz: %s, want Unavailable saying %q", body, detail)
		}
	}
	check(http.StatusOK, "")
	sp.Store(&store.Space{FreeBytes: 1 << 40, FreeInodes: 1 << 20, ReadOnly: true})
	check(http.StatusServiceUnavailable, "read-only")
	sp.Store(&store.Space{FreeBytes: 1 << 20, FreeInodes: 1 << 20})
	check(http.StatusServiceUnavailable, "disk full")
	sp.Store(&ok)
	check(http.StatusOK, "")
	st.Close()
	check(http.StatusServiceUnavailable, "closed")
}
