package shadow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/weft-io/weft/store"
)

// Down is the one path of a node's core-owned writes to /updates/down:
// desired state, commands, tokens, alarm settings. On a single core (or
// an edge) it appends locally (LocalDown); on a node of a core cluster it
// is proposed to the cluster, acknowledged once a majority holds it, and
// applied by every node in the same order, so that every node's
// /updates/down holds the same records at the same offsets (package core
// implements it).
type Down interface {
	// Write makes w durable and applied on this node (its records in
	// this node's /updates/down) before it returns.
	Write(ctx context.Context, w Write) (Written, error)
}

// ErrUnavailable is the error, wrapped, of a Down that cannot take a
// write now: a cluster's node not joined yet, or cut off from the
// majority, or one that has not applied in time a write the cluster
// holds. It also wraps context.DeadlineExceeded, so the API answers 503.
var ErrUnavailable = errors.New("shadow: core-owned writes unavailable")

// Write is one core-owned write.
type Write struct {
	// Desired, if set, is a change of a device's desired state: applied
	// to the shadow and sent as the device's delta (first of the
	// write's records).
	Desired *DesiredWrite `json:"desired,omitempty"`
	// Records are appended to /updates/down as they are. A message
	// without a time is given the writer's.
	Records []store.AppendRequest `json:"records,omitempty"`
	// Local are appended on the writing node only, in the same commit as
	// the records there (its audit records).
	Local []store.AppendRequest `json:"local,omitempty"`
}

// DesiredWrite is a change of device Device's desired state: the merge
// patch, its time, and the reported state the delta sent with it is
// computed against (the writer's copy), so that every node that applies
// it sends the same delta.
type DesiredWrite struct {
	Device   string          `json:"device"`
	Patch    json.RawMessage `json:"patch"`
	Now      time.Time       `json:"now"`
	Reported json.RawMessage `json:"reported,omitempty"`
}

// Written is what a Write did on this node.
type Written struct {
	// Version is the version of the delta of a desired write: the
	// shadow's version on a single node, the cluster's revision of the
	// write in a cluster (the same on every node, growing with every
	// write).
	Version uint64
}

// LocalDown appends to the store's /updates/down in one commit: the
// Down of a node that writes /updates/down alone.
type LocalDown struct{ Store *store.Store }

var _ Down = LocalDown{}

// Write applies w in one commit.
func (d LocalDown) Write(ctx context.Context, w Write) (Written, error) {
	var out Written
	err := d.Store.Write(ctx, func(tx *store.Tx) (err error) {
		out, err = ApplyWrite(tx, w, 0, true)
		return err
	})
	return out, err
}

var (
	downsMu sync.RWMutex
	downs   = map[*store.Store]Down{}
)

// SetDown makes d the Down of the writes to st's /updates/down (a core
// node of a cluster sets it before it serves anything); nil restores
// LocalDown.
func SetDown(st *store.Store, d Down) {
	downsMu.Lock()
	defer downsMu.Unlock()
	if d == nil {
		delete(downs, st)
		return
	}
	downs[st] = d
}

// DownOf returns the Down of st: the one set with SetDown, or LocalDown.
func DownOf(st *store.Store) Down {
	downsMu.RLock()
	d, ok := downs[st]
	downsMu.RUnlock()
	if ok {
		return d
	}
	return LocalDown{Store: st}
}

// clustered reports whether st's writes go through a Down other than
// LocalDown.
func clustered(st *store.Store) bool {
	_, local := DownOf(st).(LocalDown)
	return !local
}

// ApplyWrite stages w in tx, as every node applies it: the desired
// change (the shadow, and its delta first of the records), the records,
// and, if origin (this node wrote it), the local records. version is the
// delta's version header; 0 takes the shadow's new version.
//
// Given the same /updates/down and desired sides before, every node
// appends the same messages: the delta is computed from the desired side
// (changed on every node by the same writes in the same order) and the
// reported state the write carries, never this node's own.
func ApplyWrite(tx *store.Tx, w Write, version uint64, origin bool) (Written, error) {
	var out Written
	var reqs []store.AppendRequest
	if d := w.Desired; d != nil {
		req, v, err := applyDesiredIn(tx, d, version)
		if err != nil {
			return Written{}, err
		}
		out.Version = v
		reqs = append(reqs, req)
	}
	for _, r := range w.Records {
		if r.Path != store.UpdatesStream {
			return Written{}, fmt.Errorf("%w: shadow: a core-owned write appends to %s, not %s", store.ErrInvalid, store.UpdatesStream, r.Path)
		}
	}
	reqs = append(reqs, w.Records...)
	if origin {
		reqs = append(reqs, w.Local...)
	}
	if len(reqs) > 0 {
		if _, err := tx.Append(reqs...); err != nil {
			return Written{}, err
		}
	}
	return out, nil
}

