package models

import (
	"time"
)

// The decoy: an edge archives a sample of its devices' readings per class
// as InputRecords in its /uplink/events (header "type" RecordInput, key:
// the device), which is replicated to the core; training reads them
// beside the class's telemetry, so the next version sees what the edges
// saw even where raw telemetry stays at the edge.
const RecordInput = "model_input"

// Decoy defaults.
const (
	// DefaultDecoyEvery: one reading of a class in this many is archived
	// (the last of each run of that many). An archived reading is a record
	// of about 200 bytes: at 1 in 1,000 the decoy adds about 0.2 bytes per
	// reading to the uplink, which stays a small share of what the uplink
	// filter sends.
	DefaultDecoyEvery = 1000
	// DefaultDecoyPerMinute: at most this many readings of a class are
	// archived per minute of readings' time.
	DefaultDecoyPerMinute = 10
)

// InputRecord is a reading the decoy archived.
type InputRecord struct {
	Type   string             `json:"type"` // RecordInput
	Device string             `json:"device"`
	Class  string             `json:"class"`
	At     time.Time          `json:"at"`
	Values map[string]float64 `json:"values"`
}

// Decoy decides which readings are archived: every Every-th reading of a
// class, at most PerMinute a minute. It keeps no clock and is not safe for
// concurrent use. The zero value uses the defaults.
type Decoy struct {
	// Every: one reading of a class in Every is archived. Default
	// DefaultDecoyEvery; 1 archives every reading (within PerMinute).
	Every int
	// PerMinute bounds what one class archives per minute. Default
	// DefaultDecoyPerMinute; negative: the decoy is off.
	PerMinute int

	classes map[string]*decoyClass
}

type decoyClass struct {
	seen   int64
	minute time.Time
	taken  int
}

// maxDecoyClasses bounds the classes a Decoy follows: past it, the
// state starts anew.
const maxDecoyClasses = 10_000

// Sample reports whether the reading of class at is archived.
func (d *Decoy) Sample(class string, at time.Time) bool {
	if d.PerMinute < 0 {
		return false
	}
	every, per := d.Every, d.PerMinute
	if every <= 0 {
		every = DefaultDecoyEvery
	}
	if per == 0 {
		per = DefaultDecoyPerMinute
	}
	if d.classes == nil || len(d.classes) >= maxDecoyClasses {
		d.classes = map[string]*decoyClass{}
	}
	c := d.classes[class]
	if c == nil {
		c = &decoyClass{}
		d.classes[class] = c
	}
	c.seen++
	if c.seen%int64(every) != 0 {
		return false
	}
	if m := at.Truncate(time.Minute); !m.Equal(c.minute) {
		c.minute, c.taken = m, 0
	}
	if c.taken >= per {
		return false
	}
	c.taken++
	return true
}
