package models

import (
	"cmp"
	"crypto/sha256"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/weft-io/weft/anomaly"
	sig "github.com/weft-io/weft/internal/signed"
)

// Artifact is one version as an edge finds it in its mirror of /models.
type Artifact struct {
	Name    string
	Version uint64
	// Stage is the version's stage in the name's stages file.
	Stage string
	// Manifest and Params are the files as stored (nil when missing).
	Manifest, Params []byte
	// Exec is a KindExternal version's executable as unpacked (nil when
	// missing).
	Exec *Exec
}

// Limits of a Runner.
const (
	// MaxRunDevices bounds the devices one running version keeps a scorer
	// for; readings of more devices are not scored by it.
	MaxRunDevices = 1000
	// driftWindow is how many recent readings per channel drift is
	// measured on.
	driftWindow = 512
)

// Runner is what an edge does with models, as a pure type: it verifies
// the artifacts it is given (Sync), scores readings with every running
// version of the reading's class beside the built-in defaults (Observe),
// and says how each version does (Status). It keeps no clock and does no
// I/O. It is not safe for concurrent use.
type Runner struct {
	// Keys are the pinned model keys.
	Keys []sig.Key
	// Clock times each version's answer (its latency) and its isolation.
	// Nil: latencies are not measured and isolation runs on the readings'
	// times.
	Clock func() time.Time
	// Deadline is how long a live version has to answer. Default
	// DefaultDeadline.
	Deadline time.Duration
	// Isolation is how long a faulty version is not asked. Default
	// DefaultIsolation.
	Isolation time.Duration
	// Schedules are the class schedules set at the core (SchedulesFile),
	// read at the next Sync. A class without one orders its live
	// versions by name, each with Deadline.
	Schedules map[string]ClassSchedule
	// Launch makes the process of a KindExternal version. Nil: external
	// versions are refused as unsupported.
	Launch Launch

	// newScorer makes a device's scorer of a version (NewScorer; tests
	// replace it).
	newScorer func(Manifest, ParamsFile) (scorer, error)
	results   []Result
	schedules map[string]Schedule

	// accepted remembers, per name, the parameters' digest of every
	// version verified once: such a version may run again (a rollback)
	// even when a newer one was accepted since; any other version below
	// the newest accepted is refused as not newer.
	accepted map[string]map[uint64][32]byte
	newest   map[string]uint64
	versions map[Ref]*running
	// byClass lists the running versions of each class.
	byClass map[string][]*running
	// saved are the counters of a State restored, until their version is
	// verified again.
	saved map[Ref]VersionState
}

// running is one version the runner knows of.
type running struct {
	// content is the SHA-256 of the manifest and parameters it was made
	// from: other bytes are verified anew.
	content [32]byte
	m       Manifest
	params  ParamsFile
	state   EdgeState
	stage   string
	// deadline is how long the version has to answer: its entry's in its
	// class's schedule (live), the class's (candidate).
	deadline time.Duration
	// proc is a KindExternal version's program while it runs; sent says
	// it was sent the reading being observed, when, and how it went.
	proc      Process
	sent      bool
	sentAt    time.Time
	sendOK    bool
	sendFault string
	// per device: the model's scorer and the defaults' (the canary).
	devices map[string]*[2]scorer
	agree   int64
	recent  map[string]*ring
	scores  *ring // the version's recent scores, for drift

	// The rendezvous: answers used, agreement with the answer used
	// (candidates), detections, latency, faults and isolation.
	used, compared, agreeUsed int64
	detections                int64
	first, last               time.Time
	latency                   time.Duration
	faults                    map[string]int64
	isolated                  time.Time
}

// scorer is what a version scores one device's readings with.
type scorer interface {
	Observe(t time.Time, values map[string]float64) (anomaly.Result, bool)
}

type ring struct {
	v [driftWindow]float64
	n int
}

func (r *ring) add(v float64) {
	r.v[r.n%driftWindow] = v
	r.n++
}

func (r *ring) values() []float64 { return r.v[:min(r.n, driftWindow)] }

