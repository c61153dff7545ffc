package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/weft-io/weft/certs"
)

// TestOpenAPI: every route the server registers is described at
// /api/v1/openapi.json, and every described route is served.
func TestOpenAPI(t *testing.T) {
	e := newEnv(t)
	// Nodes that run sync links add this one (core and edge).
	e.srv.Handle("GET /api/v1/links", certs.RoleViewer, http.NotFoundHandler())
	// Core nodes add this one.
	e.srv.Handle("GET /api/v1/cluster", certs.RoleViewer, http.NotFoundHandler())

	hit := map[string]bool{}
	for _, o := range operations {
		path := pathParam.ReplaceAllString(o.path, "x")
		_, pattern := e.srv.mux.Handler(httptest.NewRequest(o.method, path, nil))
		if pattern == "" || !slices.Contains(e.srv.patterns, pattern) {
			t.Errorf("%s %s is described but not served", o.method, o.path)
			continue
		}
		hit[pattern] = true
	}
	for _, p := range e.srv.patterns {
		if !hit[p] {
			t.Errorf("route %q is served but not described in the OpenAPI document", p)
		}
	}

	// The description is served, without a token, as JSON OpenAPI 3.
	resp, body := e.do("GET", "/api/v1/openapi.json", "", "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/v1/openapi.json: %d %s", resp.StatusCode, body)
	}
	var doc struct {
		OpenAPI string                    `json:"openapi"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(body, &doc); err != nil || doc.OpenAPI != "3.0.3" {
		t.Fatalf("document: %v %s", err, body[:min(len(body), 200)])
	}
	if _, ok := doc.Paths["/api/v1/devices/{id}/desired"]["patch"]; !ok {
		t.Fatalf("the desired-state route is missing from %v", doc.Paths)
	}
}
