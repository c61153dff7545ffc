package models

import (
	"math"
	"testing"
	"time"

	"github.com/weft-io/weft/anomaly"
)

func TestSchedulePick(t *testing.T) {
	a, b := Ref{"a", 1}, Ref{"b", 2}
	s := ScheduleOf([]Ref{b, a}, 5*time.Millisecond)
	if s[0].Model != a || s[1].Model != b || s[0].Deadline != 5*time.Millisecond {
		t.Fatalf("schedule %+v", s)
	}
	ms := time.Millisecond
	for _, tc := range []struct {
		name    string
		results []Result
		want    Ref
		ok      bool
	}{
		{"first in order", []Result{{Model: b, Latency: ms}, {Model: a, Latency: ms}}, a, true},
		{"first late", []Result{{Model: a, Latency: 6 * ms}, {Model: b, Latency: ms}}, b, true},
		{"first faulty", []Result{{Model: a, Fault: FaultGarbage}, {Model: b}}, b, true},
		{"candidate never", []Result{{Model: Ref{"c", 1}, Stage: StageCandidate}}, Ref{}, false},
		{"none in time: canary", []Result{{Model: a, Latency: 6 * ms}, {Model: b, Latency: 9 * ms}}, Ref{}, false},
		{"nothing", nil, Ref{}, false},
	} {
		got, ok := s.Pick(tc.results)
		if ok != tc.ok || got.Model != tc.want {
			t.Errorf("%s: %v %v, want %v %v", tc.name, got.Model, ok, tc.want, tc.ok)
		}
	}
	if got := ScheduleOf([]Ref{a}, 0); got[0].Deadline != DefaultDeadline {
		t.Errorf("default deadline %v", got[0].Deadline)
	}
}

// fakeScorer answers score, or panics, and moves the clock by took.
type fakeScorer struct {
	score float64
	panic bool
	took  time.Duration
	clock *time.Time
}

func (f *fakeScorer) Observe(time.Time, map[string]float64) (anomaly.Result, bool) {
	*f.clock = f.clock.Add(f.took)
	if f.panic {
		panic("model bug")
	}
	return anomaly.Result{Score: f.score, Detected: f.score >= 0.9}, true
}

// TestRendezvous: live versions answer in the schedule's order, a faulty
// one is isolated and counted while the next answers, the canary answers
// when none does, and a candidate is compared but never used.
func TestRendezvous(t *testing.T) {
	clock := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	behave := map[string]*fakeScorer{
		"a": {score: 0.95, clock: &clock},
		"b": {score: 0.1, clock: &clock},
		"c": {score: 0.92, clock: &clock},
	}
	r := &Runner{Keys: pinnedKeys, Clock: func() time.Time { return clock }, Deadline: 10 * time.Millisecond, Isolation: time.Minute,
		newScorer: func(m Manifest, _ ParamsFile) (scorer, error) { return behave[m.Name], nil }}
	r.Sync([]Artifact{
		artifact(t, "a", 1, "thermo", StageLive, anomaly.Config{}, nil),
		artifact(t, "b", 1, "thermo", StageLive, anomaly.Config{}, nil),
		artifact(t, "c", 1, "thermo", StageCandidate, anomaly.Config{}, nil),
	}, map[string]bool{"thermo": true})
	if s := r.Schedule("thermo"); len(s) != 2 || s[0].Model.Name != "a" || s[1].Model.Name != "b" {
		t.Fatalf("schedule %+v", s)
	}
	vals := map[string]float64{"temp": 20}
	step := func() Answer {
		clock = clock.Add(time.Second)
		return r.Observe("th-1", "thermo", clock, vals)
	}
	if got := step(); !got.OK || got.Used.Model.Name != "a" || got.Used.Score != 0.95 || len(got.Results) != 3 {
		t.Fatalf("all well: %+v", got)
	}
	for _, fault := range []struct {
		name string
		set  func(f *fakeScorer)
	}{
		{FaultSlow, func(f *fakeScorer) { f.took = 20 * time.Millisecond }},
		{FaultPanic, func(f *fakeScorer) { f.panic = true }},
		{FaultGarbage, func(f *fakeScorer) { f.score = math.NaN() }},
		{FaultGarbage, func(f *fakeScorer) { f.score = 1.5 }},
	} {
		*behave["a"] = fakeScorer{score: 0.95, clock: &clock}
		fault.set(behave["a"])
		got := step()
		if !got.OK || got.Used.Model.Name != "b" || got.Results[0].Fault != fault.name {
			t.Fatalf("a %s: %+v", fault.name, got)
		}
		// Isolated: not asked until Isolation passed.
		if got := step(); got.Used.Model.Name != "b" || len(got.Results) != 2 {
			t.Fatalf("a isolated after %s: %+v", fault.name, got)
		}
		*behave["a"] = fakeScorer{score: 0.95, clock: &clock}
		clock = clock.Add(time.Minute)
		if got := step(); got.Used.Model.Name != "a" {
			t.Fatalf("a back after %s: %+v", fault.name, got)
		}
	}
	// Both live versions slow: the canary answers; the edge goes on.
	behave["a"].took, behave["b"].took = 11*time.Millisecond, 11*time.Millisecond
	if got := step(); got.OK {
		t.Fatalf("both slow: %+v", got)
	}
	faults := r.Faults()
	if f := faults[Ref{"a", 1}]; f[FaultSlow] != 2 || f[FaultPanic] != 1 || f[FaultGarbage] != 2 {
		t.Errorf("faults of a: %v", f)
	}
	st := stateOf(t, r.Status("e", clock), "c", "1")
	if st.Used != 0 || st.AgreementLive <= 0 || st.Scored == 0 || st.DetectionsPerHour <= 0 {
		t.Errorf("candidate: %+v", st)
	}
	if a := stateOf(t, r.Status("e", clock), "a", "1"); a.Faults != 5 || !a.Isolated || a.Used == 0 {
		t.Errorf("a: %+v", a)
	}
}
