package edge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weft-io/weft/anomaly"
	"github.com/weft-io/weft/gateway"
	"github.com/weft-io/weft/internal/testenv/wait"
	"github.com/weft-io/weft/models"
	"github.com/weft-io/weft/models/external"
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

// scorePy is an external model in Python: the distance of a reading to
// 20, a tenth a unit.
const scorePy = `#!/usr/bin/env python3
import json, sys
for line in sys.stdin:
    r = json.loads(line)
    print(json.dumps({"seq": r["seq"], "score": min(1.0, abs(r["value"] - 20) / 10)}), flush=True)
`

// addExternal adds an external model running src to st, as the core
// does, and applies the stage changes.
func addExternal(t *testing.T, reg *models.Registry, name, src string, actions ...string) {
	t.Helper()
	ctx := context.Background()
	m, err := reg.AddExternal(ctx, models.ExternalRequest{Name: name, Class: "thermo", Channels: []string{"temp"}}, strings.NewReader(src))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range actions {
		if _, err := reg.Change(ctx, name, a, m.Version); err != nil {
			t.Fatal(err)
		}
	}
}

// externalEdge is an edge's model runner over st, running external
// models with a short backoff; procs gets each program.
func externalEdge(st *store.Store, certsDir, dir string, procs map[string]*external.Process) *Models {
	launch := external.Launcher(external.Config{Backoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, StartGrace: time.Nanosecond})
	return &Models{Store: st, Edge: "edge-a", KeyFile: ModelKeyFile(certsDir), Dir: dir, routed: true,
		Launch: func(m models.Manifest, p models.ExternalParams, x models.Exec) models.Process {
			pr := launch(m, p, x)
			if procs != nil {
				procs[m.Name] = pr.(*external.Process)
			}
			return pr
		}}
}

func thermoReading(i int, temp float64) anomaly.Telemetry {
	return anomaly.Telemetry{Device: "th-1", Class: "thermo", Topic: "devices/th-1/telemetry", At: t0.Add(time.Duration(i) * time.Minute),
		Payload: fmt.Appendf(nil, `{"temp":%g}`, temp)}
}

// TestEdgeExternalModels: external models run as child processes under
// the rendezvous. One that scores is used, with the deadline its class's
// schedule gives it; one that answers late misses its deadline, one that
// exits is counted and isolated, while the edge keeps scoring; one whose
// executable was changed after signing is refused and never run; a
// retired one's program is killed, and so are all when the edge stops.
func TestEdgeExternalModels(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("no python3")
	}
	ctx := context.Background()
	st := openStore(t, store.Config{})
	certsDir := t.TempDir()
	key, err := models.LoadOrCreateKey(certsDir)
	if err != nil {
		t.Fatal(err)
	}
	reg := &models.Registry{Store: st, Key: key}
	marker := filepath.Join(t.TempDir(), "tampered-ran")
	addExternal(t, reg, "good", scorePy, models.ActionPublish, models.ActionPromote)
	addExternal(t, reg, "slow", "#!/bin/sh\nwhile read l; do sleep 5; done\n", models.ActionPublish)
	addExternal(t, reg, "crashy", "#!/bin/sh\nread l\nexit 3\n", models.ActionPublish)
	addExternal(t, reg, "tampered", "#!/bin/sh\nwhile read l; do echo '{\"seq\":1,\"score\":0}'; done\n", models.ActionPublish, models.ActionPromote)
	if _, err := st.File(models.VersionDir("tampered", 1)+"/"+models.ExecFile).Write(ctx, strings.NewReader("#!/bin/sh\ntouch "+marker+"\n")); err != nil {
		t.Fatal(err)
	}
	// The class's schedule: good first with a deadline no healthy program
	// misses; the others (candidates) get the class's 100ms.
	if _, err := reg.SetSchedule(ctx, "thermo", models.ClassSchedule{DeadlineMs: 100, Models: []models.ScheduleEntry{{Name: "good", DeadlineMs: 10000}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := shadow.Report(ctx, st, "th-1", json.RawMessage(`{}`), shadow.Source{Class: "thermo", Edge: "edge-a"}, t0, nil); err != nil {
		t.Fatal(err)
	}
	procs := map[string]*external.Process{}
	runDir := t.TempDir()
	m := externalEdge(st, certsDir, runDir, procs)
	defer m.stop()
	if err := m.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if s := m.runner.Schedule("thermo"); len(s) != 1 || s[0].Model.String() != "good@1" || s[0].Deadline != 10*time.Second {
		t.Fatalf("schedule %+v", s)
	}
	faults := map[string]string{}
	for i := range 10 {
		_, scores, _ := m.route([]anomaly.Telemetry{thermoReading(i, 25)}, nil, []anomaly.Score{{Device: "th-1"}})
		if len(scores) != 1 || scores[0].Score != 0.5 {
			t.Fatalf("reading %d: scores %+v, want good's 0.5; faults %v", i, scores, m.runner.Faults())
		}
		m.mu.Lock()
		for ref, f := range m.runner.Faults() {
			for k := range f {
				faults[ref.Name] = k
			}
		}
		m.mu.Unlock()
	}
	if faults["slow"] != models.FaultSlow || faults["crashy"] != models.FaultCrash || faults["good"] != "" {
		t.Errorf("faults %v", faults)
	}
	if err := m.Check(ctx); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]models.EdgeState{
		"good":     {State: models.StateRunning, Scored: 10, Used: 10},
		"slow":     {State: models.StateRunning, Faults: 1, Isolated: true},
		"crashy":   {State: models.StateRunning, Faults: 1, Isolated: true},
		"tampered": {State: models.StateRefused, Reason: string(models.ReasonExecHashMismatch)},
	} {
		rec, _ := latestStatus(t, st, "edge-a", name)
		got := rec.Versions["1"]
		if got.Reason == string(models.ReasonExecSizeMismatch) {
			got.Reason = string(models.ReasonExecHashMismatch) // tampered, and longer
		}
		if got.State != want.State || got.Scored != want.Scored || got.Used != want.Used || got.Faults != want.Faults ||
			got.Isolated != want.Isolated || got.Reason != want.Reason {
			t.Errorf("%s: %+v, want %+v", name, got, want)
		}
	}
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) || procs["tampered"] != nil {
		t.Fatal("the tampered executable ran")
	}
	// Retired: its program is killed.
	pid := procs["good"].Pid()
	if pid == 0 {
		t.Fatal("good's program is not running")
	}
	if _, err := reg.Change(ctx, "good", models.ActionRetire, 1); err != nil {
		t.Fatal(err)
	}
	if err := m.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if procs["good"].Pid() != 0 || syscall.Kill(pid, 0) == nil {
		t.Error("a retired model's program still runs")
	}
	if _, err := os.Stat(filepath.Join(runDir, "good", "1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a retired model's executable is still unpacked: %v", err)
	}
	if _, err := os.Stat(filepath.Join(runDir, "slow", "1", models.ExecFile)); err != nil {
		t.Errorf("a candidate's executable is gone: %v", err)
	}
	// The edge stops: every program is killed.
	_, scores, _ := m.route([]anomaly.Telemetry{thermoReading(11, 25)}, nil, []anomaly.Score{{Device: "th-1"}})
	if len(scores) != 1 || scores[0].Score != 0 {
		t.Errorf("with no live model the canary's score was replaced: %+v", scores)
	}
	m.stop()
	for name, p := range procs {
		if p.Pid() != 0 {
			t.Errorf("%s runs after the edge stopped", name)
		}
	}
}

