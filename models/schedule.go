package models

import (
	"fmt"
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

// SchedulesFile is the file of the class schedules,
// /models/schedules.json (Schedules): written at the core, mirrored to
// every edge. No model may be named so.
const SchedulesFile = "schedules.json"

// Schedules is the core's schedules file: per class, the order of its
// live models and each one's deadline. A class without an entry orders
// its live models by name, each with the edge's deadline.
type Schedules struct {
	// Classes maps a class to its schedule.
	Classes map[string]ClassSchedule `json:"classes"`
	// Updated is when the file was last written.
	Updated time.Time `json:"updated,omitzero"`
}

// ClassSchedule is one class's schedule as set at the core.
type ClassSchedule struct {
	// DeadlineMs is how long, in milliseconds, each of the class's models
	// has to answer when its entry gives no deadline (and its candidates
	// always). 0: the edge's deadline.
	DeadlineMs float64 `json:"deadline_ms,omitempty"`
	// Models are asked in this order, before the class's live models not
	// listed (those by name). A name without a live version is skipped.
	Models []ScheduleEntry `json:"models,omitempty"`
}

// ScheduleEntry is one model of a ClassSchedule.
type ScheduleEntry struct {
	Name string `json:"name"`
	// DeadlineMs is how long, in milliseconds, the model has to answer. 0:
	// the class's.
	DeadlineMs float64 `json:"deadline_ms,omitempty"`
}

// MaxDeadline bounds a deadline set in a schedule.
const MaxDeadline = 10 * time.Second

// Check validates a class schedule.
func (c ClassSchedule) Check() error {
	if err := checkMs(c.DeadlineMs); err != nil {
		return err
	}
	if len(c.Models) > MaxChannels {
		return fmt.Errorf("%w: %d models in a schedule, at most %d", ErrMalformed, len(c.Models), MaxChannels)
	}
	seen := map[string]bool{}
	for _, e := range c.Models {
		if !ValidName(e.Name) || seen[e.Name] {
			return fmt.Errorf("%w: model %q in a schedule: invalid or listed twice", ErrMalformed, e.Name)
		}
		seen[e.Name] = true
		if err := checkMs(e.DeadlineMs); err != nil {
			return err
		}
	}
	return nil
}

func checkMs(ms float64) error {
	if math.IsNaN(ms) || ms < 0 || ms > float64(MaxDeadline/time.Millisecond) {
		return fmt.Errorf("%w: deadline of %v ms (0 to %d)", ErrMalformed, ms, MaxDeadline/time.Millisecond)
	}
	return nil
}

func ms(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }

// Deadline is the class's default deadline, else def, else
// DefaultDeadline.
func (c ClassSchedule) Deadline(def time.Duration) time.Duration {
	if d := ms(c.DeadlineMs); d > 0 {
		return d
	}
	if def > 0 {
		return def
	}
	return DefaultDeadline
}

// PlanOf is the schedule of a class's live versions under its class
// schedule: the names listed first, in their order, each with its entry's
// deadline (else the class's, else def, else DefaultDeadline); then the
// other live versions by name with the class's deadline.
func PlanOf(live []Ref, c ClassSchedule, def time.Duration) Schedule {
	rest := ScheduleOf(live, c.Deadline(def))
	var out Schedule
	for _, e := range c.Models {
		for i, en := range rest {
			if en.Model.Name != e.Name {
				continue
			}
			if d := ms(e.DeadlineMs); d > 0 {
				en.Deadline = d
			}
			out = append(out, en)
			rest = slices.Delete(rest, i, i+1)
			break
		}
	}
	return append(out, rest...)
}