// applyDesiredIn changes the shadow of d.Device in tx and returns the
// delta's message.
func applyDesiredIn(tx *store.Tx, d *DesiredWrite, version uint64) (store.AppendRequest, uint64, error) {
	p, err := decodeObject(d.Patch)
	if err != nil {
		return store.AppendRequest{}, 0, fmt.Errorf("shadow: desired patch: %w", err)
	}
	old, exists, err := tx.Get(store.ShadowsTable, d.Device)
	if err != nil {
		return store.AppendRequest{}, 0, err
	}
	m := map[string]any{}
	if exists {
		if cur, err := decodeObject(old.Value); err == nil {
			m = cur
		}
	}
	applyDesired(m, p, d.Now)
	b, err := json.Marshal(m)
	if err != nil {
		return store.AppendRequest{}, 0, err
	}
	saved, err := tx.Put(store.ShadowsTable, d.Device, b)
	if err != nil {
		return store.AppendRequest{}, 0, err
	}
	if version == 0 {
		version = saved.Version
	}
	reported := map[string]any{}
	if len(d.Reported) > 0 {
		if reported, err = decodeObject(d.Reported); err != nil {
			return store.AppendRequest{}, 0, fmt.Errorf("shadow: desired write's reported state: %w", err)
		}
	}
	desired := objectField(m, FieldDesired)
	msg, err := deltaMessage(d.Device, Delta(desired, reported), desired, version)
	if err != nil {
		return store.AppendRequest{}, 0, err
	}
	msg.Timestamp = d.Now
	return store.AppendRequest{Path: store.UpdatesStream, Topic: DeviceTopic(d.Device), Partition: -1, Messages: []store.Message{msg}}, version, nil
}

// deltaMessage is the /updates/down message of device id's delta.
func deltaMessage(id string, delta, desired map[string]any, version uint64) (store.Message, error) {
	value, err := json.Marshal(delta)
	if err != nil {
		return store.Message{}, err
	}
	whole, err := json.Marshal(desired)
	if err != nil {
		return store.Message{}, err
	}
	return store.Message{
		Key:   []byte(id),
		Value: value,
		Headers: map[string]string{
			HeaderSubtopic: DeltaSubtopic,
			HeaderVersion:  strconv.FormatUint(version, 10),
			HeaderDesired:  string(whole),
		},
	}, nil
}

// setDesiredVia is SetDesired on a node whose writes go through d (a
// core cluster's): opt's conditions and check are tried against this
// node's copy of the shadow, then the change is written through d, and
// the shadow as this node holds it after is returned.
func setDesiredVia(ctx context.Context, st *store.Store, d Down, id string, patch json.RawMessage, opt SetOptions) (Doc, error) {
	p, err := decodeObject(patch)
	if err != nil {
		return Doc{}, fmt.Errorf("shadow: desired patch: %w", err)
	}
	now := opt.Now
	if now.IsZero() {
		now = time.Now()
	}
	cur, err := st.Table(store.ShadowsTable).Get(ctx, id)
	exists := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return Doc{}, err
	}
	for _, c := range opt.Conds {
		if c.Set && c.Version != cur.Version {
			return Doc{}, fmt.Errorf("%w: %s key %q has version %d, expected %d", store.ErrVersion, store.ShadowsTable, id, cur.Version, c.Version)
		}
	}
	m := map[string]any{}
	if exists {
		if m, err = decodeObject(cur.Value); err != nil {
			return Doc{}, err
		}
	}
	if opt.Check != nil {
		if err := opt.Check(fromMap(id, cur.Version, cur.Updated, m), exists); err != nil {
			return Doc{}, err
		}
	}
	reported, err := json.Marshal(objectField(m, FieldReported))
	if err != nil {
		return Doc{}, err
	}
	w := Write{Desired: &DesiredWrite{Device: id, Patch: patch, Now: now.UTC(), Reported: reported}}
	if opt.Also != nil {
		// The local records see the shadow as this node expects it after
		// the write.
		next := map[string]any{}
		for k, v := range m {
			next[k] = v
		}
		applyDesired(next, p, now)
		w.Local = opt.Also(fromMap(id, cur.Version+1, now, next))
	}
	if _, err := d.Write(ctx, w); err != nil {
		return Doc{}, err
	}
	return Get(ctx, st, id)
}
