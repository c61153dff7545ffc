package firmware

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// This file holds the rollout: a pure state machine that sends a release
// to its target devices in cumulative waves and halts on its own when too
// many of them fail. Events go in (Status, Tick, Pause, Resume, Abort),
// actions come out (announce to a device, cancel an announcement, record a
// change); it keeps no clock and does no I/O. The core's runner (package
// api) stores it in a table and turns its actions into messages.

// DeviceState is where a device of a rollout stands.
type DeviceState string

// Device states. Queued devices have not reported progress yet (sent or
// not); succeeded, failed, timed_out, rejected and canceled are final.
const (
	Queued      DeviceState = "queued"
	Downloading DeviceState = "downloading"
	Installing  DeviceState = "installing"
	Succeeded   DeviceState = "succeeded"
	Failed      DeviceState = "failed"
	TimedOut    DeviceState = "timed_out"
	Rejected    DeviceState = "rejected"
	Canceled    DeviceState = "canceled"
)

// Final reports whether s ends the device's part in the rollout.
func (s DeviceState) Final() bool { return s.rank() == 3 }

// executed reports whether s counts as executed: finished, canceled aside.
func (s DeviceState) executed() bool { return s.Final() && s != Canceled }

// failure reports whether s counts against the failure threshold.
func (s DeviceState) failure() bool { return s == Failed || s == TimedOut || s == Rejected }

// rank orders the states a device moves through.
func (s DeviceState) rank() int {
	switch s {
	case Queued:
		return 0
	case Downloading:
		return 1
	case Installing:
		return 2
	case Succeeded, Failed, TimedOut, Rejected, Canceled:
		return 3
	}
	return -1
}

// State is the state of a rollout.
type State string

// Rollout states. Succeeded and aborted are final.
const (
	Running State = "running"
	Paused  State = "paused"
	Halted  State = "halted"
	Done    State = "succeeded"
	Aborted State = "aborted"
)

// WaveState is the state of one wave.
type WaveState string

// Wave states.
const (
	WavePending   WaveState = "pending"   // not started
	WaveRunning   WaveState = "running"   // announced, devices not all finished
	WaveSoaking   WaveState = "soaking"   // every device finished; waiting out the soak
	WaveSucceeded WaveState = "succeeded" // finished and soaked
	WaveCanceled  WaveState = "canceled"  // the rollout was aborted first
)

// Rollout errors.
var (
	// ErrInvalidSpec is a rollout spec that cannot run.
	ErrInvalidSpec = errors.New("firmware: invalid rollout")
	// ErrRolloutState is a pause, resume or abort the rollout's state does
	// not allow (pausing a finished rollout).
	ErrRolloutState = errors.New("firmware: rollout state does not allow this")
)

// MaxRolloutDevices bounds the devices of one rollout: the whole rollout,
// with every device's state, is one table document.
const MaxRolloutDevices = 100_000

// Target names the devices of a rollout: every device, the devices of one
// class, or listed devices. Its text form is "all", "class:CLASS" or
// "device:ID[,ID...]".
type Target struct {
	All     bool
	Class   string
	Devices []string
}

// ParseTarget reads a target's text form.
func ParseTarget(s string) (Target, error) {
	switch kind, rest, _ := strings.Cut(s, ":"); {
	case s == "all":
		return Target{All: true}, nil
	case kind == "class" && validName(rest):
		return Target{Class: rest}, nil
	case kind == "device" && rest != "":
		ids := strings.Split(rest, ",")
		for _, id := range ids {
			if !validName(id) {
				return Target{}, fmt.Errorf("%w: target %q: device id %q", ErrInvalidSpec, s, id)
			}
		}
		slices.Sort(ids)
		return Target{Devices: slices.Compact(ids)}, nil
	}
	return Target{}, fmt.Errorf("%w: target %q: want all, class:CLASS or device:ID[,ID...]", ErrInvalidSpec, s)
}

func (t Target) String() string {
	switch {
	case t.All:
		return "all"
	case t.Class != "":
		return "class:" + t.Class
	}
	return "device:" + strings.Join(t.Devices, ",")
}

