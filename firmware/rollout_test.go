package firmware

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 1, 11, 0, 0, 0, time.UTC)

func testSpec() Spec {
	return Spec{Release: "sensor-fw@1.2.0", Target: "class:pump", Waves: []int{10, 50, 100},
		FailureThreshold: 20, MinExecuted: 2, DeviceTimeout: Duration(15 * time.Minute)}
}

func devices(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("pump-%02d", i)
	}
	return ids
}

// step is one input of a rollout test: at minutes after t0, an event —
// "tick", "pause", "resume", "abort", or "<dev> <state>" with <dev> as
// w<wave>.<n>, the n-th device of wave <wave> (from 1), or a device id —
// and the actions it must give, with devices named the same way (for
// brevity "announce w2" stands for every device of wave 2, in order).
type step struct {
	at      float64
	ev      string
	actions string
	err     error
}

// rolloutTests are fed to TestRollout; 10 devices in waves of 10%, 50%
// and 100% take 1, 4 and 5 devices.
var rolloutTests = []struct {
	name   string
	spec   func(*Spec)
	steps  []step
	state  State
	counts string // "queued=1 succeeded=9", zero counts left out
	waves  string // wave states, space separated
	reason string // part of the halt reason
}{
	{
		name: "every wave succeeds",
		steps: []step{
			{0, "w1.1 downloading", "", nil},
			{1, "w1.1 installing", "", nil},
			{2, "w1.1 succeeded", "record rollout.wave_finished; record rollout.wave_started; announce w2", nil},
			{3, "w2.1 succeeded; w2.2 succeeded; w2.3 succeeded", "", nil},
			{4, "w2.4 succeeded", "record rollout.wave_finished; record rollout.wave_started; announce w3", nil},
			{5, "w3.1 succeeded; w3.2 succeeded; w3.3 succeeded; w3.4 succeeded; w3.5 succeeded", "record rollout.wave_finished; record rollout.succeeded", nil},
			{6, "pause", "", ErrRolloutState},
		},
		state: Done, counts: "succeeded=10", waves: "succeeded succeeded succeeded",
	},
	{
		name: "reports repeated or out of order change nothing",
		steps: []step{
			{0, "w1.1 installing", "", nil},
			{1, "w1.1 downloading; w1.1 installing", "", nil},
			{2, "w2.1 succeeded", "", nil}, // not sent yet
			{2, "stranger succeeded", "", nil},
			{3, "w1.1 succeeded", "record rollout.wave_finished; record rollout.wave_started; announce w2", nil},
			{4, "w1.1 failed", "", nil},
		},
		state: Running, counts: "queued=9 succeeded=1", waves: "succeeded running pending",
	},
	{
		name: "halts when failures cross the threshold after the minimum",
		steps: []step{
			{0, "w1.1 failed", "record rollout.wave_finished; record rollout.wave_started; announce w2", nil}, // 1 executed < min 2
			{1, "w2.1 succeeded", "record rollout.halted", nil},                                               // 1 of 2 = 50% > 20%
			{2, "w2.2 succeeded; w2.3 succeeded; w2.4 succeeded", "record rollout.wave_finished", nil},        // halted: no new wave
			{3, "tick", "", nil},
		},
		state: Halted, counts: "queued=5 succeeded=4 failed=1", waves: "succeeded soaking pending",
		reason: "1 of 2 executed devices failed",
	},
	{
		name: "at the threshold is not above it",
		spec: func(s *Spec) { s.FailureThreshold = 50 },
		steps: []step{
			{0, "w1.1 rejected", "record rollout.wave_finished; record rollout.wave_started; announce w2", nil},
			{1, "w2.1 succeeded", "", nil}, // 1 of 2 = 50%
			{2, "w2.2 failed", "record rollout.halted", nil},
		},
		state: Halted, counts: "queued=7 succeeded=1 failed=1 rejected=1", waves: "succeeded running pending",
		reason: "2 of 3",
	},
	{
		name: "a device stuck in progress times out and counts as a failure",
		spec: func(s *Spec) { s.MinExecuted = 1 },
		steps: []step{
			{0, "w1.1 downloading", "", nil},
			{14, "tick", "", nil},
			{15, "tick", "record rollout.device_timed_out; record rollout.halted; record rollout.wave_finished", nil},
			{16, "tick", "", nil},
		},
		state: Halted, counts: "queued=9 timed_out=1", waves: "soaking pending pending",
		reason: "1 of 1",
	},
	{
		name: "a device that never answers times out too, and a late answer replaces the timeout",
		spec: func(s *Spec) { s.FailureThreshold = 100 },
		steps: []step{
			{15, "tick", "record rollout.device_timed_out; record rollout.wave_finished; record rollout.wave_started; announce w2", nil},
			{16, "w1.1 succeeded", "", nil},
		},
		state: Running, counts: "queued=9 succeeded=1", waves: "succeeded running pending",
	},
	{
		name: "the next wave waits for the soak",
		spec: func(s *Spec) { s.WaveSoak = Duration(10 * time.Minute) },
		steps: []step{
			{1, "w1.1 succeeded", "record rollout.wave_finished", nil},
			{10, "tick", "", nil},
			{11, "tick", "record rollout.wave_started; announce w2", nil},
		},
		state: Running, counts: "queued=9 succeeded=1", waves: "succeeded running pending",
	},
	{
		name: "a paused rollout sends nothing until resumed",
		steps: []step{
			{0, "pause", "record rollout.paused", nil},
			{1, "pause", "", ErrRolloutState},
			{1, "w1.1 succeeded", "record rollout.wave_finished", nil},
			{2, "tick", "", nil},
			{3, "resume", "record rollout.resumed; record rollout.wave_started; announce w2", nil},
			{4, "resume", "", ErrRolloutState},
		},
		state: Running, counts: "queued=9 succeeded=1", waves: "succeeded running pending",
	},
	{
		name: "resume after a halt counts failures anew",
		spec: func(s *Spec) { s.MinExecuted = 1 },
		steps: []step{
			{0, "w1.1 failed", "record rollout.halted; record rollout.wave_finished", nil},
			{1, "resume", "record rollout.resumed; record rollout.wave_started; announce w2", nil},
			{2, "w2.1 succeeded; w2.2 succeeded; w2.3 succeeded", "", nil},
			{3, "w2.4 failed", "record rollout.halted; record rollout.wave_finished", nil}, // 1 of 4 = 25%
		},
		state: Halted, counts: "queued=5 succeeded=3 failed=2", waves: "succeeded soaking pending",
		reason: "1 of 4",
	},
	{
		name: "abort cancels what has not started",
		spec: func(s *Spec) { s.FailureThreshold = 100 },
		steps: []step{
			{0, "w1.1 succeeded", "record rollout.wave_finished; record rollout.wave_started; announce w2", nil},
			{1, "w2.1 downloading; w2.2 installing; w2.3 failed", "", nil},
			{2, "abort", "record rollout.aborted; cancel w2.4", nil},
			{3, "w2.1 succeeded; w2.2 failed", "", nil}, // in progress: still counted
			{4, "tick", "", nil},
			{4, "resume", "", ErrRolloutState},
			{5, "abort", "", ErrRolloutState},
		},
		state: Aborted, counts: "succeeded=2 failed=2 canceled=6", waves: "succeeded canceled canceled",
	},
	{
		name: "waiting devices of a halted rollout still time out",
		spec: func(s *Spec) { s.MinExecuted = 1 },
		steps: []step{
			{0, "w1.1 succeeded", "record rollout.wave_finished; record rollout.wave_started; announce w2", nil},
			{1, "w2.1 failed", "record rollout.halted", nil},
			{20, "tick", "record rollout.device_timed_out; record rollout.device_timed_out; record rollout.device_timed_out; record rollout.wave_finished", nil},
		},
		state: Halted, counts: "queued=5 succeeded=1 failed=1 timed_out=3", waves: "succeeded soaking pending",
		reason: "1 of 2",
	},
}

