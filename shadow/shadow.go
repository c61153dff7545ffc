package shadow

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"strconv"
	"time"

	"github.com/weft-io/weft/store"
)

// Field names of the shadow document.
const (
	FieldReported   = "reported"
	FieldDesired    = "desired"
	FieldDelta      = "delta"
	FieldReportedTS = "reported_ts"
	FieldDesiredTS  = "desired_ts"
	FieldReportedFP = "reported_fp"
	FieldConnected  = "connected"
	FieldLastSeen   = "last_seen"
	FieldClass      = "class"
	FieldEdge       = "edge"
	FieldSite       = "site"
	FieldFirmware   = "firmware"
	FieldScore      = "score"
	// FieldCertExpires is when the certificate the device last connected
	// with expires (RFC 3339), written by its gateway at connect.
	FieldCertExpires = "cert_expires"
)

// DefaultAnomalyThreshold is the score from which a device counts as
// anomalous, unless a Filter says otherwise.
const DefaultAnomalyThreshold = 0.8

// Doc is a device's shadow as read from the table, with its delta computed
// afresh from desired and reported. Its JSON form is what the API answers
// for a device.
type Doc struct {
	ID        string    `json:"id"`
	Version   uint64    `json:"version"`
	Updated   time.Time `json:"updated"`
	Class     string    `json:"class,omitempty"`
	Edge      string    `json:"edge,omitempty"`
	Site      string    `json:"site,omitempty"`
	Connected bool      `json:"connected"`
	LastSeen  time.Time `json:"last_seen,omitzero"`
	// CertExpires is when the certificate the device last connected with
	// expires.
	CertExpires time.Time            `json:"cert_expires,omitzero"`
	Firmware    string               `json:"firmware,omitempty"`
	Score       *float64             `json:"score,omitempty"`
	InSync      bool                 `json:"in_sync"`
	Reported    map[string]any       `json:"reported"`
	Desired     map[string]any       `json:"desired"`
	Delta       map[string]any       `json:"delta"`
	ReportedTS  map[string]time.Time `json:"reported_ts"`
	DesiredTS   map[string]time.Time `json:"desired_ts"`
}

// Anomalous reports whether the device's latest score is at or above
// threshold (DefaultAnomalyThreshold if 0).
func (d *Doc) Anomalous(threshold float64) bool {
	if threshold == 0 {
		threshold = DefaultAnomalyThreshold
	}
	return d.Score != nil && *d.Score >= threshold
}

// Parse returns the shadow a table document holds. It is lenient, as a
// reader of documents written by several parties must be: a field of the
// wrong type reads as absent. Only a document that is not a JSON object
// is an error.
func Parse(d store.Doc) (Doc, error) {
	m, err := decodeObject(d.Value)
	if err != nil {
		return Doc{}, fmt.Errorf("shadow: device %s: %w", d.Key, err)
	}
	return fromMap(d.Key, d.Version, d.Updated, m), nil
}

// fromMap builds a Doc from a decoded shadow document.
func fromMap(id string, version uint64, updated time.Time, m map[string]any) Doc {
	doc := Doc{
		ID:         id,
		Version:    version,
		Updated:    updated,
		Reported:   objectField(m, FieldReported),
		Desired:    objectField(m, FieldDesired),
		ReportedTS: timesField(m, FieldReportedTS),
		DesiredTS:  timesField(m, FieldDesiredTS),
	}
	doc.Class, _ = m[FieldClass].(string)
	doc.Edge, _ = m[FieldEdge].(string)
	doc.Site, _ = m[FieldSite].(string)
	doc.Connected, _ = m[FieldConnected].(bool)
	doc.Firmware, _ = m[FieldFirmware].(string)
	if fw, ok := doc.Reported["firmware"].(string); ok && doc.Firmware == "" {
		doc.Firmware = fw // not reconciled yet
	}
	if s, ok := m[FieldLastSeen].(string); ok {
		doc.LastSeen, _ = time.Parse(time.RFC3339Nano, s)
	}
	if s, ok := m[FieldCertExpires].(string); ok {
		doc.CertExpires, _ = time.Parse(time.RFC3339Nano, s)
	}
	if f, ok := float(m[FieldScore]); ok {
		doc.Score = &f
	}
	doc.Delta = Delta(doc.Desired, doc.Reported)
	doc.InSync = len(doc.Delta) == 0
	return doc
}

// decodeObject decodes a JSON object keeping numbers as json.Number, so
// that they are written back exactly as they came.
func decodeObject(b []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("%w: %v", store.ErrBadDocument, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: data after the JSON value", store.ErrBadDocument)
	}
	if v == nil {
		return map[string]any{}, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: a shadow is a JSON object", store.ErrBadDocument)
	}
	return m, nil
}