// Sync takes the artifacts of the mirror and the classes of the edge's
// devices: every candidate or live version of one of those classes is
// verified and runs if it holds; the others stop. A running version is
// verified again only when its files' bytes change; a refused one at
// every Sync (the pinned keys may have changed).
func (r *Runner) Sync(arts []Artifact, classes map[string]bool) {
	if r.accepted == nil {
		r.accepted, r.newest, r.versions = map[string]map[uint64][32]byte{}, map[string]uint64{}, map[Ref]*running{}
	}
	seen := map[Ref]bool{}
	slices.SortFunc(arts, func(a, b Artifact) int { return cmpUint(a.Version, b.Version) })
	for _, a := range arts {
		ref := Ref{a.Name, a.Version}
		seen[ref] = true
		v := r.versions[ref]
		if a.Stage != StageCandidate && a.Stage != StageLive {
			if v != nil {
				v.stage, v.state.State = a.Stage, StateStopped
				v.stop()
			}
			continue
		}
		content := contentOf(a)
		if v != nil && v.content == content && (v.state.State == StateRunning || v.state.State == StateStopped && !classes[v.m.Class]) {
			v.stage = a.Stage
			continue
		}
		out := r.verify(a, classes)
		if v != nil {
			v.stop()
		}
		if out == nil {
			delete(r.versions, ref) // not (or no longer) of the edge's classes
			continue
		}
		out.content = content
		r.versions[ref] = out
	}
	for ref, v := range r.versions {
		if !seen[ref] {
			v.stop()
			delete(r.versions, ref)
			continue
		}
		if v.state.State == StateRunning && !classes[v.m.Class] {
			v.state.State = StateStopped
			v.stop()
		}
	}
	r.byClass = map[string][]*running{}
	live := map[string][]Ref{}
	for _, v := range r.versions {
		if v.state.State == StateRunning {
			r.byClass[v.m.Class] = append(r.byClass[v.m.Class], v)
			if v.stage == StageLive {
				live[v.m.Class] = append(live[v.m.Class], Ref{v.m.Name, v.m.Version})
			}
		}
	}
	r.schedules = map[string]Schedule{}
	for c, refs := range live {
		r.schedules[c] = PlanOf(refs, r.Schedules[c], r.Deadline)
	}
	for c, vs := range r.byClass {
		for _, v := range vs {
			v.deadline = r.Schedules[c].Deadline(r.Deadline)
			for _, e := range r.schedules[c] {
				if e.Model == (Ref{v.m.Name, v.m.Version}) {
					v.deadline = e.Deadline
				}
			}
		}
	}
	for _, vs := range r.byClass {
		slices.SortFunc(vs, func(a, b *running) int {
			if a.m.Name != b.m.Name {
				if a.m.Name < b.m.Name {
					return -1
				}
				return 1
			}
			return cmpUint(a.m.Version, b.m.Version)
		})
	}
}

// Schedule returns the schedule of class: its live versions in the order
// they are asked.
func (r *Runner) Schedule(class string) Schedule { return r.schedules[class] }

// stop ends what a version runs: its devices' state and its program.
func (v *running) stop() {
	v.devices = nil
	if v.proc != nil {
		v.proc.Close()
		v.proc = nil
	}
}

// Close stops every program the runner started (external models). The
// runner may be used again: a later Sync starts them anew.
func (r *Runner) Close() {
	for _, v := range r.versions {
		if v.proc != nil {
			v.proc.Close()
			v.proc = nil
		}
	}
	r.versions = nil
	r.accepted, r.newest = nil, nil
	r.byClass, r.schedules = nil, nil
}