// validName is a device id or class: letters, digits, '.', '_', '-'.
func validName(s string) bool {
	if s == "" || len(s) > MaxNameLen {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// ParseRelease reads a release reference NAME@VERSION.
func ParseRelease(s string) (name string, v Version, err error) {
	name, ver, ok := strings.Cut(s, "@")
	if !ok || !validName(name) {
		return "", Version{}, fmt.Errorf("%w: release %q: want NAME@VERSION", ErrInvalidSpec, s)
	}
	if v, err = ParseVersion(ver); err != nil {
		return "", Version{}, fmt.Errorf("%w: release %q: %v", ErrInvalidSpec, s, err)
	}
	return name, v, nil
}

// ParseWaves reads cumulative wave percentages such as "1,10,50,100":
// rising, above 0, the last 100.
func ParseWaves(s string) ([]int, error) {
	var waves []int
	for f := range strings.SplitSeq(s, ",") {
		p, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("%w: waves %q: %q is not a whole percentage", ErrInvalidSpec, s, f)
		}
		waves = append(waves, p)
	}
	return waves, checkWaves(waves)
}

func checkWaves(waves []int) error {
	if len(waves) == 0 || len(waves) > 100 {
		return fmt.Errorf("%w: waves %v: want 1 to 100 waves", ErrInvalidSpec, waves)
	}
	prev := 0
	for _, p := range waves {
		if p <= prev || p > 100 {
			return fmt.Errorf("%w: waves %v: want rising percentages above 0 and at most 100", ErrInvalidSpec, waves)
		}
		prev = p
	}
	if prev != 100 {
		return fmt.Errorf("%w: waves %v: the last wave must be 100", ErrInvalidSpec, waves)
	}
	return nil
}

// ParseThreshold reads a failure threshold such as "10%" (or "10"): a
// percentage from 0 to 100.
func ParseThreshold(s string) (float64, error) {
	v, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(s), "%"), 64)
	if err != nil || math.IsNaN(v) || v < 0 || v > 100 {
		return 0, fmt.Errorf("%w: failure threshold %q: want a percentage from 0%% to 100%%, such as 10%%", ErrInvalidSpec, s)
	}
	return v, nil
}

// Duration is a time.Duration that JSON carries as text ("15m").
type Duration time.Duration

func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText writes the duration as time.Duration.String does.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText reads a Go duration.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Spec is what a rollout is asked to do.
type Spec struct {
	// Release is the release sent, NAME@VERSION.
	Release string `json:"release"`
	// Target is the target's text form (ParseTarget).
	Target string `json:"target"`
	// Waves are cumulative percentages of the target's devices, rising,
	// the last 100.
	Waves []int `json:"waves"`
	// FailureThreshold is the percentage of executed devices that may fail
	// (failed, timed out or rejected); above it the rollout halts.
	FailureThreshold float64 `json:"failure_threshold"`
	// MinExecuted is how many devices must have finished before the
	// threshold is applied.
	MinExecuted int `json:"min_executed"`
	// DeviceTimeout is how long a device may take, from its announcement,
	// before it counts as timed out. Required.
	DeviceTimeout Duration `json:"device_timeout"`
	// WaveSoak is how long a finished wave waits before the next starts.
	WaveSoak Duration `json:"wave_soak"`
}

// Check validates the spec.
func (s *Spec) Check() error {
	if _, _, err := ParseRelease(s.Release); err != nil {
		return err
	}
	if _, err := ParseTarget(s.Target); err != nil {
		return err
	}
	if err := checkWaves(s.Waves); err != nil {
		return err
	}
	if math.IsNaN(s.FailureThreshold) || s.FailureThreshold < 0 || s.FailureThreshold > 100 {
		return fmt.Errorf("%w: failure threshold %v: want 0 to 100", ErrInvalidSpec, s.FailureThreshold)
	}
	if s.MinExecuted < 0 {
		return fmt.Errorf("%w: min executed %d: want 0 or more", ErrInvalidSpec, s.MinExecuted)
	}
	if s.DeviceTimeout <= 0 {
		return fmt.Errorf("%w: device timeout %s: want a duration above 0", ErrInvalidSpec, time.Duration(s.DeviceTimeout))
	}
	if s.WaveSoak < 0 {
		return fmt.Errorf("%w: wave soak %s: want 0 or more", ErrInvalidSpec, time.Duration(s.WaveSoak))
	}
	return nil
}

