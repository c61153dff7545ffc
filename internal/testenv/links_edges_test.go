package testenv

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/weft-io/weft/api"
	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/core"
	"github.com/weft-io/weft/edge"
)

// TestEdgeDoesNotListItsCore: an edge's GET /api/v1/edges lists edges
// (itself, from its devices' shadows), never its own core, while the core
// lists the edge with its link.
func TestEdgeDoesNotListItsCore(t *testing.T) {
	f := New(t)
	c := f.StartCore("core1", core.Config{})
	e := f.StartEdge("edge1", edge.Config{Core: c.SyncAddr().String()})
	WaitFor(t, 20*time.Second, "the link up", func() bool {
		for _, l := range e.Links() {
			return l.Connected
		}
		return false
	})
	get := func(addr string) api.EdgesResponse {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), "GET", "http://"+addr+"/api/v1/edges", nil)
		req.Header.Set("Authorization", "Bearer "+f.token(certs.RoleViewer))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out api.EdgesResponse
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	for _, ed := range get(e.HTTPAddr().String()).Edges {
		if ed.Name == "core1" {
			t.Fatalf("the edge lists its core as an edge: %+v", ed)
		}
	}
	WaitFor(t, 20*time.Second, "the core to list edge1 with its link", func() bool {
		for _, ed := range get(c.HTTPAddr().String()).Edges {
			if ed.Name == "edge1" && ed.Link != nil && ed.Link.State == "up" {
				return true
			}
		}
		return false
	})
}