func TestRollout(t *testing.T) {
	for _, tt := range rolloutTests {
		t.Run(tt.name, func(t *testing.T) {
			spec := testSpec()
			if tt.spec != nil {
				tt.spec(&spec)
			}
			r, acts, err := NewRollout("r1", spec, devices(10), t0)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := render(r, acts), "record rollout.created; record rollout.wave_started; announce w1"; got != want {
				t.Fatalf("created: actions %q, want %q", got, want)
			}
			for _, s := range tt.steps {
				now := t0.Add(time.Duration(s.at * float64(time.Minute)))
				var all []Action
				for ev := range strings.SplitSeq(s.ev, "; ") {
					acts, err := feed(r, now, ev)
					if !errors.Is(err, s.err) {
						t.Fatalf("at %vm %q: error %v, want %v", s.at, ev, err, s.err)
					}
					all = append(all, acts...)
				}
				if got := render(r, all); got != s.actions {
					t.Fatalf("at %vm %q: actions %q, want %q", s.at, s.ev, got, s.actions)
				}
				// Whatever happens, the stored form gives the same rollout.
				r = roundTrip(t, r)
			}
			if r.State != tt.state {
				t.Errorf("state %s, want %s", r.State, tt.state)
			}
			if got := countsString(r.Counts()); got != countsString(parseCounts(t, tt.counts)) {
				t.Errorf("counts %s, want %s", got, tt.counts)
			}
			var ws []string
			for _, w := range r.Summary().Waves {
				ws = append(ws, string(w.State))
			}
			if got := strings.Join(ws, " "); got != tt.waves {
				t.Errorf("waves %s, want %s", got, tt.waves)
			}
			if !strings.Contains(r.HaltReason, tt.reason) || (tt.reason == "") != (r.HaltReason == "") {
				t.Errorf("halt reason %q, want one with %q", r.HaltReason, tt.reason)
			}
		})
	}
}

