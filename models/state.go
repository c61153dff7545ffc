package models

import (
	"encoding/hex"
	"maps"
	"strconv"
	"time"
)

// State is what a Runner carries across a restart of its edge: the
// versions it accepted (so that not_newer holds, and a rollback to one of
// them runs) and each version's counters (so that its status carries on).
// The devices' detector state is not in it: it is learnt again.
type State struct {
	// Accepted maps a name to the versions accepted, each with its
	// parameters' SHA-256 (hex).
	Accepted map[string]map[string]string `json:"accepted"`
	// Versions maps NAME@VERSION to its counters.
	Versions map[string]VersionState `json:"versions"`
	// Saved is when the state was taken.
	Saved time.Time `json:"saved"`
}

// VersionState is one version's counters in a State.
type VersionState struct {
	// Params is the parameters' SHA-256 (hex): the counters carry on only
	// for the same parameters.
	Params     string           `json:"params"`
	Scored     int64            `json:"scored"`
	Agree      int64            `json:"agree"`
	Used       int64            `json:"used"`
	Compared   int64            `json:"compared"`
	AgreeUsed  int64            `json:"agree_used"`
	Detections int64            `json:"detections"`
	First      time.Time        `json:"first,omitzero"`
	Last       time.Time        `json:"last,omitzero"`
	LatencyNs  int64            `json:"latency_ns"`
	Faults     map[string]int64 `json:"faults,omitempty"`
	Isolated   time.Time        `json:"isolated,omitzero"`
}

// State returns what the runner would carry across a restart, stamped at.
func (r *Runner) State(at time.Time) State {
	out := State{Accepted: map[string]map[string]string{}, Versions: map[string]VersionState{}, Saved: at}
	for name, vs := range r.accepted {
		m := map[string]string{}
		for v, sum := range vs {
			m[strconv.FormatUint(v, 10)] = hex.EncodeToString(sum[:])
		}
		out.Accepted[name] = m
	}
	for ref, v := range r.versions {
		if v.state.State == StateRefused {
			continue
		}
		sum, ok := r.accepted[ref.Name][ref.Version]
		if !ok {
			continue
		}
		out.Versions[ref.String()] = VersionState{Params: hex.EncodeToString(sum[:]), Scored: v.state.Scored, Agree: v.agree,
			Used: v.used, Compared: v.compared, AgreeUsed: v.agreeUsed, Detections: v.detections, First: v.first, Last: v.last,
			LatencyNs: v.latency.Nanoseconds(), Faults: maps.Clone(v.faults), Isolated: v.isolated}
	}
	for ref, vs := range r.saved {
		if _, ok := out.Versions[ref.String()]; !ok {
			out.Versions[ref.String()] = vs // not seen since the restart: kept
		}
	}
	return out
}

// Restore takes a State saved before a restart. Call it before the first
// Sync: the versions accepted then are known as accepted, and a version
// verified again with the same parameters carries on with its counters.
func (r *Runner) Restore(s State) {
	if r.accepted == nil {
		r.accepted, r.newest, r.versions = map[string]map[uint64][32]byte{}, map[string]uint64{}, map[Ref]*running{}
	}
	for name, vs := range s.Accepted {
		if !ValidName(name) {
			continue
		}
		for k, h := range vs {
			v, err := ParseVersion(k)
			b, herr := hex.DecodeString(h)
			if err != nil || herr != nil || len(b) != 32 {
				continue
			}
			if r.accepted[name] == nil {
				r.accepted[name] = map[uint64][32]byte{}
			}
			r.accepted[name][v] = [32]byte(b)
			r.newest[name] = max(r.newest[name], v)
		}
	}
	r.saved = map[Ref]VersionState{}
	for k, vs := range s.Versions {
		if ref, err := ParseRef(k); err == nil {
			r.saved[ref] = vs
		}
	}
}

// resume gives a version just verified the counters saved for it.
func (r *Runner) resume(v *running, sum [32]byte) {
	ref := Ref{v.m.Name, v.m.Version}
	s, ok := r.saved[ref]
	if !ok {
		return
	}
	delete(r.saved, ref)
	if s.Params != hex.EncodeToString(sum[:]) {
		return
	}
	v.state.Scored, v.agree, v.used, v.compared, v.agreeUsed, v.detections = s.Scored, s.Agree, s.Used, s.Compared, s.AgreeUsed, s.Detections
	v.first, v.last, v.latency, v.isolated = s.First, s.Last, time.Duration(s.LatencyNs), s.Isolated
	for k, n := range s.Faults {
		v.faults[k] = n
	}
}
