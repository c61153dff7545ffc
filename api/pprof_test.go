package api

import (
	"net/http"
	"strings"
	"testing"

	"github.com/weft-io/weft/certs"
)

// TestPprofAdminOnly: the runtime profiles answer admin tokens only.
func TestPprofAdminOnly(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		token string
		want  int
	}{
		{"", http.StatusUnauthorized},
		{e.token(certs.RoleViewer), http.StatusForbidden},
		{e.token(certs.RoleOperator), http.StatusForbidden},
		{e.token(certs.RoleAdmin), http.StatusOK},
	} {
		resp, body := e.do("GET", "/debug/pprof/goroutine?debug=1", tc.token, "")
		if resp.StatusCode != tc.want {
			t.Fatalf("token %.10q: %d %s, want %d", tc.token, resp.StatusCode, body, tc.want)
		}
		if tc.want == http.StatusOK && !strings.Contains(string(body), "goroutine profile: total") {
			t.Fatalf("goroutine profile: %.200s", body)
		}
	}
	resp, body := e.do("GET", "/debug/pprof/profile?seconds=1", e.token(certs.RoleAdmin), "")
	if resp.StatusCode != http.StatusOK || len(body) == 0 {
		t.Fatalf("CPU profile: %d, %d bytes", resp.StatusCode, len(body))
	}
}