// Device is one device of a rollout.
type Device struct {
	ID    string      `json:"id"`
	State DeviceState `json:"state"`
	// Sent is when the device was announced the release; zero before.
	Sent time.Time `json:"sent,omitzero"`
	// Changed is when State last changed.
	Changed time.Time `json:"changed,omitzero"`
}

// Devices are a rollout's devices. They are stored as columns, not one
// object per device, so that a rollout of many devices stays quick to
// read and write: ids, states one letter each (stateLetters), and the
// times as Unix milliseconds (0 for none).
type Devices []Device

// stateLetters are the letters of the device states in stored Devices.
var stateLetters = map[DeviceState]byte{Queued: 'q', Downloading: 'd', Installing: 'i', Succeeded: 's',
	Failed: 'f', TimedOut: 't', Rejected: 'r', Canceled: 'c'}

var letterStates = func() map[byte]DeviceState {
	m := map[byte]DeviceState{}
	for s, l := range stateLetters {
		m[l] = s
	}
	return m
}()

type deviceColumns struct {
	IDs     []string `json:"ids"`
	States  string   `json:"states"`
	Sent    []int64  `json:"sent"`
	Changed []int64  `json:"changed"`
}

func millis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMillis(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

// MarshalJSON writes the devices as columns.
func (ds Devices) MarshalJSON() ([]byte, error) {
	c := deviceColumns{IDs: make([]string, len(ds)), Sent: make([]int64, len(ds)), Changed: make([]int64, len(ds))}
	states := make([]byte, len(ds))
	for i, d := range ds {
		l, ok := stateLetters[d.State]
		if !ok {
			return nil, fmt.Errorf("firmware: device %s: unknown state %q", d.ID, d.State)
		}
		c.IDs[i], states[i], c.Sent[i], c.Changed[i] = d.ID, l, millis(d.Sent), millis(d.Changed)
	}
	c.States = string(states)
	return json.Marshal(c)
}

// UnmarshalJSON reads the columns MarshalJSON writes.
func (ds *Devices) UnmarshalJSON(b []byte) error {
	var c deviceColumns
	if err := json.Unmarshal(b, &c); err != nil {
		return err
	}
	n := len(c.IDs)
	if len(c.States) != n || len(c.Sent) != n || len(c.Changed) != n {
		return fmt.Errorf("%w: device columns of different lengths", ErrInvalidSpec)
	}
	out := make(Devices, n)
	for i := range out {
		st, ok := letterStates[c.States[i]]
		if !ok {
			return fmt.Errorf("%w: device %s: unknown state %q", ErrInvalidSpec, c.IDs[i], c.States[i])
		}
		out[i] = Device{ID: c.IDs[i], State: st, Sent: fromMillis(c.Sent[i]), Changed: fromMillis(c.Changed[i])}
	}
	*ds = out
	return nil
}

// Counts are a rollout's or a wave's devices by state.
type Counts struct {
	Queued      int `json:"queued"`
	Downloading int `json:"downloading"`
	Installing  int `json:"installing"`
	Succeeded   int `json:"succeeded"`
	Failed      int `json:"failed"`
	TimedOut    int `json:"timed_out"`
	Rejected    int `json:"rejected"`
	Canceled    int `json:"canceled"`
}

func (c *Counts) add(s DeviceState) {
	switch s {
	case Queued:
		c.Queued++
	case Downloading:
		c.Downloading++
	case Installing:
		c.Installing++
	case Succeeded:
		c.Succeeded++
	case Failed:
		c.Failed++
	case TimedOut:
		c.TimedOut++
	case Rejected:
		c.Rejected++
	case Canceled:
		c.Canceled++
	}
}

// Executed is how many devices finished, canceled ones aside.
func (c Counts) Executed() int { return c.Succeeded + c.Failed + c.TimedOut + c.Rejected }

// Failures is how many devices failed, timed out or rejected the release.
func (c Counts) Failures() int { return c.Failed + c.TimedOut + c.Rejected }

// Total is how many devices are counted.
func (c Counts) Total() int {
	return c.Executed() + c.Queued + c.Downloading + c.Installing + c.Canceled
}

// Wave is one wave of a rollout as stored.
type Wave struct {
	Percent int       `json:"percent"`
	End     int       `json:"end"` // Devices[:End] are in this wave or an earlier one
	State   WaveState `json:"state"`
	// Finished is when the wave's last device finished: the soak starts.
	Finished time.Time `json:"finished,omitzero"`
}

// Rollout is a rollout's whole state: what the core stores and what each
// event changes. Its methods are the state machine; none reads a clock or
// does I/O, and each returns the actions the caller must carry out.
type Rollout struct {
	ID         string    `json:"id"`
	Spec       Spec      `json:"spec"`
	State      State     `json:"state"`
	HaltReason string    `json:"halt_reason"`
	Created    time.Time `json:"created"`
	Updated    time.Time `json:"updated"`
	// Seq counts the rollout's changes: a step that leaves it unchanged
	// leaves Seq as it was.
	Seq   uint64 `json:"seq"`
	Waves []Wave `json:"waves"`
	// Devices are the target's devices in the order waves take them.
	Devices Devices `json:"devices"`
	// Forgiven are the failures and executions counted when the rollout
	// was last resumed from a halt: the threshold applies to what follows.
	Forgiven struct {
		Failures int `json:"failures"`
		Executed int `json:"executed"`
	} `json:"forgiven"`

	index map[string]int // device id -> position in Devices
}

// ActionKind is what an Action asks for.
type ActionKind string

// Action kinds.
const (
	// Announce sends the release to Device.
	Announce ActionKind = "announce"
	// Cancel withdraws the announcement sent to Device, which has not
	// started (the rollout was aborted).
	Cancel ActionKind = "cancel"
	// Record notes Change, with Detail, in the audit stream.
	Record ActionKind = "record"
)

// Action is something the rollout asks its runner to do.
type Action struct {
	Kind   ActionKind
	Device string
	Change string
	Detail map[string]any
}

// Changes recorded by Record actions.
const (
	ChangeCreated       = "rollout.created"
	ChangeWaveStarted   = "rollout.wave_started"
	ChangeWaveFinished  = "rollout.wave_finished"
	ChangeDeviceTimeout = "rollout.device_timed_out"
	ChangeHalted        = "rollout.halted"
	ChangePaused        = "rollout.paused"
	ChangeResumed       = "rollout.resumed"
	ChangeAborted       = "rollout.aborted"
	ChangeSucceeded     = "rollout.succeeded"
)

// NewRollout starts a rollout of spec over devices (the target resolved
// to device ids) at now, and returns it with its first actions: the
// announcements of its first wave. Devices are put in an order fixed by
// the rollout id, so that waves take the same devices however the list
// came.
func NewRollout(id string, spec Spec, devices []string, now time.Time) (*Rollout, []Action, error) {
	if err := spec.Check(); err != nil {
		return nil, nil, err
	}
	if !validName(id) {
		return nil, nil, fmt.Errorf("%w: id %q", ErrInvalidSpec, id)
	}
	ids := slices.Clone(devices)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	if len(ids) == 0 {
		return nil, nil, fmt.Errorf("%w: target %s has no devices", ErrInvalidSpec, spec.Target)
	}
	if len(ids) > MaxRolloutDevices {
		return nil, nil, fmt.Errorf("%w: target %s has %d devices, more than %d", ErrInvalidSpec, spec.Target, len(ids), MaxRolloutDevices)
	}
	type keyed struct {
		key [32]byte
		id  string
	}
	ks := make([]keyed, len(ids))
	for i, d := range ids {
		ks[i] = keyed{sha256.Sum256([]byte(id + "\x00" + d)), d}
	}
	slices.SortFunc(ks, func(a, b keyed) int { return slices.Compare(a.key[:], b.key[:]) })
	r := &Rollout{ID: id, Spec: spec, State: Running, Created: now, Updated: now, Devices: make(Devices, len(ks))}
	for i, k := range ks {
		r.Devices[i] = Device{ID: k.id, State: Queued}
	}
	for _, p := range spec.Waves {
		end := (p*len(ks) + 99) / 100 // ceil: a wave above 0% takes at least one device
		r.Waves = append(r.Waves, Wave{Percent: p, End: end, State: WavePending})
	}
	acts := []Action{r.record(ChangeCreated, map[string]any{"release": spec.Release, "target": spec.Target, "devices": len(ks), "waves": spec.Waves})}
	acts = r.startWave(0, now, acts)
	return r, r.settle(now, acts), nil
}

// Load prepares a rollout read from storage for use.
func (r *Rollout) Load() error {
	if err := r.Spec.Check(); err != nil {
		return err
	}
	if len(r.Waves) != len(r.Spec.Waves) || len(r.Waves) == 0 || r.Waves[len(r.Waves)-1].End != len(r.Devices) {
		return fmt.Errorf("%w: rollout %s: waves do not cover its devices", ErrInvalidSpec, r.ID)
	}
	r.index = nil
	return nil
}

func (r *Rollout) indexOf(id string) (int, bool) {
	if r.index == nil {
		r.index = make(map[string]int, len(r.Devices))
		for i := range r.Devices {
			r.index[r.Devices[i].ID] = i
		}
	}
	i, ok := r.index[id]
	return i, ok
}

// Finished reports whether the rollout can change no more: succeeded, or
// aborted with no device still in progress.
func (r *Rollout) Finished() bool {
	if r.State == Done {
		return true
	}
	if r.State != Aborted {
		return false
	}
	for i := range r.Devices {
		if d := &r.Devices[i]; !d.State.Final() && !d.Sent.IsZero() {
			return false
		}
	}
	return true
}

// Status applies a device's report of state at now. Reports of devices
// outside the rollout or not yet sent the release, and reports that do not
// move a device forward (a repeat, downloading after installing), change
// nothing. A final report after a timeout or a cancel replaces it: the
// device did finish.
func (r *Rollout) Status(now time.Time, device string, state DeviceState) []Action {
	i, ok := r.indexOf(device)
	if !ok || state.rank() < 1 || state == TimedOut || state == Canceled {
		return nil
	}
	d := &r.Devices[i]
	late := (d.State == TimedOut || d.State == Canceled) && state.Final()
	if d.Sent.IsZero() || (state.rank() <= d.State.rank() && !late) {
		return nil
	}
	d.State, d.Changed = state, now
	r.touch(now)
	return r.settle(now, nil)
}

// Tick advances the rollout to now: devices past their timeout count as
// timed out, a soaked wave lets the next start.
func (r *Rollout) Tick(now time.Time) []Action {
	var acts []Action
	timeout := time.Duration(r.Spec.DeviceTimeout)
	for i := range r.Devices {
		d := &r.Devices[i]
		if d.Sent.IsZero() || d.State.Final() || now.Sub(d.Sent) < timeout {
			continue
		}
		d.State, d.Changed = TimedOut, now
		r.touch(now)
		acts = append(acts, r.record(ChangeDeviceTimeout, map[string]any{"device": d.ID, "sent": d.Sent, "timeout": r.Spec.DeviceTimeout}))
	}
	return r.settle(now, acts)
}

// Pause stops the rollout from starting waves or sending announcements
// until Resume. Devices already sent the release go on.
func (r *Rollout) Pause(now time.Time) ([]Action, error) {
	if r.State != Running {
		return nil, fmt.Errorf("%w: pause a rollout that is %s", ErrRolloutState, r.State)
	}
	r.State = Paused
	r.touch(now)
	return []Action{r.record(ChangePaused, nil)}, nil
}

// Resume continues a paused or halted rollout. After a halt, the failure
// threshold applies to the devices that finish from now on (with
// MinExecuted of them), not again to those that made it halt.
func (r *Rollout) Resume(now time.Time) ([]Action, error) {
	if r.State != Paused && r.State != Halted {
		return nil, fmt.Errorf("%w: resume a rollout that is %s", ErrRolloutState, r.State)
	}
	detail := map[string]any{"from": r.State}
	if r.State == Halted {
		c := r.Counts()
		r.Forgiven.Failures, r.Forgiven.Executed = c.Failures(), c.Executed()
		detail["halt_reason"] = r.HaltReason
	}
	r.State, r.HaltReason = Running, ""
	r.touch(now)
	return r.settle(now, []Action{r.record(ChangeResumed, detail)}), nil
}

// Abort ends the rollout: waves not started are canceled, devices not
// started are canceled (those sent the release get a Cancel), devices
// downloading or installing finish and are still counted.
func (r *Rollout) Abort(now time.Time) ([]Action, error) {
	if r.State == Done || r.State == Aborted {
		return nil, fmt.Errorf("%w: abort a rollout that is %s", ErrRolloutState, r.State)
	}
	r.State = Aborted
	r.touch(now)
	var acts []Action
	canceled := 0
	for i := range r.Devices {
		d := &r.Devices[i]
		if d.State != Queued {
			continue
		}
		if !d.Sent.IsZero() {
			acts = append(acts, Action{Kind: Cancel, Device: d.ID})
		}
		d.State, d.Changed = Canceled, now
		canceled++
	}
	for i := range r.Waves {
		if w := &r.Waves[i]; w.State == WavePending || w.State == WaveRunning {
			w.State = WaveCanceled
		}
	}
	return append([]Action{r.record(ChangeAborted, map[string]any{"canceled": canceled})}, acts...), nil
}

// Counts are the rollout's devices by state.
func (r *Rollout) Counts() Counts { return countOf(r.Devices) }

func countOf(ds []Device) Counts {
	var c Counts
	for i := range ds {
		c.add(ds[i].State)
	}
	return c
}

// waveDevices are the devices that wave i adds.
func (r *Rollout) waveDevices(i int) []Device {
	start := 0
	if i > 0 {
		start = r.Waves[i-1].End
	}
	return r.Devices[start:r.Waves[i].End]
}

// current is the index of the last wave started, -1 if none.
func (r *Rollout) current() int {
	for i := len(r.Waves) - 1; i >= 0; i-- {
		if r.Waves[i].State != WavePending && r.Waves[i].State != WaveCanceled {
			return i
		}
	}
	return -1
}

// NextDeadline is the earliest time at which a Tick would change the
// rollout (a device timeout, the end of a soak); false if none is due.
func (r *Rollout) NextDeadline() (time.Time, bool) {
	var next time.Time
	earliest := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	for i := range r.Devices {
		if d := &r.Devices[i]; !d.Sent.IsZero() && !d.State.Final() {
			earliest(d.Sent.Add(time.Duration(r.Spec.DeviceTimeout)))
		}
	}
	if c := r.current(); r.State == Running && c >= 0 && r.Waves[c].State == WaveSoaking {
		earliest(r.Waves[c].Finished.Add(time.Duration(r.Spec.WaveSoak)))
	}
	return next, !next.IsZero()
}

// settle applies the rules after a change: the failure threshold, the end
// of the current wave, the start of the next.
func (r *Rollout) settle(now time.Time, acts []Action) []Action {
	if r.State == Running || r.State == Paused {
		c := r.Counts()
		failures, executed := c.Failures()-r.Forgiven.Failures, c.Executed()-r.Forgiven.Executed
		if executed > 0 && executed >= r.Spec.MinExecuted && float64(failures)*100 > r.Spec.FailureThreshold*float64(executed) {
			r.State = Halted
			r.touch(now)
			r.HaltReason = fmt.Sprintf("%d of %d executed devices failed, timed out or rejected the release (%.1f%%), above the %v%% threshold",
				failures, executed, float64(failures)*100/float64(executed), r.Spec.FailureThreshold)
			acts = append(acts, r.record(ChangeHalted, map[string]any{"reason": r.HaltReason, "counts": c}))
		}
	}
	for {
		i := r.current()
		if i < 0 || r.State == Aborted {
			return acts
		}
		w := &r.Waves[i]
		if w.State == WaveRunning && allFinal(r.waveDevices(i)) {
			w.State, w.Finished = WaveSoaking, now
			r.touch(now)
			acts = append(acts, r.record(ChangeWaveFinished, map[string]any{"wave": i + 1, "percent": w.Percent, "counts": countOf(r.waveDevices(i))}))
		}
		if w.State != WaveSoaking || r.State != Running || now.Before(w.Finished.Add(time.Duration(r.Spec.WaveSoak))) {
			return acts
		}
		w.State = WaveSucceeded
		r.touch(now)
		if i == len(r.Waves)-1 {
			r.State = Done
			return append(acts, r.record(ChangeSucceeded, map[string]any{"counts": r.Counts()}))
		}
		acts = r.startWave(i+1, now, acts)
	}
}

// startWave announces the release to wave i's devices.
func (r *Rollout) startWave(i int, now time.Time, acts []Action) []Action {
	w := &r.Waves[i]
	w.State = WaveRunning
	r.touch(now)
	ds := r.waveDevices(i)
	acts = append(acts, r.record(ChangeWaveStarted, map[string]any{"wave": i + 1, "percent": w.Percent, "devices": len(ds)}))
	for j := range ds {
		ds[j].Sent = now
		acts = append(acts, Action{Kind: Announce, Device: ds[j].ID})
	}
	return acts
}

// touch notes a change at now.
func (r *Rollout) touch(now time.Time) {
	r.Updated = now
	r.Seq++
}

func allFinal(ds []Device) bool {
	for i := range ds {
		if !ds[i].State.Final() {
			return false
		}
	}
	return true
}

func (r *Rollout) record(change string, detail map[string]any) Action {
	return Action{Kind: Record, Change: change, Detail: detail}
}

// Summary is a rollout as the API shows it: its waves and counts, not its
// devices one by one.
type Summary struct {
	ID               string        `json:"id"`
	Release          string        `json:"release"`
	Target           string        `json:"target"`
	State            State         `json:"state"`
	Waves            []WaveSummary `json:"waves"`
	Counts           Counts        `json:"counts"`
	HaltReason       string        `json:"halt_reason"`
	Devices          int           `json:"devices"`
	FailureThreshold float64       `json:"failure_threshold"`
	MinExecuted      int           `json:"min_executed"`
	DeviceTimeout    Duration      `json:"device_timeout"`
	WaveSoak         Duration      `json:"wave_soak"`
	Created          time.Time     `json:"created"`
	Updated          time.Time     `json:"updated"`
}

// WaveSummary is one wave of a Summary: Percent is cumulative, Devices
// are those the wave adds.
type WaveSummary struct {
	Percent int       `json:"percent"`
	Devices int       `json:"devices"`
	State   WaveState `json:"state"`
	Counts  Counts    `json:"counts"`
}

// Summary returns the rollout's summary.
func (r *Rollout) Summary() Summary {
	s := Summary{
		ID: r.ID, Release: r.Spec.Release, Target: r.Spec.Target, State: r.State, Counts: r.Counts(),
		HaltReason: r.HaltReason, Devices: len(r.Devices), FailureThreshold: r.Spec.FailureThreshold,
		MinExecuted: r.Spec.MinExecuted, DeviceTimeout: r.Spec.DeviceTimeout, WaveSoak: r.Spec.WaveSoak,
		Created: r.Created, Updated: r.Updated, Waves: make([]WaveSummary, len(r.Waves)),
	}
	for i, w := range r.Waves {
		ds := r.waveDevices(i)
		s.Waves[i] = WaveSummary{Percent: w.Percent, Devices: len(ds), State: w.State, Counts: countOf(ds)}
	}
	return s
}
