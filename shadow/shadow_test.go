package shadow

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/weft-io/weft/store"
)

var t0 = time.Date(2026, 3, 1, 11, 0, 0, 0, time.UTC)

func TestReconcile(t *testing.T) {
	seen := t0.Add(-time.Minute).Format(time.RFC3339Nano)
	for _, tt := range []struct {
		name    string
		doc     string
		changed bool
		check   func(t *testing.T, m map[string]any)
	}{
		{
			name:    "firmware and the delta follow the sides",
			doc:     `{"reported":{"setpoint":4,"firmware":"1.0.0"},"desired":{"setpoint":5},"last_seen":"` + seen + `"}`,
			changed: true,
			check: func(t *testing.T, m map[string]any) {
				if m[FieldFirmware] != "1.0.0" {
					t.Errorf("firmware %v", m[FieldFirmware])
				}
				if d := objectField(m, FieldDelta); len(d) != 1 {
					t.Errorf("delta %v, want setpoint", d)
				}
			},
		},
		{
			name:    "no times are stamped: they belong to each side's owner",
			doc:     `{"reported":{"a":1},"delta":{}}`,
			changed: false,
			check: func(t *testing.T, m map[string]any) {
				if _, ok := m[FieldReportedTS]; ok {
					t.Errorf("reported_ts stamped: %v", m[FieldReportedTS])
				}
			},
		},
		{
			name:    "stale delta is recomputed",
			doc:     `{"desired":{"setpoint":7},"reported":{"setpoint":7},"delta":{"setpoint":7}}`,
			changed: true,
			check: func(t *testing.T, m map[string]any) {
				if d := objectField(m, FieldDelta); len(d) != 0 {
					t.Errorf("delta %v, want empty", d)
				}
			},
		},
		{
			name:    "connection state alone changes nothing",
			doc:     `{"connected":true,"last_seen":"` + seen + `","delta":{}}`,
			changed: false,
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := decode(t, tt.doc)
			if got := reconcile(m); got != tt.changed {
				t.Fatalf("reconcile changed = %v, want %v", got, tt.changed)
			}
			if tt.check != nil {
				tt.check(t, m)
			}
			// Reconciling what reconcile wrote changes nothing: the
			// watcher's own writes do not make it loop.
			b, _ := json.Marshal(m)
			if again := decode(t, string(b)); reconcile(again) {
				t.Fatalf("second reconcile of %s changed it", b)
			}
		})
	}
}

func TestReportedTSMovesOnlyWithTheValue(t *testing.T) {
	m := map[string]any{}
	src := Source{Class: "pump", Edge: "truck-7", Site: "north"}
	applyReport(m, decode(t, `{"setpoint":4,"mode":"eco"}`), src, t0)
	// A report that changes setpoint only, a minute later.
	applyReport(m, decode(t, `{"setpoint":5,"mode":"eco"}`), src, t0.Add(time.Minute))
	ts := objectField(m, FieldReportedTS)
	if ts["setpoint"] != t0.Add(time.Minute).Format(time.RFC3339Nano) || ts["mode"] != t0.Format(time.RFC3339Nano) {
		t.Fatalf("reported_ts %v: want setpoint at 11:01 and mode still at 11:00", ts)
	}
	// A field the report removes loses its stamps.
	applyReport(m, decode(t, `{"mode":null}`), src, t0.Add(2*time.Minute))
	if _, ok := objectField(m, FieldReportedTS)["mode"]; ok {
		t.Fatalf("mode removed, still stamped: %v", m[FieldReportedTS])
	}
	if _, ok := objectField(m, FieldReportedFP)["mode"]; ok {
		t.Fatalf("mode removed, still fingerprinted: %v", m[FieldReportedFP])
	}
	if m[FieldLastSeen] != t0.Add(2*time.Minute).Format(time.RFC3339Nano) || m[FieldEdge] != "truck-7" || m[FieldSite] != "north" {
		t.Fatalf("connection fields %v %v %v", m[FieldLastSeen], m[FieldEdge], m[FieldSite])
	}
}

// TestFromEdge: a replica of the edge's shadow brings the edge's fields
// and times as they are, keeps the node's desired side, and recomputes
// the delta; an edge's copy of desired or delta is ignored.
func TestFromEdge(t *testing.T) {
	cur := decode(t, `{"desired":{"setpoint":7},"desired_ts":{"setpoint":"2026-03-01T09:00:00Z"},"reported":{"setpoint":1},"reported_ts":{"setpoint":"2026-03-01T08:00:00Z"}}`)
	edge := decode(t, `{"reported":{"setpoint":4,"mode":"eco"},"reported_ts":{"setpoint":"2026-03-01T10:00:00Z","mode":"2026-03-01T10:00:05Z"},
		"desired":{"setpoint":99},"delta":{"x":1},"last_seen":"2026-03-01T10:00:05Z","edge":"truck-7"}`)
	got := fromEdge(cur, edge)
	want := decode(t, `{"desired":{"setpoint":7},"desired_ts":{"setpoint":"2026-03-01T09:00:00Z"},
		"reported":{"setpoint":4,"mode":"eco"},"reported_ts":{"setpoint":"2026-03-01T10:00:00Z","mode":"2026-03-01T10:00:05Z"},
		"last_seen":"2026-03-01T10:00:05Z","edge":"truck-7","delta":{"setpoint":7}}`)
	b, _ := json.Marshal(got)
	if !Equal(decode(t, string(b)), want) {
		t.Fatalf("fromEdge:\n%s\nwant\n%v", b, want)
	}
	// The edge deletes its copy: the node keeps its own side only.
	b, _ = json.Marshal(fromEdge(cur, nil))
	if !Equal(decode(t, string(b)), decode(t, `{"desired":{"setpoint":7},"desired_ts":{"setpoint":"2026-03-01T09:00:00Z"},"delta":{"setpoint":7}}`)) {
		t.Fatalf("after the edge's delete: %s", b)
	}
	if out := fromEdge(map[string]any{}, nil); len(out) != 0 {
		t.Fatalf("nothing left should be empty: %v", out)
	}
}