// feed applies one event.
func feed(r *Rollout, now time.Time, ev string) ([]Action, error) {
	switch ev {
	case "tick":
		return r.Tick(now), nil
	case "pause":
		return r.Pause(now)
	case "resume":
		return r.Resume(now)
	case "abort":
		return r.Abort(now)
	}
	dev, state, _ := strings.Cut(ev, " ")
	return r.Status(now, deviceOf(r, dev), DeviceState(state)), nil
}

// deviceOf resolves w<wave>.<n> to a device id.
func deviceOf(r *Rollout, ref string) string {
	w, n, ok := strings.Cut(strings.TrimPrefix(ref, "w"), ".")
	wi, err1 := strconv.Atoi(w)
	ni, err2 := strconv.Atoi(n)
	if !ok || err1 != nil || err2 != nil {
		return ref
	}
	return r.waveDevices(wi - 1)[ni-1].ID
}

// render writes actions with devices named as in step.
func render(r *Rollout, acts []Action) string {
	var out []string
	for i := 0; i < len(acts); i++ {
		a := acts[i]
		if a.Kind == Record {
			out = append(out, "record "+a.Change)
			continue
		}
		ref := a.Device
		for w := range r.Waves {
			ds := r.waveDevices(w)
			if j := slices.IndexFunc(ds, func(d Device) bool { return d.ID == a.Device }); j >= 0 {
				ref = fmt.Sprintf("w%d.%d", w+1, j+1)
				// A whole wave announced in order is written as its name.
				if a.Kind == Announce && j == 0 && i+len(ds) <= len(acts) && allAnnounced(acts[i:i+len(ds)], ds) {
					ref = fmt.Sprintf("w%d", w+1)
					i += len(ds) - 1
				}
			}
		}
		out = append(out, string(a.Kind)+" "+ref)
	}
	return strings.Join(out, "; ")
}

func allAnnounced(acts []Action, ds []Device) bool {
	for i := range ds {
		if acts[i].Kind != Announce || acts[i].Device != ds[i].ID {
			return false
		}
	}
	return true
}

func roundTrip(t *testing.T, r *Rollout) *Rollout {
	t.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back Rollout
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if err := back.Load(); err != nil {
		t.Fatal(err)
	}
	return &back
}

func countsString(c Counts) string {
	b, _ := json.Marshal(c)
	return string(b)
}

func parseCounts(t *testing.T, s string) Counts {
	m := map[string]int{}
	for f := range strings.FieldsSeq(s) {
		k, v, _ := strings.Cut(f, "=")
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("counts %q", s)
		}
		m[k] = n
	}
	b, _ := json.Marshal(m)
	var c Counts
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestRolloutWaves: waves take ceil(percent) of the devices, the same
// ones whatever order the list comes in, and different ones for another
// rollout.
func TestRolloutWaves(t *testing.T) {
	spec := testSpec()
	spec.Waves = []int{1, 10, 50, 100}
	ids := devices(250)
	a, _, err := NewRollout("r1", spec, ids, t0)
	if err != nil {
		t.Fatal(err)
	}
	var sizes []int
	for _, w := range a.Summary().Waves {
		sizes = append(sizes, w.Devices)
	}
	if want := []int{3, 22, 100, 125}; !slices.Equal(sizes, want) {
		t.Fatalf("wave sizes %v, want %v", sizes, want)
	}
	rev := slices.Clone(ids)
	slices.Reverse(rev)
	b, _, _ := NewRollout("r1", spec, append(rev, ids[:5]...), t0)
	c, _, _ := NewRollout("r2", spec, ids, t0)
	if !slices.Equal(a.Devices, b.Devices) {
		t.Fatal("the same rollout over the same devices ordered them differently")
	}
	if slices.Equal(a.Devices, c.Devices) {
		t.Fatal("two rollouts ordered their devices the same")
	}
}

