package testenv

import (
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/core"
	"github.com/weft-io/weft/edge"
	"github.com/weft-io/weft/store"
)

// TestHistoryFromTheEdge asks the core's API for the history of a device
// whose messages stay at its edge (/telemetry/by_device not replicated):
// the core fetches them over the link and says so.
func TestHistoryFromTheEdge(t *testing.T) {
	f := New(t)
	c := f.StartCore("core1", core.Config{})
	e := f.StartEdge("edge1", edge.Config{Core: c.SyncAddr().String()})
	ctx := t.Context()
	now := time.Now().UTC()
	for i := range 5 {
		_, err := e.Store().Stream(store.ByDeviceStream).Append(ctx, "pump-9", store.Message{
			Value: []byte(`{"t":1}`), Headers: map[string]string{"device": "pump-9"}, Timestamp: now.Add(time.Duration(i-10) * time.Second)})
		if err != nil {
			t.Fatal(err)
		}
	}
	// The core knows the device (its shadow names the edge) but holds none
	// of its messages.
	if _, err := e.Store().Table(store.ShadowsTable).Patch(ctx, "pump-9", []byte(`{"reported":{"x":1},"edge":"edge1","class":"pump"}`)); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Source, Edge string
		Messages     []json.RawMessage
	}
	WaitFor(t, 20*time.Second, "the history from the edge", func() bool {
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+c.HTTPAddr().String()+"/api/v1/devices/pump-9/history?from="+now.Add(-time.Minute).Format(time.RFC3339), nil)
		req.Header.Set("Authorization", "Bearer "+f.token(certs.RoleViewer))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == 200 && json.Unmarshal(b, &got) == nil && len(got.Messages) == 5
	})
	if got.Source != "edge" || got.Edge != "edge1" {
		t.Fatalf("history source %q edge %q, want the edge", got.Source, got.Edge)
	}
}
