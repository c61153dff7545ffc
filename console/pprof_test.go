package console

import (
	"net/http"
	"testing"

	"github.com/weft-io/weft/certs"
)

// TestPprofReachesAPI checks that the runtime profiles, which the API
// serves to admin tokens, are reached through the console's handler (a
// node with a console serves only that handler).
func TestPprofReachesAPI(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	cases := []struct {
		name, path, token string
		want              int
	}{
		{"admin index", "/debug/pprof/", e.token(certs.RoleAdmin, nil), http.StatusOK},
		{"admin heap", "/debug/pprof/heap?debug=1", e.token(certs.RoleAdmin, nil), http.StatusOK},
		{"admin goroutine", "/debug/pprof/goroutine?debug=1", e.token(certs.RoleAdmin, nil), http.StatusOK},
		{"no token", "/debug/pprof/", "", http.StatusUnauthorized},
		{"viewer", "/debug/pprof/", e.token(certs.RoleViewer, nil), http.StatusForbidden},
		{"operator", "/debug/pprof/heap", e.token(certs.RoleOperator, nil), http.StatusForbidden},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var h map[string]string
			if c.token != "" {
				h = map[string]string{"Authorization": "Bearer " + c.token}
			}
			resp, body := b.do("GET", c.path, nil, h)
			if resp.StatusCode != c.want {
				t.Fatalf("GET %s: %d, want %d: %.200s", c.path, resp.StatusCode, c.want, body)
			}
		})
	}
}