func TestRolloutSpec(t *testing.T) {
	good := testSpec()
	if _, _, err := NewRollout("r1", good, nil, t0); !errors.Is(err, ErrInvalidSpec) {
		t.Fatalf("no devices: %v", err)
	}
	for _, mod := range []func(*Spec){
		func(s *Spec) { s.Release = "sensor-fw" },
		func(s *Spec) { s.Release = "sensor-fw@1.2" },
		func(s *Spec) { s.Target = "site:x" },
		func(s *Spec) { s.Waves = []int{10, 5, 100} },
		func(s *Spec) { s.Waves = []int{10, 50} },
		func(s *Spec) { s.Waves = nil },
		func(s *Spec) { s.FailureThreshold = 101 },
		func(s *Spec) { s.MinExecuted = -1 },
		func(s *Spec) { s.DeviceTimeout = 0 },
		func(s *Spec) { s.WaveSoak = -1 },
	} {
		s := good
		mod(&s)
		if _, _, err := NewRollout("r1", s, devices(3), t0); !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("%+v: error %v, want ErrInvalidSpec", s, err)
		}
	}
}

// parseTests feed TestParse and the fuzz targets.
var parseTests = []struct {
	target, waves, threshold string
	ok                       bool
	want                     string // the target's text form
}{
	{"all", "1,10,50,100", "10%", true, "all"},
	{"class:pump", "100", "0", true, "class:pump"},
	{"device:b,a,b", "50, 100", "12.5%", true, "device:a,b"},
	{"device:", "100", "10%", false, ""},
	{"device:a,,b", "100", "10%", false, ""},
	{"class:", "100", "10%", false, ""},
	{"class:a/b", "100", "10%", false, ""},
	{"everything", "100", "10%", false, ""},
	{"all", "10,10,100", "10%", false, "all"},
	{"all", "0,100", "10%", false, "all"},
	{"all", "50,101", "10%", false, "all"},
	{"all", "x", "10%", false, "all"},
	{"all", "100", "-1%", false, "all"},
	{"all", "100", "NaN", false, "all"},
}

func TestParse(t *testing.T) {
	for _, tt := range parseTests {
		tg, err1 := ParseTarget(tt.target)
		_, err2 := ParseWaves(tt.waves)
		_, err3 := ParseThreshold(tt.threshold)
		err := errors.Join(err1, err2, err3)
		if (err == nil) != tt.ok {
			t.Errorf("%q %q %q: error %v, want ok %v", tt.target, tt.waves, tt.threshold, err, tt.ok)
		}
		if err1 == nil && tg.String() != tt.want {
			t.Errorf("target %q reads as %q, want %q", tt.target, tg, tt.want)
		}
	}
}

func FuzzParseTarget(f *testing.F) {
	for _, tt := range parseTests {
		f.Add(tt.target)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tg, err := ParseTarget(s)
		if err != nil {
			return
		}
		back, err := ParseTarget(tg.String())
		if err != nil || back.String() != tg.String() {
			t.Fatalf("%q reads as %q, which reads as %q (%v)", s, tg, back, err)
		}
	})
}

var statusTests = []struct {
	in    string
	state DeviceState
}{
	{`{"rollout":"r1","state":"downloading"}`, Downloading},
	{`{"release":"sensor-fw@1.2.0","state":"installing"}`, Installing},
	{`{"rollout":"r1","state":"committed"}`, Succeeded},
	{`{"rollout":"r1","state":"rolled_back","reason":"health check"}`, Failed},
	{`{"rollout":"r1","state":"rejected","reason":"expired"}`, Rejected},
	{`{"rollout":"r1","state":"timed_out"}`, ""},
	{`{"rollout":"r1","state":"canceled"}`, ""},
	{`{"state":"succeeded"}`, ""},
	{`{"rollout":"r1"}`, ""},
	{`[1]`, ""},
	{`not json`, ""},
}

func TestParseStatus(t *testing.T) {
	r := &Rollout{ID: "r1", Spec: testSpec()}
	for _, tt := range statusTests {
		rep, st, err := ParseStatus([]byte(tt.in))
		if st != tt.state || (err == nil) != (tt.state != "") {
			t.Errorf("%s: state %q (%v), want %q", tt.in, st, err, tt.state)
		}
		if err == nil && !rep.Concerns(r) && rep.Release != "sensor-fw@1.2.0" {
			t.Errorf("%s: does not concern rollout r1", tt.in)
		}
	}
}

func FuzzParseStatus(f *testing.F) {
	for _, tt := range statusTests {
		f.Add([]byte(tt.in))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		_, st, err := ParseStatus(b)
		if err == nil && st.rank() < 1 {
			t.Fatalf("%q gives state %q", b, st)
		}
		if err == nil {
			// A parsed report never breaks a rollout.
			r, _, _ := NewRollout("r1", testSpec(), devices(3), t0)
			r.Status(t0, r.Devices[0].ID, st)
		}
	})
}
