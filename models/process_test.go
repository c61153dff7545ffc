package models

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/weft-io/weft/anomaly"
	sig "github.com/weft-io/weft/internal/signed"
	"github.com/weft-io/weft/store"
)

var testExec = []byte("#!/bin/sh\nexit 0\n")

func externalManifest() Manifest {
	params := []byte(`{"kind":"external","external":{"args":["-u"]}}`)
	m := baseManifest()
	m.Kind, m.SHA256, m.Size = KindExternal, sha256.Sum256(params), int64(len(params))
	m.ExecSHA256, m.ExecSize = sha256.Sum256(testExec), int64(len(testExec))
	return m
}

// An external model's manifest carries its executable's digest through
// CBOR and JSON; Verify refuses another executable, and the other kinds
// may have none.
func TestVerifyExternal(t *testing.T) {
	m := externalManifest()
	m.KeyID = sig.KeyID(modelKey.Public().(ed25519.PublicKey))
	b := mustSign(t, m, modelKey)
	got, err := Parse(b)
	if err != nil || got.ExecSHA256 != m.ExecSHA256 || got.ExecSize != m.ExecSize {
		t.Fatalf("parse: %+v %v", got, err)
	}
	j, _ := json.Marshal(got)
	var back Manifest
	if err := json.Unmarshal(j, &back); err != nil || back.ExecSHA256 != m.ExecSHA256 || !bytes.Contains(j, []byte(`"exec_sha256":"`+m.ExecDigest())) {
		t.Fatalf("JSON: %s %v", j, err)
	}
	exec := func(b []byte) *Params { return &Params{SHA256: sha256.Sum256(b), Size: int64(len(b))} }
	for _, c := range []struct {
		exec *Params
		want Reason
	}{
		{exec(testExec), ReasonOK},
		{nil, ReasonOK}, // not asked
		{&Params{}, ReasonExecSizeMismatch},
		{exec([]byte("#!/bin/sh\nexit 9\n")), ReasonExecHashMismatch},
		{exec([]byte("#!/bin/sh\nrm -rf /\n")), ReasonExecSizeMismatch},
	} {
		if v := Verify(Input{Manifest: b, Keys: pinnedKeys, Exec: c.exec}); v.Reason != c.want {
			t.Errorf("exec %v: %v, want %s", c.exec, v, c.want)
		}
	}
	noExec := m
	noExec.ExecSize = 0
	if _, err := Sign(noExec, modelKey); !errors.Is(err, ErrMalformed) {
		t.Errorf("an external model without an executable was signed: %v", err)
	}
	withExec := baseManifest()
	withExec.ExecSHA256, withExec.ExecSize = m.ExecSHA256, m.ExecSize
	if _, err := Sign(withExec, modelKey); !errors.Is(err, ErrMalformed) {
		t.Errorf("a channel model with an executable was signed: %v", err)
	}
}

