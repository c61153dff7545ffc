package models

import (
	"math"
	"slices"
	"time"
)

// Rendezvous defaults.
const (
	// DefaultDeadline is how long a live version has to answer a reading
	// before the next in its class's schedule (or the canary) is used.
	DefaultDeadline = 10 * time.Millisecond
	// DefaultIsolation is how long a version that was slow, panicked or
	// returned garbage is not asked.
	DefaultIsolation = 5 * time.Minute
)

// Faults of a Result: why a version's answer was not usable. Each one
// isolates the version for the runner's Isolation.
const (
	FaultSlow    = "slow"    // answered after its deadline
	FaultPanic   = "panic"   // its scorer panicked
	FaultGarbage = "garbage" // a score that is NaN, infinite or outside [0, 1]
)

// Result is what one version made of one reading.
type Result struct {
	Model    Ref
	Stage    string // StageLive or StageCandidate
	Score    float64
	Detected bool
	Detector string
	Latency  time.Duration
	// Fault is why the answer is not usable ("" when it is).
	Fault string
}

// Entry is one step of a Schedule: a live version and how long it has to
// answer.
type Entry struct {
	Model    Ref
	Deadline time.Duration
}

// Schedule is the ordered list of a class's live versions that may
// answer a reading; the canary (the edge's built-in defaults) answers
// when none does.
type Schedule []Entry

// ScheduleOf is the schedule of a class's live versions: by name, each
// with deadline (DefaultDeadline when not positive).
func ScheduleOf(live []Ref, deadline time.Duration) Schedule {
	if deadline <= 0 {
		deadline = DefaultDeadline
	}
	refs := slices.Clone(live)
	slices.SortFunc(refs, func(a, b Ref) int {
		if a.Name != b.Name {
			if a.Name < b.Name {
				return -1
			}
			return 1
		}
		return cmpUint(a.Version, b.Version)
	})
	out := make(Schedule, len(refs))
	for i, r := range refs {
		out[i] = Entry{Model: r, Deadline: deadline}
	}
	return out
}

// Pick returns the answer used for a reading: the result of the first
// entry whose version answered within its deadline without a fault. ok is
// false when none did (the canary answers).
func (s Schedule) Pick(results []Result) (used Result, ok bool) {
	for _, e := range s {
		for _, r := range results {
			if r.Model == e.Model && r.Fault == "" && r.Latency <= e.Deadline {
				return r, true
			}
		}
	}
	return Result{}, false
}

// garbage reports a score no detector may return.
func garbage(score float64) bool {
	return math.IsNaN(score) || score < 0 || score > 1
}
