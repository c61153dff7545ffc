package core

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/weft-io/weft/store"
)

func TestDeviceUpdatesGoToTheirEdge(t *testing.T) {
	st, err := store.Open(store.Config{Dir: filepath.Join(t.TempDir(), "d"), Name: "core1", MinFreeBytes: -1, RetentionInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	if _, err := st.Table(store.ShadowsTable).Put(ctx, "pump-1", json.RawMessage(`{"edge":"truck-7","class":"pump"}`)); err != nil {
		t.Fatal(err)
	}
	rule := deviceUpdates(st)
	for _, c := range []struct {
		edge, path, topic string
		ok                bool
	}{
		{"truck-7", store.UpdatesStream, "device/pump-1", true},
		{"truck-8", store.UpdatesStream, "device/pump-1", false},
		{"truck-7", store.UpdatesStream, "device/pump-2", false}, // never seen
		{"truck-8", store.UpdatesStream, "all", true},
		{"truck-8", store.UpdatesStream, "class/pump", true},
		{"truck-8", "/updates/other", "device/pump-1", true},
	} {
		if err := rule(c.edge, c.path, c.topic); (err == nil) != c.ok {
			t.Errorf("%s %s to %s: %v, want allowed %v", c.path, c.topic, c.edge, err, c.ok)
		}
	}
}