func TestApplyDesired(t *testing.T) {
	m := decode(t, `{"reported":{"setpoint":4,"sample_interval_s":5},"desired":{"sample_interval_s":5,"old":1},"desired_ts":{"old":"2026-01-01T00:00:00Z"}}`)
	applyDesired(m, decode(t, `{"setpoint":7,"old":null}`), t0)
	b, _ := json.Marshal(m)
	got := decode(t, string(b))
	want := decode(t, `{
		"reported":{"setpoint":4,"sample_interval_s":5},
		"desired":{"setpoint":7,"sample_interval_s":5},
		"desired_ts":{"setpoint":"2026-03-01T11:00:00Z"},
		"delta":{"setpoint":7}}`)
	if !Equal(got, want) {
		t.Fatalf("after the patch:\n%s\nwant\n%v", b, want)
	}
}

func TestParse(t *testing.T) {
	d, err := Parse(store.Doc{Key: "pump-1", Version: 3, Updated: t0, Value: json.RawMessage(`{
		"reported":{"setpoint":4},"desired":{"setpoint":7},"delta":{},
		"connected":true,"last_seen":"2026-03-01T10:59:00.5Z","class":"pump","edge":"truck-7",
		"firmware":"1.2.0","score":0.93,"reported_ts":{"setpoint":"2026-03-01T10:59:00.5Z","bad":"x"},
		"desired_ts":"wrong type"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if d.ID != "pump-1" || d.Version != 3 || !d.Connected || d.Class != "pump" || d.Edge != "truck-7" || d.Firmware != "1.2.0" {
		t.Fatalf("parsed %+v", d)
	}
	if d.InSync || !Equal(d.Delta, map[string]any{"setpoint": 7.0}) {
		t.Fatalf("delta %v in sync %v: the stored (stale) delta must not be trusted", d.Delta, d.InSync)
	}
	if d.Score == nil || *d.Score != 0.93 || !d.Anomalous(0) || d.Anomalous(0.95) {
		t.Fatalf("score %v", d.Score)
	}
	if !d.LastSeen.Equal(t0.Add(-59500*time.Millisecond)) || len(d.ReportedTS) != 1 || len(d.DesiredTS) != 0 {
		t.Fatalf("times %v %v %v", d.LastSeen, d.ReportedTS, d.DesiredTS)
	}
	for _, bad := range []string{`[1]`, `"x"`, `{`, `{} {}`} {
		if _, err := Parse(store.Doc{Key: "x", Value: json.RawMessage(bad)}); err == nil {
			t.Errorf("Parse(%s) succeeded", bad)
		}
	}
	if d, err := Parse(store.Doc{Key: "x", Value: json.RawMessage(`null`)}); err != nil || !d.InSync {
		t.Errorf("Parse(null) = %+v, %v", d, err)
	}
}

// FuzzApplyDesired feeds desired-state patches, as API clients send them,
// through decoding, the merge and reconciliation: whatever decodes as an
// object gives a shadow that marshals, whose stored delta is the delta of
// its sides, and that a second reconcile leaves alone.
func FuzzApplyDesired(f *testing.F) {
	for _, s := range []string{`{"setpoint":7}`, `{"setpoint":null}`, `{"cfg":{"a":{"b":[1,2]}}}`, `{}`, `[1]`, `{"a":1e999}`, `{"":""}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, patch []byte) {
		p, err := decodeObject(patch)
		if err != nil {
			return
		}
		m := decode(t, `{"reported":{"setpoint":4,"cfg":{"a":1}},"desired":{"setpoint":5},"last_seen":"2026-03-01T10:00:00Z"}`)
		applyDesired(m, p, t0)
		reconcile(m)
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatalf("shadow does not marshal: %v", err)
		}
		again := decode(t, string(b))
		if !Equal(objectField(again, FieldDelta), Delta(objectField(again, FieldDesired), objectField(again, FieldReported))) {
			t.Fatalf("stored delta of %s is not the delta of its sides", b)
		}
		if reconcile(again) {
			t.Fatalf("second reconcile of %s changed it", b)
		}
	})
}
