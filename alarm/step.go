package alarm

import (
	"encoding/json"
	"slices"
	"time"
)

// Condition is something that holds now and deserves an alarm: Key names
// it (one open alarm per key), the rest is what the alarm says.
type Condition struct {
	Key, Type, Severity string
	Device, Edge        string
	Details             json.RawMessage
}

// Step decides what changes, as a node sees it at now: open are the open
// alarms the node raised, checked the types whose conditions were all
// looked at, held those of them that hold. It returns the records to
// write: an alarm raised for each held condition without an open alarm, a
// severity change of an open one, and the alarms of checked types whose
// condition no longer holds, cleared. Alarms of types not checked are
// left as they are.
func Step(node string, open []Record, checked []string, held []Condition, now time.Time) []Record {
	now = now.UTC()
	byKey := make(map[string]*Record, len(open))
	for i := range open {
		if open[i].Open() {
			byKey[open[i].Key] = &open[i]
		}
	}
	var out []Record
	holds := make(map[string]bool, len(held))
	for _, c := range held {
		if holds[c.Key] {
			continue
		}
		holds[c.Key] = true
		if r, ok := byKey[c.Key]; ok {
			if r.Severity != c.Severity {
				u := *r
				u.Severity, u.Details, u.Event, u.By, u.At = c.Severity, details(c.Details), EventUpdated, "", now
				out = append(out, u)
			}
			continue
		}
		out = append(out, Record{
			Alarm: Alarm{ID: NewID(node, c.Key, now), Type: c.Type, Severity: c.Severity, State: Active,
				Device: c.Device, Edge: c.Edge, Raised: now, Details: details(c.Details)},
			Key: c.Key, Node: node, Event: EventRaised, At: now,
		})
	}
	for _, r := range open {
		if r.Open() && !holds[r.Key] && slices.Contains(checked, r.Type) {
			out = append(out, Clear(r, "", now))
		}
	}
	return out
}

// Clear returns r cleared at now by by (empty: by itself).
func Clear(r Record, by string, now time.Time) Record {
	now = now.UTC()
	r.State, r.Cleared, r.Event, r.By, r.At = Cleared, &now, EventCleared, by, now
	return r
}

// Acknowledge returns r acknowledged at now by by. A cleared alarm stays
// cleared and gains the time; an alarm acknowledged already is returned
// as it is, with changed false.
func Acknowledge(r Record, by string, now time.Time) (out Record, changed bool) {
	if r.Acknowledged != nil {
		return r, false
	}
	now = now.UTC()
	r.Acknowledged, r.Event, r.By, r.At = &now, EventAcknowledged, by, now
	if r.State == Active {
		r.State = Acknowledged
	}
	return r, true
}

// Merge returns the record to keep when in, an alarm as its node sent it,
// arrives where cur is held (exists false: nothing is). What the raising
// node says of the condition wins (severity, details, cleared); an
// acknowledgement made at either end is kept.
func Merge(cur Record, exists bool, in Record) Record {
	if !exists {
		return in
	}
	out := in
	if out.Acknowledged == nil && cur.Acknowledged != nil {
		out.Acknowledged = cur.Acknowledged
		if out.State == Active {
			out.State = Acknowledged
		}
	}
	if cur.State == Cleared && out.State != Cleared {
		// Cleared here already: an older update must not reopen it.
		out.State, out.Cleared = Cleared, cur.Cleared
	}
	return out
}

func details(d json.RawMessage) json.RawMessage {
	if len(d) == 0 {
		return json.RawMessage("{}")
	}
	return d
}

// AnomalySeverity is the severity of an anomaly alarm for a detection's
// score (0 to 1).
func AnomalySeverity(score float64) string {
	switch {
	case score >= 0.95:
		return Critical
	case score >= 0.9:
		return Major
	}
	return Minor
}
