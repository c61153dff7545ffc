package shadow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/weft-io/weft/store"
)

// DeltaSubtopic is the subtopic header of a delta message in
// /updates/down: the gateway delivers it on
// updates/device/<id>/shadow/delta.
const DeltaSubtopic = "shadow/delta"

// Headers of a delta message besides the subtopic.
const (
	HeaderSubtopic = "subtopic"       // as gateway.HeaderSubtopic
	HeaderVersion  = "shadow_version" // the shadow version the delta is of
	// HeaderDesired holds the whole desired state (a JSON object) the
	// delta was computed from, so that the edge can compute the delta
	// anew against later reports. It is not sent to devices.
	HeaderDesired = "desired"
)

// ErrDeltaNotSent is returned, wrapped, by SetDesired when the desired
// state was saved but its delta could not be appended to /updates/down.
// The Doc returned with it is the saved shadow.
var ErrDeltaNotSent = errors.New("shadow: desired state saved, delta not sent")

// DeviceTopic is the /updates/down topic of one device.
func DeviceTopic(id string) string { return "device/" + id }

// Get returns the shadow of device id (store.ErrNotFound if it has none).
func Get(ctx context.Context, st *store.Store, id string) (Doc, error) {
	d, err := st.Table(store.ShadowsTable).Get(ctx, id)
	if err != nil {
		return Doc{}, err
	}
	return Parse(d)
}

// SetOptions are the options of SetDesired.
type SetOptions struct {
	// Conds are preconditions on the shadow's version, such as
	// store.IfVersion(v); a mismatch is store.ErrVersion.
	Conds []store.Cond
	// Check, if set, sees the current shadow (exists false when the
	// device has none yet) inside the update and refuses the change by
	// returning an error, which SetDesired returns. It may run more than
	// once.
	Check func(cur Doc, exists bool) error
	// Also, if set, is given the saved shadow and returns what to append
	// in the same commit as the delta message, such as the audit record
	// of the change.
	Also func(saved Doc) []store.AppendRequest
	// Now is the time stamped in desired_ts. Default time.Now().
	Now time.Time
}

// SetDesired applies the merge patch (RFC 7386, a JSON object) to the
// desired side of device id's shadow, creating the shadow if the device
// has none, and returns the new shadow. In one table update it merges the
// patch, stamps desired_ts and recomputes the delta, which bumps the
// version. Then, in a second commit, it appends the delta (a JSON object,
// empty when in sync) to /updates/down, topic device/<id>, with the
// subtopic header shadow/delta, together with what opt.Also returns.
//
// The delta is sent even when empty: the gateway retains the latest
// message of each MQTT topic, and a device that connects later must not
// be given an older delta. If the append fails, the shadow is saved
// already: the error wraps ErrDeltaNotSent and the Doc is the saved
// shadow; patching again, even with {}, sends the delta again.
//
// On a node of a core cluster (SetDown) the change goes through the
// cluster instead: opt's conditions and check see this node's copy, the
// change is acknowledged once a majority holds it and this node applied
// it, and no ErrDeltaNotSent is possible (the shadow and its delta are
// one commit on every node).
func SetDesired(ctx context.Context, st *store.Store, id string, patch json.RawMessage, opt SetOptions) (Doc, error) {
	if d := DownOf(st); clustered(st) {
		return setDesiredVia(ctx, st, d, id, patch, opt)
	}
	p, err := decodeObject(patch)
	if err != nil {
		return Doc{}, fmt.Errorf("shadow: desired patch: %w", err)
	}
	now := opt.Now
	if now.IsZero() {
		now = time.Now()
	}
	var delta, desired map[string]any
	var m map[string]any
	saved, err := st.Table(store.ShadowsTable).Update(ctx, id, func(old store.Doc, exists bool) (json.RawMessage, error) {
		m = map[string]any{}
		if exists {
			var err error
			if m, err = decodeObject(old.Value); err != nil {
				return nil, err
			}
		}
		if opt.Check != nil {
			if err := opt.Check(fromMap(id, old.Version, old.Updated, m), exists); err != nil {
				return nil, err
			}
		}
		applyDesired(m, p, now)
		delta, _ = m[FieldDelta].(map[string]any)
		desired = objectField(m, FieldDesired)
		return json.Marshal(m)
	}, opt.Conds...)
	if err != nil {
		return Doc{}, err
	}
	doc := fromMap(id, saved.Version, saved.Updated, m)
	value, err := json.Marshal(delta)
	if err != nil {
		return doc, fmt.Errorf("%w: %v", ErrDeltaNotSent, err)
	}
	whole, err := json.Marshal(desired)
	if err != nil {
		return doc, fmt.Errorf("%w: %v", ErrDeltaNotSent, err)
	}
	msg := store.Message{
		Key:   []byte(id),
		Value: value,
		Headers: map[string]string{
			HeaderSubtopic: DeltaSubtopic,
			HeaderVersion:  fmt.Sprint(saved.Version),
			HeaderDesired:  string(whole),
		},
	}
	reqs := []store.AppendRequest{{Path: store.UpdatesStream, Topic: DeviceTopic(id), Partition: -1, Messages: []store.Message{msg}}}
	if opt.Also != nil {
		reqs = append(reqs, opt.Also(doc)...)
	}
	if _, err := st.AppendMany(ctx, reqs); err != nil {
		return doc, fmt.Errorf("%w (version %d): %w", ErrDeltaNotSent, saved.Version, err)
	}
	return doc, nil
}

