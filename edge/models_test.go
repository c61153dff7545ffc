package edge

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weft-io/weft/anomaly"
	"github.com/weft-io/weft/gateway"
	"github.com/weft-io/weft/internal/testenv/wait"
	"github.com/weft-io/weft/models"
	"github.com/weft-io/weft/shadow"
	"github.com/weft-io/weft/store"
)

// latestStatus returns the edge's latest model_status record of model.
func latestStatus(t *testing.T, st *store.Store, edge, model string) (models.StatusRecord, bool) {
	t.Helper()
	msgs, err := st.Stream(store.UplinkStream).Read(context.Background(), edge, 0, 0, store.ReadOptions{Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	var rec models.StatusRecord
	found := false
	for _, m := range msgs {
		if m.Headers[anomaly.RecordHeader] == models.RecordStatus && string(m.Key) == model {
			if err := json.Unmarshal(m.Value, &rec); err != nil {
				t.Fatal(err)
			}
			found = true
		}
	}
	return rec, found
}

// TestEdgeModels: an edge verifies the models of its devices' classes from
// its /models (as the core's mirror leaves it), scores its telemetry with
// the running ones and reports their state to its uplink.
func TestEdgeModels(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := store.Open(store.Config{Dir: t.TempDir(), MinFreeBytes: -1, RetentionInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	certsDir := t.TempDir()
	key, err := models.LoadOrCreateKey(certsDir)
	if err != nil {
		t.Fatal(err)
	}
	// What the core did: train two versions, publish both, promote 1.
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	var rs []models.Reading
	for i := range 300 {
		rs = append(rs, models.Reading{Device: "th-1", At: t0.Add(time.Duration(i) * 5 * time.Minute), Values: map[string]float64{"temp": 20 + math.Sin(float64(i)/10)}})
	}
	reg := &models.Registry{Store: st, Key: key}
	for range 2 {
		if _, _, err := reg.Train(ctx, models.TrainRequest{Name: "bands", Class: "thermo"}, rs); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := reg.Train(ctx, models.TrainRequest{Name: "pumps", Class: "pump"}, rs); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, action string
		v            uint64
	}{{"bands", models.ActionPublish, 1}, {"bands", models.ActionPromote, 1}, {"bands", models.ActionPublish, 2}, {"pumps", models.ActionPublish, 1}} {
		if _, err := reg.Change(ctx, c.name, c.action, c.v); err != nil {
			t.Fatal(err)
		}
	}
	// Version 2's parameters changed after signing.
	if _, err := st.File(models.VersionDir("bands", 2)+"/"+models.ParamsName).Write(ctx, jsonReader(`{"kind":"channel","channels":{"temp":{"threshold":1}}}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := shadow.Report(ctx, st, "th-1", json.RawMessage(`{}`), shadow.Source{Class: "thermo", Edge: "edge-a"}, t0, nil); err != nil {
		t.Fatal(err)
	}

	m := &Models{Store: st, Edge: "edge-a", KeyFile: ModelKeyFile(certsDir), Every: 20 * time.Millisecond, ReportEvery: 20 * time.Millisecond}
	if err := m.Check(ctx); err != nil {
		t.Fatal(err)
	}
	rec, ok := latestStatus(t, st, "edge-a", "bands")
	if !ok || rec.Versions["1"].State != models.StateRunning || rec.Versions["2"].State != models.StateRefused ||
		rec.Versions["2"].Reason != string(models.ReasonSizeMismatch) && rec.Versions["2"].Reason != string(models.ReasonHashMismatch) {
		t.Fatalf("status %+v", rec)
	}
	if _, ok := latestStatus(t, st, "edge-a", "pumps"); ok {
		t.Fatal("a model of a class the edge has no device of was reported")
	}

	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	// The consumer starts at the end of the events: append until the
	// runner has scored some.
	i := 0
	wait.For(t, 30*time.Second, "readings scored by bands@1", func() bool {
		var msgs []store.Message
		for range 20 {
			msgs = append(msgs, store.Message{Value: fmt.Appendf(nil, `{"temp":%g}`, 20+math.Sin(float64(i)/10)), Timestamp: t0.Add(time.Duration(i) * 5 * time.Minute),
				Headers: map[string]string{gateway.HeaderDevice: "th-1", gateway.HeaderClass: "thermo", gateway.HeaderTopic: "devices/th-1/telemetry"}})
			i++
		}
		if _, err := st.Stream(store.EventsStream).Append(ctx, "edge-a", msgs...); err != nil {
			t.Fatal(err)
		}
		rec, _ := latestStatus(t, st, "edge-a", "bands")
		return rec.Versions["1"].Scored > 0 && rec.Versions["1"].Agreement > 0
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// Without the model key pinned, every model is refused as unknown_key.
func TestEdgeModelsWithoutKey(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(store.Config{Dir: t.TempDir(), MinFreeBytes: -1, RetentionInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	key, err := models.LoadOrCreateKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	reg := &models.Registry{Store: st, Key: key}
	rs := []models.Reading{{Device: "th-1", At: time.Unix(0, 0), Values: map[string]float64{"temp": 1}}, {Device: "th-1", At: time.Unix(60, 0), Values: map[string]float64{"temp": 2}}}
	if _, _, err := reg.Train(ctx, models.TrainRequest{Name: "bands", Class: "thermo"}, rs); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Change(ctx, "bands", models.ActionPublish, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := shadow.Report(ctx, st, "th-1", json.RawMessage(`{}`), shadow.Source{Class: "thermo", Edge: "edge-a"}, time.Unix(0, 0), nil); err != nil {
		t.Fatal(err)
	}
	m := &Models{Store: st, Edge: "edge-a", KeyFile: filepath.Join(t.TempDir(), "model.pub.json")}
	if err := m.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if rec, _ := latestStatus(t, st, "edge-a", "bands"); rec.Versions["1"].Reason != string(models.ReasonUnknownKey) {
		t.Fatalf("status %+v", rec)
	}
}

func jsonReader(s string) *strings.Reader { return strings.NewReader(s) }