// objectField returns m[k] if it is an object, else an empty one.
func objectField(m map[string]any, k string) map[string]any {
	if o, ok := m[k].(map[string]any); ok {
		return o
	}
	return map[string]any{}
}

// timesField reads a map of field -> RFC 3339 time, skipping what does
// not parse.
func timesField(m map[string]any, k string) map[string]time.Time {
	out := map[string]time.Time{}
	for f, v := range objectField(m, k) {
		if s, ok := v.(string); ok {
			if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
				out[f] = t
			}
		}
	}
	return out
}

// fingerprint is a short hash of a value's JSON form (object keys sorted,
// as encoding/json writes them).
func fingerprint(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		b = []byte(fmt.Sprint(v))
	}
	h := fnv.New64a()
	h.Write(b)
	return strconv.FormatUint(h.Sum64(), 36)
}

// stampReported records, in the decoded document m, when each reported
// field's value last changed: for each field whose fingerprint differs
// from reported_fp (or that has no time yet) it sets reported_fp and
// stamps reported_ts with stamp, the time of the report; fields no longer
// reported lose both. It reports whether it changed anything. Only the
// owner of the reported side (the edge, as it applies a report) stamps:
// a replica keeps the times it is given. It is pure.
func stampReported(m map[string]any, stamp time.Time) bool {
	changed := false
	reported := objectField(m, FieldReported)
	ts := stamp.UTC().Format(time.RFC3339Nano)
	fps := objectField(m, FieldReportedFP)
	tss := objectField(m, FieldReportedTS)
	for k, v := range reported {
		fp := fingerprint(v)
		if old, _ := fps[k].(string); old != fp {
			fps[k], tss[k] = fp, ts
			changed = true
		} else if _, ok := tss[k]; !ok {
			tss[k] = ts
			changed = true
		}
	}
	for k := range fps {
		if _, ok := reported[k]; !ok {
			delete(fps, k)
			changed = true
		}
	}
	for k := range tss {
		if _, ok := reported[k]; !ok {
			delete(tss, k)
			changed = true
		}
	}
	if changed {
		m[FieldReportedFP], m[FieldReportedTS] = fps, tss
	}
	return changed
}

// reconcile updates, in the decoded document m, what follows from its
// reported and desired sides without being owned by either: firmware from
// reported.firmware, and the delta. It never touches either side's times.
// It reports whether it changed anything. It is pure.
func reconcile(m map[string]any) bool {
	changed := false
	reported := objectField(m, FieldReported)
	desired := objectField(m, FieldDesired)
	if fw, ok := reported["firmware"].(string); ok {
		if cur, _ := m[FieldFirmware].(string); cur != fw {
			m[FieldFirmware] = fw
			changed = true
		}
	}
	delta := Delta(desired, reported)
	old, isObject := m[FieldDelta].(map[string]any)
	if !isObject || !Equal(old, delta) {
		m[FieldDelta] = delta
		changed = true
	}
	return changed
}

// edgeOwned reports whether a field of the shadow document belongs to the
// edge's copy (DESIGN.md §7): everything but desired, desired_ts, which
// the core owns, and the delta, which follows from both sides.
func edgeOwned(field string) bool {
	switch field {
	case FieldDesired, FieldDesiredTS, FieldDelta:
		return false
	}
	return true
}

// fromEdge returns the document a node holds after a replica of the
// edge's document arrives: every edge-owned field as the edge wrote it
// (its times included), every other field of cur kept, and the delta
// recomputed. edge nil means the edge deleted the shadow. It is pure.
func fromEdge(cur, edge map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range edge {
		if edgeOwned(k) {
			out[k] = v
		}
	}
	for k, v := range cur {
		if !edgeOwned(k) {
			out[k] = v
		}
	}
	delete(out, FieldDelta)
	if len(out) == 0 {
		return out
	}
	reconcile(out)
	return out
}

// applyDesired merges patch into the desired side of m, stamps desired_ts
// for each top-level field the patch names (removing it for a field the
// patch removes) and recomputes the delta. It is pure.
func applyDesired(m, patch map[string]any, now time.Time) {
	desired := objectField(m, FieldDesired)
	desired = store.MergePatch(desired, patch).(map[string]any)
	m[FieldDesired] = desired
	tss := objectField(m, FieldDesiredTS)
	stamp := now.UTC().Format(time.RFC3339Nano)
	for k, v := range patch {
		if v == nil {
			delete(tss, k)
		} else {
			tss[k] = stamp
		}
	}
	m[FieldDesiredTS] = tss
	m[FieldDelta] = Delta(desired, objectField(m, FieldReported))
}
