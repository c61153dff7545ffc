package testenv

import (
	"net/http"
	"testing"

	"github.com/weft-io/weft/core"
	"github.com/weft-io/weft/edge"
)

// TestProbes: a core (whose HTTP is the console's) and an edge both answer
// the probes a supervisor uses, /healthz and /readyz, without a token.
func TestProbes(t *testing.T) {
	f := New(t)
	c := f.StartCore("core1", core.Config{})
	e := f.StartEdge("edge1", edge.Config{Core: c.SyncAddr().String()})
	for _, addr := range []string{c.HTTPAddr().String(), e.HTTPAddr().String()} {
		for _, path := range []string{"/healthz", "/readyz"} {
			resp, err := http.Get("http://" + addr + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("GET %s%s: %d, want 200", addr, path, resp.StatusCode)
			}
		}
	}
}
