package alarm_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/weft-io/weft/alarm"
	"github.com/weft-io/weft/core"
	"github.com/weft-io/weft/edge"
	"github.com/weft-io/weft/internal/testenv"
	"github.com/weft-io/weft/internal/testenv/wait"
	"github.com/weft-io/weft/store"
)

// An edge raises a device_offline alarm while its core is away; when the
// link returns the alarm reaches the core, which tells its webhook, and
// the edge's clear follows it. The core's thresholds go down to the edge.
func TestEdgeAlarmReachesCoreWhenLinkReturns(t *testing.T) {
	ctx := t.Context()
	f := testenv.New(t)

	// The core's webhook, set while the core runs, kept in its table.
	var mu sync.Mutex
	var told []alarm.Alarm
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var a alarm.Alarm
		if !alarm.Verify("k", b, r.Header.Get(alarm.SignatureHeader)) || json.Unmarshal(b, &a) != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		mu.Lock()
		told = append(told, a)
		mu.Unlock()
	}))
	t.Cleanup(hook.Close)
	c := f.StartCore("core1", core.Config{})
	addr := c.SyncAddr().String()
	if _, err := alarm.SaveSettings(ctx, c.Store(), alarm.Settings{Webhooks: []alarm.Webhook{{URL: hook.URL, Secret: "k"}}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}

	// The core is away: the edge's device has been silent for 10 minutes.
	e := f.StartEdge("edge1", edge.Config{Core: addr})
	seen := e.Store().Now().Add(-10 * time.Minute).UTC().Format(time.RFC3339Nano)
	if _, err := e.Store().Table(store.ShadowsTable).Patch(ctx, "pump-9",
		fmt.Appendf(nil, `{"edge":"edge1","class":"pump","connected":false,"last_seen":%q}`, seen)); err != nil {
		t.Fatal(err)
	}
	var raised alarm.Alarm
	wait.For(t, time.Minute, "the edge to raise device_offline", func() bool {
		got, err := alarm.List(ctx, e.Store(), alarm.Filter{Type: alarm.DeviceOffline, State: alarm.Active})
		if err != nil || len(got) != 1 {
			return false
		}
		raised = got[0]
		return true
	})
	if raised.Device != "pump-9" || raised.Edge != "edge1" {
		t.Fatalf("raised at the edge: %+v", raised)
	}

	// The link returns: the alarm arrives, as the edge raised it.
	c = f.StartCore("core1", core.Config{Listen: addr})
	wait.For(t, time.Minute, "the alarm at the core", func() bool {
		got, err := alarm.List(ctx, c.Store(), alarm.Filter{Device: "pump-9"})
		return err == nil && len(got) == 1 && got[0].ID == raised.ID && got[0].State == alarm.Active &&
			got[0].Edge == "edge1" && got[0].Raised.Equal(raised.Raised)
	})
	wait.For(t, time.Minute, "the core's webhook told", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(told) == 1 && told[0].ID == raised.ID && told[0].State == alarm.Active
	})

	// Acknowledged at the core, cleared at the edge: both show.
	if _, _, err := alarm.Ack(ctx, c.Store(), raised.ID, "alice", c.Store().Now()); err != nil {
		t.Fatal(err)
	}
	now := e.Store().Now().UTC().Format(time.RFC3339Nano)
	if _, err := e.Store().Table(store.ShadowsTable).Patch(ctx, "pump-9", fmt.Appendf(nil, `{"connected":true,"last_seen":%q}`, now)); err != nil {
		t.Fatal(err)
	}
	wait.For(t, time.Minute, "the clear at the core", func() bool {
		got, err := alarm.List(ctx, c.Store(), alarm.Filter{Device: "pump-9"})
		return err == nil && len(got) == 1 && got[0].State == alarm.Cleared && got[0].Acknowledged != nil && got[0].Cleared != nil
	})
	wait.For(t, time.Minute, "the core's webhook told of the ack and the clear", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(told) == 3 && told[1].State == alarm.Acknowledged && told[2].State == alarm.Cleared
	})

	// The core's thresholds reach the edge, its webhooks do not.
	if _, err := alarm.SaveSettings(ctx, c.Store(), alarm.Settings{DeviceOfflineAfter: alarm.Duration(20 * time.Minute),
		Webhooks: []alarm.Webhook{{URL: hook.URL, Secret: "k"}}}); err != nil {
		t.Fatal(err)
	}
	wait.For(t, time.Minute, "the core's thresholds at the edge", func() bool {
		set, _, err := alarm.LoadSettings(ctx, e.Store())
		return err == nil && set.DeviceOfflineAfter == alarm.Duration(20*time.Minute) && len(set.Webhooks) == 0
	})
}
