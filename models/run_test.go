package models

import (
	"crypto/sha256"
	"encoding/json"
	"testing"
	"time"

	"github.com/weft-io/weft/anomaly"
)

// artifact signs a channel model of class over temp with the given
// parameters and key.
func artifact(t testing.TB, name string, v uint64, class, stage string, cfg anomaly.Config, key []byte) Artifact {
	t.Helper()
	params, _ := json.Marshal(ParamsFile{Kind: KindChannel, Channels: map[string]anomaly.Config{"temp": cfg}})
	m := Manifest{Name: name, Version: v, Kind: KindChannel, Class: class, Channels: []string{"temp"},
		SHA256: sha256.Sum256(params), Size: int64(len(params)),
		Training: Training{Summary: []Summary{{Channel: "temp", P01: 15, P50: 20, P99: 25}}}}
	k := modelKey
	if key != nil {
		k = strangerKey
	}
	return Artifact{Name: name, Version: v, Stage: stage, Manifest: mustSign(t, m, k), Params: params}
}

func stateOf(t *testing.T, recs []StatusRecord, name string, v string) EdgeState {
	t.Helper()
	for _, r := range recs {
		if r.Model == name {
			return r.Versions[v]
		}
	}
	return EdgeState{}
}

func TestRunner(t *testing.T) {
	r := &Runner{Keys: pinnedKeys}
	classes := map[string]bool{"thermo": true}
	live := artifact(t, "bands", 1, "thermo", StageLive, anomaly.Config{}, nil)
	tampered := artifact(t, "bands", 2, "thermo", StageCandidate, anomaly.Config{Threshold: 0.9}, nil)
	tampered.Params = []byte(`{"kind":"channel","channels":{"temp":{"threshold":1}}}`)
	stranger := artifact(t, "other", 1, "thermo", StageLive, anomaly.Config{}, []byte{1})
	pump := artifact(t, "pumps", 1, "pump", StageLive, anomaly.Config{}, nil)
	unsigned := artifact(t, "naked", 1, "thermo", StageLive, anomaly.Config{}, nil)
	unsigned.Manifest = append(unsigned.Manifest[:len(unsigned.Manifest)-66:len(unsigned.Manifest)-66], 0x40)
	trained := artifact(t, "bands", 3, "thermo", "", anomaly.Config{}, nil)
	r.Sync([]Artifact{live, tampered, stranger, pump, unsigned, trained}, classes)

	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for i := range 400 {
		r.Observe("th-1", "thermo", t0.Add(time.Duration(i)*5*time.Minute), map[string]float64{"temp": 20 + float64(i%10)/10})
		r.Observe("p-1", "pump", t0, map[string]float64{"temp": 1})
	}
	recs := r.Status("edge-a", t0)
	want := map[string]EdgeState{
		"bands/1": {State: StateRunning, Scored: 400, Agreement: 1, Used: 400},
		"bands/2": {State: StateRefused, Reason: string(ReasonSizeMismatch)},
		"other/1": {State: StateRefused, Reason: string(ReasonUnknownKey)},
		"naked/1": {State: StateRefused, Reason: string(ReasonUnsigned)},
	}
	if len(recs) != 3 {
		t.Fatalf("%d records: %+v", len(recs), recs)
	}
	for key, w := range want {
		name, v, _ := cutSlash(key)
		got := stateOf(t, recs, name, v)
		got.Detail, got.Drift = "", 0
		if got != w {
			t.Errorf("%s: %+v, want %+v", key, got, w)
		}
	}
	// Readings 20 to 20.9 against a training median of 20 and a 1st-99th
	// percentile range of 10: none below the median, where half the
	// training's were.
	if d := stateOf(t, recs, "bands", "1").Drift; d != 0.5 {
		t.Errorf("drift %v, want 0.5", d)
	}
	if recs[0].Type != RecordStatus || recs[0].Edge != "edge-a" || recs[0].Class != "thermo" {
		t.Errorf("record %+v", recs[0])
	}

	// The candidate fixed runs; an older version never accepted is
	// refused; retiring stops; a version accepted before runs again.
	fixed := artifact(t, "bands", 2, "thermo", StageCandidate, anomaly.Config{Threshold: 0.9}, nil)
	r.Sync([]Artifact{live, fixed}, classes)
	if got := stateOf(t, r.Status("e", t0), "bands", "2"); got.State != StateRunning {
		t.Fatalf("fixed candidate: %+v", got)
	}
	retired := live
	retired.Stage = StageRetired
	old := artifact(t, "bands", 1, "thermo", StageLive, anomaly.Config{Margin: 9}, nil) // another v1
	r.Sync([]Artifact{retired, fixed}, classes)
	if got := stateOf(t, r.Status("e", t0), "bands", "1"); got.State != StateStopped {
		t.Fatalf("retired: %+v", got)
	}
	r.Sync([]Artifact{old, fixed}, classes)
	if got := stateOf(t, r.Status("e", t0), "bands", "1"); got.State != StateRefused || got.Reason != string(ReasonNotNewer) {
		t.Fatalf("another version 1 after 2: %+v", got)
	}
	r.Sync([]Artifact{live, fixed}, classes)
	if got := stateOf(t, r.Status("e", t0), "bands", "1"); got.State != StateRunning {
		t.Fatalf("rolled back to the version 1 accepted before: %+v", got)
	}
	// Parameters changed under a running version are refused; the same
	// artifact refused for want of a pinned key runs once the key is.
	changed := fixed
	changed.Params = []byte(`{"kind":"channel","channels":{"temp":{"threshold":0.95}}}`)
	r.Sync([]Artifact{live, changed}, classes)
	if got := stateOf(t, r.Status("e", t0), "bands", "2"); got.State != StateRefused || got.Reason != string(ReasonSizeMismatch) {
		t.Fatalf("parameters changed under a running version: %+v", got)
	}
	// The same version signed again over other parameters.
	resigned := artifact(t, "bands", 2, "thermo", StageCandidate, anomaly.Config{Threshold: 0.85}, nil)
	r.Sync([]Artifact{live, resigned}, classes)
	if got := stateOf(t, r.Status("e", t0), "bands", "2"); got.State != StateRefused || got.Reason != string(ReasonNotNewer) {
		t.Fatalf("version 2 signed again over other parameters: %+v", got)
	}
	keyless := &Runner{}
	keyless.Sync([]Artifact{live}, classes)
	if got := stateOf(t, keyless.Status("e", t0), "bands", "1"); got.Reason != string(ReasonUnknownKey) {
		t.Fatalf("without keys: %+v", got)
	}
	keyless.Keys = pinnedKeys
	keyless.Sync([]Artifact{live}, classes)
	if got := stateOf(t, keyless.Status("e", t0), "bands", "1"); got.State != StateRunning {
		t.Fatalf("once the key is pinned: %+v", got)
	}
	r.Sync([]Artifact{live, fixed}, classes)
	// A class the edge no longer has stops its versions.
	r.Sync([]Artifact{live, fixed}, map[string]bool{})
	if got := stateOf(t, r.Status("e", t0), "bands", "2"); got.State != StateStopped {
		t.Fatalf("without the class: %+v", got)
	}
}

func cutSlash(s string) (string, string, bool) {
	for i := range s {
		if s[i] == '/' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}