func contentOf(a Artifact) [32]byte {
	h := sha256.New()
	h.Write(a.Manifest)
	h.Write([]byte{0})
	h.Write(a.Params)
	if a.Exec != nil {
		h.Write([]byte{0})
		h.Write(a.Exec.SHA256[:])
		h.Write([]byte(a.Exec.Path))
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// verify checks one artifact; nil when it is for no class of the edge.
func (r *Runner) verify(a Artifact, classes map[string]bool) *running {
	refused := func(v Verdict) *running {
		return &running{m: v.Manifest, stage: a.Stage, state: EdgeState{State: StateRefused, Reason: string(v.Reason), Detail: v.Detail}}
	}
	if a.Manifest == nil || a.Params == nil {
		return nil // not mirrored whole yet
	}
	m, err := Parse(a.Manifest)
	if err != nil {
		return refused(Verify(Input{Manifest: a.Manifest, Keys: r.Keys}))
	}
	if !classes[m.Class] {
		return nil
	}
	if m.Kind == KindExternal && a.Exec == nil {
		return nil // not mirrored whole yet
	}
	sum := sha256.Sum256(a.Params)
	in := Input{Manifest: a.Manifest, Keys: r.Keys, Class: m.Class, Params: &Params{SHA256: sum, Size: int64(len(a.Params))}, Exec: &Params{}}
	if a.Exec != nil {
		in.Exec = &Params{SHA256: a.Exec.SHA256, Size: a.Exec.Size}
	}
	before, seen := r.accepted[m.Name][m.Version]
	if seen {
		in.Newest, in.AllowSame = m.Version, true
	} else {
		in.Newest = r.newest[m.Name]
	}
	v := Verify(in)
	if !v.OK() {
		return refused(v)
	}
	if seen && before != sum {
		return refused(Verdict{Reason: ReasonNotNewer, Manifest: v.Manifest,
			Detail: fmt.Sprintf("version %d was accepted before with other parameters", m.Version)})
	}
	if v.Manifest.Name != a.Name || v.Manifest.Version != a.Version {
		return refused(Verdict{Reason: ReasonMalformed, Manifest: v.Manifest, Detail: "stored as " + Ref{a.Name, a.Version}.String()})
	}
	p, err := DecodeParams(a.Params, v.Manifest)
	if err != nil {
		return refused(Verdict{Reason: ReasonMalformed, Manifest: v.Manifest, Detail: err.Error()})
	}
	if m.Kind == KindExternal && r.Launch == nil {
		return refused(Verdict{Reason: ReasonUnsupported, Manifest: v.Manifest, Detail: "this node runs no external models"})
	}
	if r.accepted[m.Name] == nil {
		r.accepted[m.Name] = map[uint64][32]byte{}
	}
	r.accepted[m.Name][m.Version] = sum
	r.newest[m.Name] = max(r.newest[m.Name], m.Version)
	out := &running{m: v.Manifest, params: p, stage: a.Stage, state: EdgeState{State: StateRunning},
		devices: map[string]*[2]scorer{}, recent: map[string]*ring{}, scores: &ring{}, faults: map[string]int64{}}
	if m.Kind == KindExternal {
		out.proc = r.Launch(v.Manifest, *p.External, *a.Exec)
	}
	r.resume(out, sum)
	return out
}

// Answer is what the running versions of a class made of one reading.
type Answer struct {
	// Used is the answer of the schedule (Schedule.Pick); OK is false when
	// no live version answered in time and the canary answers.
	Used Result
	OK   bool
	// Results has one entry per version asked, valid until the next
	// Observe.
	Results []Result
}

// Observe scores a reading of a device of class with every running
// version of that class (the canary, the defaults, beside each) and picks
// the answer used with the class's schedule. A version that faults is
// counted and isolated; the others go on.
func (r *Runner) Observe(device, class string, at time.Time, values map[string]float64) Answer {
	r.results = r.results[:0]
	vs := r.byClass[class]
	if len(vs) == 0 {
		return Answer{}
	}
	now := at
	if r.Clock != nil {
		now = r.Clock()
	}
	// Every external version is sent the reading first, so that their
	// programs work on it together; each is awaited in its turn below.
	for _, v := range vs {
		v.sent = false
		if v.proc == nil || now.Before(v.isolated) || v.devices[device] == nil && len(v.devices) >= MaxRunDevices {
			continue
		}
		v.sentAt = now
		if r.Clock != nil {
			v.sentAt = r.Clock()
		}
		v.sent = true
		v.sendOK, v.sendFault = v.proc.Send(device, at, values, cmp.Or(v.deadline, DefaultDeadline))
	}
	for _, v := range vs {
		deadline := v.deadline
		if deadline <= 0 {
			deadline = DefaultDeadline
		}
		if now.Before(v.isolated) || v.proc != nil && !v.sent {
			continue
		}
		pair := v.devices[device]
		if pair == nil {
			if len(v.devices) >= MaxRunDevices {
				continue
			}
			pair = r.pair(v)
			if pair == nil {
				continue
			}
			v.devices[device] = pair
		}
		start := now
		if r.Clock != nil {
			start = r.Clock()
		}
		var got anomaly.Result
		var ok, panicked bool
		var fault string
		if v.proc != nil {
			start, ok, fault = v.sentAt, v.sendOK, v.sendFault
			if ok && fault == "" {
				got, fault = v.proc.Await()
			}
		} else {
			got, ok, panicked = observe(pair[0], at, values)
		}
		res := Result{Model: Ref{v.m.Name, v.m.Version}, Stage: v.stage, Score: got.Score, Detected: got.Detected, Detector: got.Detector}
		if r.Clock != nil {
			res.Latency = r.Clock().Sub(start)
		}
		switch {
		case fault != "":
			res.Fault = fault
		case panicked:
			res.Fault = FaultPanic
			delete(v.devices, device) // its state may be half written
		case !ok:
			continue
		case garbage(got.Score):
			res.Fault = FaultGarbage
		case v.proc == nil && res.Latency > deadline: // a program keeps its own deadline
			res.Fault = FaultSlow
		}
		if res.Fault != "" {
			v.faults[res.Fault]++
			v.isolated = now.Add(cmp.Or(r.Isolation, DefaultIsolation))
			r.results = append(r.results, res)
			continue
		}
		base, _ := pair[1].Observe(at, values)
		v.state.Scored++
		if got.Detected == base.Detected {
			v.agree++
		}
		if got.Detected {
			v.detections++
		}
		if v.first.IsZero() || at.Before(v.first) {
			v.first = at
		}
		if at.After(v.last) {
			v.last = at
		}
		v.latency += res.Latency
		v.scores.add(got.Score)
		for _, c := range v.m.Channels {
			if x, ok := values[c]; ok {
				rg := v.recent[c]
				if rg == nil {
					rg = &ring{}
					v.recent[c] = rg
				}
				rg.add(x)
			}
		}
		r.results = append(r.results, res)
	}
	used, ok := r.schedules[class].Pick(r.results)
	if ok {
		for _, v := range vs {
			ref := Ref{v.m.Name, v.m.Version}
			for _, res := range r.results {
				if res.Model != ref || res.Fault != "" {
					continue
				}
				if ref == used.Model {
					v.used++
				} else {
					v.compared++
					if res.Detected == used.Detected {
						v.agreeUsed++
					}
				}
			}
		}
	}
	return Answer{Used: used, OK: ok, Results: r.results}
}

// Learn feeds a past reading of a device of class to every running
// built-in version of the class and its canary, without counting or
// recording anything: how an edge warms its models up again after a
// restart from the readings it still holds. External versions are not
// asked (their programs start afresh).
func (r *Runner) Learn(device, class string, at time.Time, values map[string]float64) {
	for _, v := range r.byClass[class] {
		if v.m.Kind == KindExternal || v.state.State != StateRunning {
			continue
		}
		pair := v.devices[device]
		if pair == nil {
			if len(v.devices) >= MaxRunDevices {
				continue
			}
			if pair = r.pair(v); pair == nil {
				continue
			}
			v.devices[device] = pair
		}
		if _, _, panicked := observe(pair[0], at, values); panicked {
			delete(v.devices, device)
			continue
		}
		pair[1].Observe(at, values)
	}
}

// pair makes a device's scorers of v: the model's and the canary's.
func (r *Runner) pair(v *running) *[2]scorer {
	mk := r.newScorer
	if mk == nil {
		mk = func(m Manifest, p ParamsFile) (scorer, error) { return NewScorer(m, p) }
	}
	var model scorer
	if v.m.Kind != KindExternal { // an external model's state is its program's
		var err error
		if model, err = mk(v.m, v.params); err != nil {
			return nil
		}
	}
	cm := v.m
	if cm.Kind == KindExternal {
		cm.Kind = KindChannel // the defaults over its channels
	}
	canary, err := NewScorer(cm, defaultsOf(v.m, v.params))
	if err != nil {
		return nil
	}
	return &[2]scorer{model, canary}
}

// observe runs a scorer, recovering a panic.
func observe(s scorer, at time.Time, values map[string]float64) (res anomaly.Result, ok, panicked bool) {
	defer func() {
		if recover() != nil {
			res, ok, panicked = anomaly.Result{}, false, true
		}
	}()
	res, ok = s.Observe(at, values)
	return res, ok, false
}

// defaultsOf is the parameters of the built-in defaults for m's kind and
// channels: the canary a version is compared with.
func defaultsOf(m Manifest, p ParamsFile) ParamsFile {
	if m.Kind == KindVector {
		n := len(m.Channels)
		vp := VectorParams{Params: anomaly.VectorParams{Mean: make([]float64, n), Var: make([]float64, n)}}
		return ParamsFile{Kind: KindVector, Vector: &vp}
	}
	out := ParamsFile{Kind: KindChannel, Channels: map[string]anomaly.Config{}}
	for _, c := range m.Channels {
		out.Channels[c] = anomaly.Config{}
	}
	return out
}

// Status returns one record per model name the runner knows a version of,
// by name, stamped at.
func (r *Runner) Status(edge string, at time.Time) []StatusRecord {
	recs := map[string]*StatusRecord{}
	for ref, v := range r.versions {
		rec := recs[ref.Name]
		if rec == nil {
			rec = &StatusRecord{Type: RecordStatus, Edge: edge, Model: ref.Name, Class: v.m.Class, At: at, Versions: map[string]EdgeState{}}
			recs[ref.Name] = rec
		}
		st := v.state
		if st.Scored > 0 {
			st.Agreement = float64(v.agree) / float64(st.Scored)
		}
		st.Drift = v.drift()
		if v.compared > 0 {
			st.AgreementLive = round3(float64(v.agreeUsed) / float64(v.compared))
		}
		st.Used = v.used
		if h := v.last.Sub(v.first).Hours(); h > 0 {
			st.DetectionsPerHour = round3(float64(v.detections) / h)
		}
		if st.Scored > 0 {
			st.LatencyMicros = round3(float64(v.latency.Nanoseconds()) / float64(st.Scored) / 1e3)
		}
		for _, n := range v.faults {
			st.Faults += n
		}
		st.Isolated = at.Before(v.isolated)
		rec.Versions[strconv.FormatUint(ref.Version, 10)] = st
	}
	out := make([]StatusRecord, 0, len(recs))
	for _, rec := range recs {
		out = append(out, *rec)
	}
	slices.SortFunc(out, func(a, b StatusRecord) int {
		switch {
		case a.Model < b.Model:
			return -1
		case a.Model > b.Model:
			return 1
		}
		return 0
	})
	return out
}

// drift is the largest Kolmogorov–Smirnov statistic between the
// version's recent scores and its training scores (Training.Scores), and
// between each channel's recent readings and its training summary; 0
// until minDriftSample of them.
func (v *running) drift() float64 {
	out := 0.0
	if len(v.m.Training.Scores) == ScoreQuantiles && v.scores != nil && v.scores.n >= minDriftSample {
		out = ks(v.scores.values(), scoreRef(v.m.Training.Scores))
	}
	for _, s := range v.m.Training.Summary {
		rg := v.recent[s.Channel]
		if rg == nil || rg.n < minDriftSample {
			continue
		}
		out = max(out, ks(rg.values(), inputRef(s)))
	}
	return round3(out)
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

func round3(x float64) float64 { return float64(int64(x*1000+0.5)) / 1000 }

// Faults returns, per running version, its faults by kind (FaultSlow,
// FaultPanic, FaultGarbage).
func (r *Runner) Faults() map[Ref]map[string]int64 {
	out := map[Ref]map[string]int64{}
	for ref, v := range r.versions {
		if len(v.faults) > 0 {
			out[ref] = maps.Clone(v.faults)
		}
	}
	return out
}
