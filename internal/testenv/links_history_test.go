package testenv

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/weft-io/weft/api"
	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/core"
	"github.com/weft-io/weft/edge"
	"github.com/weft-io/weft/store"
)

// TestHistoryEdgeOffline asks the core for the history of a device whose
// messages stay at its edge while that edge is offline: 503 with a
// problem document naming the edge and since when it is not connected.
func TestHistoryEdgeOffline(t *testing.T) {
	f := New(t)
	c := f.StartCore("core1", core.Config{})
	e := f.StartEdge("edge1", edge.Config{Core: c.SyncAddr().String()})
	ctx := t.Context()
	if _, err := e.Store().Table(store.ShadowsTable).Patch(ctx, "pump-9", []byte(`{"reported":{"x":1},"edge":"edge1","class":"pump"}`)); err != nil {
		t.Fatal(err)
	}
	// The core knows the device (its shadow names the edge).
	WaitFor(t, 20*time.Second, "the shadow at the core", func() bool {
		_, err := c.Store().Table(store.ShadowsTable).Get(ctx, "pump-9")
		return err == nil
	})
	e.Shutdown(context.Background())
	WaitFor(t, 20*time.Second, "the core to see the edge gone", func() bool {
		for _, l := range c.Links() {
			if l.Peer == "edge1" {
				return !l.Connected
			}
		}
		return false
	})
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+c.HTTPAddr().String()+"/api/v1/devices/pump-9/history", nil)
	req.Header.Set("Authorization", "Bearer "+f.token(certs.RoleViewer))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var p api.ProblemDetails
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatalf("%d %s: %v", resp.StatusCode, b, err)
	}
	if resp.StatusCode != http.StatusServiceUnavailable || p.Status != 503 || p.Title != "Edge not connected" ||
		resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("got %d %s", resp.StatusCode, b)
	}
	if !strings.Contains(p.Detail, "edge1") || !strings.Contains(p.Detail, "since 20") {
		t.Fatalf("the detail does not say which edge and since when: %q", p.Detail)
	}
}