// AddExternal stores the executable, signs its digest, and the stored
// version verifies; Put cannot add an external model without it.
func TestRegistryAddExternal(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(store.Config{Dir: t.TempDir(), MinFreeBytes: -1, RetentionInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	reg := &Registry{Store: st, Key: modelKey}
	m, err := reg.AddExternal(ctx, ExternalRequest{Name: "py", Class: "thermo", Channels: []string{"temp"}, Params: ExternalParams{Threshold: 0.7}}, bytes.NewReader(testExec))
	if err != nil {
		t.Fatal(err)
	}
	if m.Version != 1 || m.Kind != KindExternal || m.ExecSHA256 != sha256.Sum256(testExec) {
		t.Fatalf("manifest %+v", m)
	}
	stored, err := reg.ReadFile(ctx, "py", 1, ExecFile, MaxExecSize)
	if err != nil || !bytes.Equal(stored, testExec) {
		t.Fatalf("stored executable %q %v", stored, err)
	}
	man, _ := reg.ReadFile(ctx, "py", 1, ManifestFile, MaxManifestSize)
	params, _ := reg.ReadFile(ctx, "py", 1, ParamsName, MaxParamsSize)
	if _, err := DecodeParams(params, m); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Put(ctx, man, params); err == nil {
		t.Error("Put stored an external model without its executable")
	}
	if _, err := reg.AddExternal(ctx, ExternalRequest{Name: "py", Class: "pump", Channels: []string{"temp"}}, bytes.NewReader(testExec)); !errors.Is(err, ErrClass) {
		t.Errorf("another class: %v", err)
	}
	for _, bad := range []ExternalRequest{{Name: "py", Class: "thermo"}, {Name: SchedulesFile, Class: "thermo", Channels: []string{"temp"}},
		{Name: "py", Class: "thermo", Channels: []string{"temp"}, Params: ExternalParams{Threshold: 2}}} {
		if _, err := reg.AddExternal(ctx, bad, bytes.NewReader(testExec)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%+v: %v", bad, err)
		}
	}
	if _, err := reg.AddExternal(ctx, ExternalRequest{Name: "empty", Class: "thermo", Channels: []string{"temp"}}, strings.NewReader("")); !errors.Is(err, ErrMalformed) {
		t.Errorf("an empty executable: %v", err)
	}
}

// fakeProcess answers as told.
type fakeProcess struct {
	score  float64
	fault  string
	closed bool
	asked  int
}

func (p *fakeProcess) Send(device string, t time.Time, values map[string]float64, within time.Duration) (bool, string) {
	p.asked++
	_, ok := values["temp"]
	return ok, ""
}

func (p *fakeProcess) Await() (anomaly.Result, string) {
	return anomaly.Result{Score: p.score, Detected: p.score >= 0.8}, p.fault
}

func (p *fakeProcess) Close() error { p.closed = true; return nil }

// The runner asks an external version's process with the deadline of its
// schedule entry, counts its faults and closes it when it stops.
func TestRunnerExternal(t *testing.T) {
	params := []byte(`{"kind":"external","external":{}}`)
	art := func(name, stage string) Artifact {
		m := externalManifest()
		m.Name, m.Version, m.SHA256, m.Size = name, 1, sha256.Sum256(params), int64(len(params))
		return Artifact{Name: name, Version: 1, Stage: stage, Manifest: mustSign(t, m, modelKey), Params: params,
			Exec: &Exec{Path: "/x/" + name, SHA256: m.ExecSHA256, Size: m.ExecSize}}
	}
	procs := map[string]*fakeProcess{"a": {score: 0.9}, "b": {score: 0.1, fault: FaultCrash}}
	r := &Runner{Keys: pinnedKeys}
	arts := []Artifact{art("a", StageLive), art("b", StageLive)}
	classes := map[string]bool{"thermo": true}
	r.Sync(arts, classes)
	if st := stateOf(t, r.Status("e", time.Time{}), "a", "1"); st.State != StateRefused || st.Reason != string(ReasonUnsupported) {
		t.Fatalf("without Launch: %+v", st)
	}
	r = &Runner{Keys: pinnedKeys, Launch: func(m Manifest, p ExternalParams, x Exec) Process { return procs[m.Name] },
		Schedules: map[string]ClassSchedule{"thermo": {DeadlineMs: 5, Models: []ScheduleEntry{{Name: "b", DeadlineMs: 50}}}}}
	r.Sync(arts, classes)
	if s := r.Schedule("thermo"); len(s) != 2 || s[0].Model.Name != "b" || s[0].Deadline != 50*time.Millisecond || s[1].Deadline != 5*time.Millisecond {
		t.Fatalf("schedule %+v", s)
	}
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	ans := r.Observe("th-1", "thermo", t0, map[string]float64{"temp": 30})
	if !ans.OK || ans.Used.Model.Name != "a" || ans.Used.Score != 0.9 || !ans.Used.Detected {
		t.Fatalf("answer %+v", ans)
	}
	if f := r.Faults()[Ref{"b", 1}]; f[FaultCrash] != 1 {
		t.Errorf("faults %v", r.Faults())
	}
	r.Observe("th-1", "thermo", t0.Add(time.Minute), map[string]float64{"temp": 30})
	if procs["b"].asked != 1 || procs["a"].asked != 2 {
		t.Errorf("asked a %d, b %d times: b is isolated after its crash", procs["a"].asked, procs["b"].asked)
	}
	arts[0].Stage = StageRetired
	r.Sync(arts, classes)
	if !procs["a"].closed || procs["b"].closed {
		t.Errorf("closed: a %v b %v", procs["a"].closed, procs["b"].closed)
	}
	r.Close()
	if !procs["b"].closed {
		t.Error("Close left b's process")
	}
}

func TestPlanOf(t *testing.T) {
	a, b, c := Ref{"a", 1}, Ref{"b", 2}, Ref{"c", 3}
	for _, tc := range []struct {
		cs   ClassSchedule
		def  time.Duration
		want Schedule
	}{
		{ClassSchedule{}, 0, Schedule{{a, DefaultDeadline}, {b, DefaultDeadline}, {c, DefaultDeadline}}},
		{ClassSchedule{DeadlineMs: 2}, time.Second, Schedule{{a, 2 * time.Millisecond}, {b, 2 * time.Millisecond}, {c, 2 * time.Millisecond}}},
		{ClassSchedule{Models: []ScheduleEntry{{Name: "c", DeadlineMs: 0.5}, {Name: "gone", DeadlineMs: 9}, {Name: "a"}}}, time.Second,
			Schedule{{c, 500 * time.Microsecond}, {a, time.Second}, {b, time.Second}}},
	} {
		got := PlanOf([]Ref{c, a, b}, tc.cs, tc.def)
		if len(got) != len(tc.want) {
			t.Errorf("%+v: %+v", tc.cs, got)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("%+v: %+v, want %+v", tc.cs, got, tc.want)
				break
			}
		}
	}
	for _, bad := range []ClassSchedule{{DeadlineMs: -1}, {DeadlineMs: 10001}, {Models: []ScheduleEntry{{Name: "a"}, {Name: "a"}}}, {Models: []ScheduleEntry{{Name: "a/b"}}}} {
		if bad.Check() == nil {
			t.Errorf("%+v checked", bad)
		}
	}
}