// TestEdgeModelsRestart: an edge restarted on the same data directory
// runs the versions it ran, with its class's schedule, from its first
// check and without a core; their counters carry on, and the versions it
// accepted before still decide what is not newer.
func TestEdgeModelsRestart(t *testing.T) {
	ctx := context.Background()
	dir, runDir := t.TempDir(), t.TempDir()
	open := func() *store.Store {
		st, err := store.Open(store.Config{Dir: dir, MinFreeBytes: -1, RetentionInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	st := open()
	certsDir := t.TempDir()
	key, err := models.LoadOrCreateKey(certsDir)
	if err != nil {
		t.Fatal(err)
	}
	reg := &models.Registry{Store: st, Key: key}
	var rs []models.Reading
	for i := range 300 {
		rs = append(rs, models.Reading{Device: "th-1", At: t0.Add(time.Duration(i) * time.Minute), Values: map[string]float64{"temp": 20 + math.Sin(float64(i)/10)}})
	}
	for range 2 {
		if _, _, err := reg.Train(ctx, models.TrainRequest{Name: "bands", Class: "thermo"}, rs); err != nil {
			t.Fatal(err)
		}
	}
	for _, a := range []string{models.ActionPublish, models.ActionPromote} {
		if _, err := reg.Change(ctx, "bands", a, 2); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := reg.SetSchedule(ctx, "thermo", models.ClassSchedule{DeadlineMs: 7000}); err != nil {
		t.Fatal(err)
	}
	if _, err := shadow.Report(ctx, st, "th-1", json.RawMessage(`{}`), shadow.Source{Class: "thermo", Edge: "edge-a"}, t0, nil); err != nil {
		t.Fatal(err)
	}
	edge := func(st *store.Store) *Models {
		return &Models{Store: st, Edge: "edge-a", KeyFile: ModelKeyFile(certsDir), Dir: runDir, routed: true}
	}
	m := edge(st)
	if err := m.Check(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		m.route([]anomaly.Telemetry{thermoReading(i, 20)}, nil, nil)
	}
	before := m.runner.Status("edge-a", t0)[0].Versions["2"]
	if before.State != models.StateRunning || before.Scored != 30 || before.Used != 30 {
		t.Fatalf("before the restart: %+v", before)
	}
	m.stop()
	st.Close()

	// While the edge was down, the mirror brought version 1 as a
	// candidate: older than the version 2 it accepted.
	st = open()
	defer st.Close()
	if _, err := (&models.Registry{Store: st, Key: key}).Change(ctx, "bands", models.ActionPublish, 1); err != nil {
		t.Fatal(err)
	}
	// The events the edge's scorer had scored before it stopped: the
	// models warm up from them.
	var msgs []store.Message
	for i := range 300 {
		msgs = append(msgs, store.Message{Value: fmt.Appendf(nil, `{"temp":%g}`, 20+math.Sin(float64(i)/10)), Timestamp: t0.Add(time.Duration(i-300) * time.Minute),
			Headers: map[string]string{gateway.HeaderDevice: "th-1", gateway.HeaderClass: "thermo", gateway.HeaderTopic: "devices/th-1/telemetry"}})
	}
	if _, err := st.Stream(store.EventsStream).Append(ctx, "edge-a", msgs...); err != nil {
		t.Fatal(err)
	}
	info, err := st.Stat(ctx, store.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Write(ctx, func(tx *store.Tx) error {
		for part := range max(info.Partitions, 1) {
			_, high, err := st.Stream(store.EventsStream).Bounds(ctx, "edge-a", part)
			if err != nil {
				return err
			}
			if err := tx.SetCursor(store.EventsStream, scoreGroup, "edge-a", part, high); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	m = edge(st)
	defer m.stop()
	if err := m.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.warm(ctx); err != nil {
		t.Fatal(err)
	}
	// Warm: a spike is the model's detection at once.
	up, _, _ := m.route([]anomaly.Telemetry{thermoReading(0, 60)}, nil, nil)
	detected := false
	for _, r := range up {
		if d, ok := r.Value.(anomaly.Detection); ok && strings.HasPrefix(d.Detector, "bands@2/") {
			detected = true
		}
	}
	if !detected {
		t.Errorf("no detection of a spike by the warmed-up model: %+v", up)
	}
	if s := m.runner.Schedule("thermo"); len(s) != 1 || s[0].Model.String() != "bands@2" || s[0].Deadline != 7*time.Second {
		t.Fatalf("schedule after the restart: %+v", s)
	}
	for i := range 9 {
		m.route([]anomaly.Telemetry{thermoReading(30+i, 20)}, nil, nil)
	}
	if err := m.Check(ctx); err != nil {
		t.Fatal(err)
	}
	rec, _ := latestStatus(t, st, "edge-a", "bands")
	if v2 := rec.Versions["2"]; v2.State != models.StateRunning || v2.Scored != 40 || v2.Used != 40 || v2.Agreement <= 0 || v2.DetectionsPerHour <= 0 {
		t.Errorf("version 2 after the restart: %+v, before %+v", v2, before)
	}
	if v1 := rec.Versions["1"]; v1.State != models.StateRefused || v1.Reason != string(models.ReasonNotNewer) {
		t.Errorf("version 1 after the restart: %+v", v1)
	}
}

// TestEdgeExternalModelsTogether: the external versions of a class are
// sent a reading before any is waited for. Model a answers only once
// model b has been sent the reading: asked one after the other, a would
// miss its deadline.
func TestEdgeExternalModelsTogether(t *testing.T) {
	ctx := context.Background()
	st := openStore(t, store.Config{})
	certsDir := t.TempDir()
	key, err := models.LoadOrCreateKey(certsDir)
	if err != nil {
		t.Fatal(err)
	}
	reg := &models.Registry{Store: st, Key: key}
	mark := filepath.Join(t.TempDir(), "b-was-sent")
	answer := `echo '{"seq":'$(echo $l | sed 's/.*"seq":\([0-9]*\).*/\1/')',"score":%s}'`
	addExternal(t, reg, "a", "#!/bin/sh\nwhile read l; do\n  while [ ! -e "+mark+" ]; do sleep 0.01; done\n  "+fmt.Sprintf(answer, "0.3")+"\ndone\n",
		models.ActionPublish, models.ActionPromote)
	addExternal(t, reg, "b", "#!/bin/sh\nwhile read l; do\n  touch "+mark+"\n  "+fmt.Sprintf(answer, "0.1")+"\ndone\n", models.ActionPublish)
	if _, err := reg.SetSchedule(ctx, "thermo", models.ClassSchedule{DeadlineMs: 10000}); err != nil {
		t.Fatal(err)
	}
	if _, err := shadow.Report(ctx, st, "th-1", json.RawMessage(`{}`), shadow.Source{Class: "thermo", Edge: "edge-a"}, t0, nil); err != nil {
		t.Fatal(err)
	}
	m := externalEdge(st, certsDir, t.TempDir(), nil)
	defer m.stop()
	if err := m.Check(ctx); err != nil {
		t.Fatal(err)
	}
	_, scores, _ := m.route([]anomaly.Telemetry{thermoReading(0, 25)}, nil, []anomaly.Score{{Device: "th-1"}})
	if len(scores) != 1 || scores[0].Score != 0.3 {
		t.Errorf("scores %+v, want a's 0.3; faults %v", scores, m.runner.Faults())
	}
}
