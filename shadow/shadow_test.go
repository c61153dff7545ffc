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
			name:    "first report stamps every field with last_seen",
			doc:     `{"reported":{"setpoint":4,"firmware":"1.0.0"},"last_seen":"` + seen + `"}`,
			changed: true,
			check: func(t *testing.T, m map[string]any) {
				ts := objectField(m, FieldReportedTS)
				if ts["setpoint"] != seen || ts["firmware"] != seen {
					t.Errorf("reported_ts %v, want both at %s", ts, seen)
				}
				if m[FieldFirmware] != "1.0.0" {
					t.Errorf("firmware %v", m[FieldFirmware])
				}
				if d := objectField(m, FieldDelta); len(d) != 0 {
					t.Errorf("delta %v, want empty", d)
				}
			},
		},
		{
			name:    "without last_seen the clock stamps",
			doc:     `{"reported":{"a":1}}`,
			changed: true,
			check: func(t *testing.T, m map[string]any) {
				if ts := objectField(m, FieldReportedTS); ts["a"] != t0.Format(time.RFC3339Nano) {
					t.Errorf("reported_ts %v, want a at %s", ts, t0)
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
			name:    "a removed reported field loses its stamps",
			doc:     `{"reported":{},"reported_ts":{"old":"` + seen + `"},"reported_fp":{"old":"x"},"delta":{}}`,
			changed: true,
			check: func(t *testing.T, m map[string]any) {
				if len(objectField(m, FieldReportedTS)) != 0 || len(objectField(m, FieldReportedFP)) != 0 {
					t.Errorf("stamps left: %v %v", m[FieldReportedTS], m[FieldReportedFP])
				}
			},
		},
		{
			name:    "connection state alone changes nothing",
			doc:     `{"connected":true,"last_seen":"` + seen + `"}`,
			changed: false,
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := decode(t, tt.doc)
			if got := reconcile(m, t0); got != tt.changed {
				t.Fatalf("reconcile changed = %v, want %v", got, tt.changed)
			}
			if tt.check != nil {
				tt.check(t, m)
			}
			// Reconciling what reconcile wrote changes nothing: the
			// watcher's own writes do not make it loop.
			b, _ := json.Marshal(m)
			if again := decode(t, string(b)); reconcile(again, t0.Add(time.Hour)) {
				t.Fatalf("second reconcile of %s changed it", b)
			}
		})
	}
}

func TestReportedTSMovesOnlyWithTheValue(t *testing.T) {
	m := decode(t, `{"reported":{"setpoint":4,"mode":"eco"},"last_seen":"2026-03-01T10:00:00Z"}`)
	reconcile(m, t0)
	// A new report changes setpoint only.
	m[FieldReported] = map[string]any{"setpoint": json.Number("5"), "mode": "eco"}
	m[FieldLastSeen] = "2026-03-01T10:05:00Z"
	if !reconcile(m, t0) {
		t.Fatal("a changed value changed nothing")
	}
	ts := objectField(m, FieldReportedTS)
	if ts["setpoint"] != "2026-03-01T10:05:00Z" || ts["mode"] != "2026-03-01T10:00:00Z" {
		t.Fatalf("reported_ts %v: want setpoint at 10:05 and mode still at 10:00", ts)
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
		reconcile(m, t0)
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatalf("shadow does not marshal: %v", err)
		}
		again := decode(t, string(b))
		if !Equal(objectField(again, FieldDelta), Delta(objectField(again, FieldDesired), objectField(again, FieldReported))) {
			t.Fatalf("stored delta of %s is not the delta of its sides", b)
		}
		if reconcile(again, t0.Add(time.Hour)) {
			t.Fatalf("second reconcile of %s changed it", b)
		}
	})
}