// Reconcile recomputes what follows from device id's reported and desired
// sides (the delta, firmware) and writes the shadow only if any of it
// changed. It reports whether it wrote. A device without a shadow is no
// error. It never stamps either side's times.
func Reconcile(ctx context.Context, st *store.Store, id string) (bool, error) {
	d, err := st.Table(store.ShadowsTable).Get(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return reconcileDoc(ctx, st, d)
}

// reconcileDoc is Reconcile given a recent version of the document: when
// that version needs no change, nothing is written.
func reconcileDoc(ctx context.Context, st *store.Store, d store.Doc) (bool, error) {
	m, err := decodeObject(d.Value)
	if err != nil || !reconcile(m) {
		return false, nil // a document that is no object is not ours to fix
	}
	var wrote bool
	err = st.Write(ctx, func(tx *store.Tx) (err error) {
		wrote, err = reconcileIn(tx, d.Key)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("shadow: reconcile %s: %w", d.Key, err)
	}
	return wrote, nil
}

// reconcileIn reconciles device id's shadow in a write transaction,
// writing only if something changed.
func reconcileIn(tx *store.Tx, id string) (bool, error) {
	old, exists, err := tx.Get(store.ShadowsTable, id)
	if err != nil || !exists {
		return false, err
	}
	m, err := decodeObject(old.Value)
	if err != nil || !reconcile(m) {
		return false, nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return false, err
	}
	_, err = tx.Put(store.ShadowsTable, id, b)
	return err == nil, err
}

// Source is where a device's report came from: the connection details
// the edge writes into its shadow beside the report.
type Source struct {
	Class, Edge, Site string
}

// Report merges a device's report (a JSON object, an RFC 7386 merge patch
// of its reported state) into its shadow, as the edge that owns the
// reported side: in one table update it merges the report, sets last_seen
// to at and class, edge and site from src, stamps reported_ts with at for
// every field whose value changed, and recomputes firmware and the delta.
// The shadow, its change record and what also holds (the report's history
// records) are committed together: a crash leaves all of them or none.
func Report(ctx context.Context, st *store.Store, id string, report json.RawMessage, src Source, at time.Time, also []store.AppendRequest) (Doc, error) {
	p, err := decodeObject(report)
	if err != nil {
		return Doc{}, fmt.Errorf("shadow: report of %s: %w", id, err)
	}
	var m map[string]any
	saved, _, err := st.Table(store.ShadowsTable).UpdateAppend(ctx, id, func(old store.Doc, exists bool) (json.RawMessage, []store.AppendRequest, error) {
		m = map[string]any{}
		if exists {
			if m, err = decodeObject(old.Value); err != nil {
				return nil, nil, err
			}
		}
		applyReport(m, p, src, at)
		b, err := json.Marshal(m)
		return b, also, err
	})
	if err != nil {
		return Doc{}, fmt.Errorf("shadow: report of %s: %w", id, err)
	}
	return fromMap(id, saved.Version, saved.Updated, m), nil
}

// applyReport is what Report does to the decoded document m. It is pure.
func applyReport(m, report map[string]any, src Source, at time.Time) {
	m[FieldReported] = store.MergePatch(objectField(m, FieldReported), report)
	m[FieldLastSeen] = at.UTC().Format(time.RFC3339Nano)
	m[FieldClass], m[FieldEdge], m[FieldSite] = src.Class, src.Edge, src.Site
	stampReported(m, at)
	reconcile(m)
}

// ApplyEdge applies a change of an edge's shadow (a record of the edge's
// /shadows/changes, replicated) to this node's copy, in one commit: every
// edge-owned field as the edge wrote it, reported_ts included, the node's
// own desired side kept, the delta recomputed. When the edge deleted the
// shadow, the node keeps its own fields, or deletes the shadow if it has
// none. Applying the same change twice writes the same document. A change
// whose document is no JSON object is store.ErrBadDocument.
func ApplyEdge(ctx context.Context, st *store.Store, c store.Change) error {
	return st.Write(ctx, func(tx *store.Tx) error { return ApplyEdgeIn(tx, c) })
}

// ApplyEdgeIn is ApplyEdge in a write transaction, for a consumer that
// commits its cursor with it.
func ApplyEdgeIn(tx *store.Tx, c store.Change) error {
	var edge map[string]any
	if c.Op != "delete" {
		var err error
		if edge, err = decodeObject(c.Doc); err != nil {
			return fmt.Errorf("shadow: change of %s: %w", c.Key, err)
		}
	}
	old, exists, err := tx.Get(store.ShadowsTable, c.Key)
	if err != nil {
		return err
	}
	cur := map[string]any{}
	if exists {
		if m, err := decodeObject(old.Value); err == nil {
			cur = m
		}
	}
	out := fromEdge(cur, edge)
	if len(out) == 0 {
		if exists {
			return tx.Delete(store.ShadowsTable, c.Key)
		}
		return nil // no shadow here either
	}
	b, err := json.Marshal(out)
	if err != nil {
		return err
	}
	_, err = tx.Put(store.ShadowsTable, c.Key, b)
	return err
}
