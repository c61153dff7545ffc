package node

import (
	"context"
	"net/http"
	"testing"

	"github.com/weft-io/weft/api"
)

// TestServeHTTPRequestID: every answer of a node's HTTP server, whatever
// serves it (API or console), carries a request id, the client's when sane.
func TestServeHTTPRequestID(t *testing.T) {
	var seen string
	s := serve(t, api.Limits{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = api.RequestIDFrom(r.Context())
	}))
	for _, id := range []string{"client-id-1", "bad id", ""} {
		req, err := http.NewRequestWithContext(context.Background(), "GET", s.URL()+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		if id != "" {
			req.Header.Set(api.RequestIDHeader, id)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		got := resp.Header.Get(api.RequestIDHeader)
		if !api.ValidRequestID(got) || got != seen || (api.ValidRequestID(id) != (got == id)) {
			t.Errorf("sent %q: answered %q, handler saw %q", id, got, seen)
		}
	}
}
