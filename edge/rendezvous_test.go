package edge

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/weft-io/weft/anomaly"
	"github.com/weft-io/weft/models"
	"github.com/weft-io/weft/shadow"
	"github.com/weft-io/weft/store"
)

// liveModel trains, publishes and promotes a channel model of class pump
// on pressure_bar, as the core does, into st (the edge's mirror).
func liveModel(t testing.TB, st *store.Store, name string) string {
	t.Helper()
	ctx := context.Background()
	certsDir := t.TempDir()
	key, err := models.LoadOrCreateKey(certsDir)
	if err != nil {
		t.Fatal(err)
	}
	var rs []models.Reading
	for i := range 400 {
		rs = append(rs, models.Reading{Device: "p-0", At: t0.Add(time.Duration(i) * 5 * time.Second),
			Values: map[string]float64{"pressure_bar": 3 + 0.2*math.Sin(float64(i)/10)}})
	}
	reg := &models.Registry{Store: st, Key: key}
	if _, _, err := reg.Train(ctx, models.TrainRequest{Name: name, Class: "pump"}, rs); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{models.ActionPublish, models.ActionPromote} {
		if _, err := reg.Change(ctx, name, a, 1); err != nil {
			t.Fatal(err)
		}
	}
	return certsDir
}

// TestEdgeRendezvous: with a live model of the class, the edge's scorer
// uses the model's answer (its detection goes up instead of the
// defaults'), records every result in the scores stream and sends a
// summary per minute up, and archives one reading in 100 (the decoy, set so here).
func TestEdgeRendezvous(t *testing.T) {
	ctx := context.Background()
	st := openStore(t, store.Config{})
	certsDir := liveModel(t, st, "pumpbands")
	if _, err := shadow.Report(ctx, st, "p-1", json.RawMessage(`{}`), shadow.Source{Class: "pump", Edge: "edge1"}, t0, nil); err != nil {
		t.Fatal(err)
	}
	m := &Models{Store: st, Edge: "edge1", KeyFile: ModelKeyFile(certsDir), routed: true, Decoy: models.Decoy{Every: 100}}
	if err := m.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if s := m.runner.Schedule("pump"); len(s) != 1 || s[0].Model.String() != "pumpbands@1" || s[0].Deadline != models.DefaultDeadline {
		t.Fatalf("schedule %+v", s)
	}
	s := newScorer(st, "edge1", anomaly.Config{Epoch: 60}, UplinkFilter{}, nil)
	s.models = m
	runScorer(t, s)
	if _, err := st.Stream(store.EventsStream).Append(ctx, "edge1", pumpMsgs("p-1")...); err != nil {
		t.Fatal(err)
	}
	var used, summaries, modelDet, canaryDet, inputs int
	waitUntil(t, "the scores and summaries of the model", func() bool {
		used, summaries, modelDet, canaryDet, inputs = 0, 0, 0, 0, 0
		scores, err := st.Stream(models.ScoresStream).Read(ctx, "edge1", 0, 0, store.ReadOptions{Limit: 10000})
		if err != nil {
			return false
		}
		for _, msg := range scores {
			var r models.ScoreRecord
			if json.Unmarshal(msg.Value, &r) == nil && r.Used && r.Model == "pumpbands" {
				used++
			}
		}
		up, _ := st.Stream(store.UplinkStream).Read(ctx, "edge1", 0, 0, store.ReadOptions{Limit: 10000})
		for _, msg := range up {
			switch msg.Headers[anomaly.RecordHeader] {
			case models.RecordSummary:
				summaries++
			case models.RecordInput:
				inputs++
			case anomaly.RecordAnomaly:
				var d anomaly.Detection
				json.Unmarshal(msg.Value, &d)
				if strings.HasPrefix(d.Detector, "pumpbands@1/") {
					modelDet++
				} else {
					canaryDet++
				}
			}
		}
		return used == 215 && summaries >= 17 && modelDet > 0 && inputs == 2
	})
	if canaryDet != 0 {
		t.Errorf("%d detections of the defaults went up beside the model's", canaryDet)
	}
}

// BenchmarkRendezvous is the cost per reading of the edge's scoring with
// a class that has a live model and a candidate (the defaults' filter,
// then the rendezvous: both models, each beside its canary, the schedule,
// the score records, summaries and decoy), beside the defaults alone, on
// batches of 1,000 readings of 10 devices.
//
//	go test ./edge -run '^$' -bench Rendezvous -benchmem -count 3
func BenchmarkRendezvous(b *testing.B) {
	ctx := context.Background()
	st, err := store.Open(store.Config{Dir: b.TempDir(), Name: "edge1", MinFreeBytes: -1, RetentionInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	certsDir := liveModel(b, st, "pumpbands")
	key, err := models.LoadOrCreateKey(certsDir)
	if err != nil {
		b.Fatal(err)
	}
	reg := &models.Registry{Store: st, Key: key}
	var rs []models.Reading
	for i := range 400 {
		rs = append(rs, models.Reading{Device: "p-0", At: t0.Add(time.Duration(i) * 5 * time.Second),
			Values: map[string]float64{"pressure_bar": 3 + 0.3*math.Sin(float64(i)/10)}})
	}
	if _, _, err := reg.Train(ctx, models.TrainRequest{Name: "pumpbands", Class: "pump"}, rs); err != nil {
		b.Fatal(err)
	}
	if _, err := reg.Change(ctx, "pumpbands", models.ActionPublish, 2); err != nil {
		b.Fatal(err)
	}
	for d := range 10 {
		if _, err := shadow.Report(ctx, st, fmt.Sprintf("p-%d", d), json.RawMessage(`{}`), shadow.Source{Class: "pump", Edge: "edge1"}, t0, nil); err != nil {
			b.Fatal(err)
		}
	}
	batch := func(i int) []anomaly.Telemetry {
		out := make([]anomaly.Telemetry, 1000)
		for j := range out {
			k := i*1000 + j
			dev := fmt.Sprintf("p-%d", j%10)
			out[j] = anomaly.Telemetry{Device: dev, Class: "pump", Topic: "devices/" + dev + "/telemetry", At: t0.Add(time.Duration(k/10) * 5 * time.Second),
				Payload: fmt.Appendf(nil, `{"pressure_bar":%.3f}`, 3+0.2*math.Sin(float64(k)/100))}
		}
		return out
	}
	batches := make([][]anomaly.Telemetry, 50)
	for i := range batches {
		batches[i] = batch(i)
	}
	run := func(b *testing.B, m *Models) {
		f := anomaly.NewFilter(anomaly.FilterConfig{})
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			in := batches[i%len(batches)]
			up, scores := f.Batch(in)
			if m != nil {
				m.route(in, up, scores)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1000, "ns/reading")
	}
	b.Run("defaults", func(b *testing.B) { run(b, nil) })
	b.Run("defaults+rendezvous", func(b *testing.B) {
		m := &Models{Store: st, Edge: "edge1", KeyFile: ModelKeyFile(certsDir), routed: true}
		if err := m.Check(ctx); err != nil {
			b.Fatal(err)
		}
		if s := m.runner.Status("edge1", t0); len(s) != 1 || len(s[0].Versions) != 2 {
			b.Fatalf("status %+v", s)
		}
		run(b, m)
	})
}
