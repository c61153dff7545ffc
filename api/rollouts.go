package api

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/firmware"
	"github.com/weft-io/weft/shadow"
	"github.com/weft-io/weft/store"
)

// This file holds firmware rollouts: their routes, their storage and the
// runner that carries out what the state machine (firmware.Rollout)
// decides. A rollout is two table documents, written together: its
// summary in RolloutsTable (what the routes and the console show) and its
// whole state, with every device, in RolloutStatesTable.

// Rollout tables, in the updates volume of the node that runs rollouts
// (the core).
const (
	RolloutsTable      = "/updates/rollouts"
	RolloutStatesTable = "/updates/rollout_states"
)

// FirmwareAnnounceSubtopic is the subtopic of a rollout's messages in
// /updates/down (topic device/<id>): the gateway delivers them, retained,
// on updates/device/<id>/firmware/announce.
const FirmwareAnnounceSubtopic = "firmware/announce"

// Rollout defaults, for members a create request leaves out.
var (
	DefaultRolloutWaves         = []int{1, 10, 50, 100}
	DefaultRolloutThreshold     = 10.0
	DefaultRolloutMinExecuted   = 1
	DefaultRolloutDeviceTimeout = time.Hour
)

// RolloutTick is how often the runner advances rollouts in time (device
// timeouts, soaks).
var RolloutTick = time.Second

// rolloutGroup is the runner's consumer group on the streams that carry
// device status reports.
const rolloutGroup = "firmware-rollouts"

// RolloutRequest is the body of POST /api/v1/firmware/rollouts.
type RolloutRequest struct {
	// Release is NAME@VERSION of a stored release. Required.
	Release string `json:"release"`
	// Target is all, class:CLASS or device:ID[,ID...]. Required.
	Target string `json:"target"`
	// Waves are cumulative percentages; default 1, 10, 50, 100.
	Waves []int `json:"waves,omitempty"`
	// FailureThreshold is a percentage, as a number (10) or text ("10%");
	// default 10.
	FailureThreshold json.RawMessage `json:"failure_threshold,omitempty"`
	// MinExecuted is how many devices must finish before the threshold
	// applies; default 1.
	MinExecuted *int `json:"min_executed,omitempty"`
	// DeviceTimeout is a Go duration; default 1h.
	DeviceTimeout string `json:"device_timeout,omitempty"`
	// WaveSoak is a Go duration; default 0.
	WaveSoak string `json:"wave_soak,omitempty"`
}

// ParseRolloutRequest reads a create request body: one JSON object, no
// unknown members, nothing after it; and returns the checked spec it asks
// for. Errors are for the client to read, except *http.MaxBytesError,
// which means 413.
func ParseRolloutRequest(r io.Reader) (firmware.Spec, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var req RolloutRequest
	err := dec.Decode(&req)
	if err == nil {
		if _, err = dec.Token(); errors.Is(err, io.EOF) {
			err = nil
		} else if err == nil {
			err = errors.New("data after the JSON object")
		}
	}
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return firmware.Spec{}, err
	case errors.Is(err, io.EOF):
		return firmware.Spec{}, errors.New("empty body")
	case err != nil:
		return firmware.Spec{}, fmt.Errorf("body: %v", err)
	}
	return req.Spec()
}

// Spec checks the request and returns the rollout spec it asks for.
func (req RolloutRequest) Spec() (firmware.Spec, error) {
	spec := firmware.Spec{Release: req.Release, Target: req.Target, Waves: req.Waves,
		FailureThreshold: DefaultRolloutThreshold, MinExecuted: DefaultRolloutMinExecuted,
		DeviceTimeout: firmware.Duration(DefaultRolloutDeviceTimeout)}
	if spec.Waves == nil {
		spec.Waves = DefaultRolloutWaves
	}
	if len(req.FailureThreshold) > 0 {
		var text string
		if json.Unmarshal(req.FailureThreshold, &text) != nil {
			text = string(req.FailureThreshold)
		}
		t, err := firmware.ParseThreshold(text)
		if err != nil {
			return spec, err
		}
		spec.FailureThreshold = t
	}
	if req.MinExecuted != nil {
		spec.MinExecuted = *req.MinExecuted
	}
	for _, d := range []struct {
		s   string
		dst *firmware.Duration
	}{{req.DeviceTimeout, &spec.DeviceTimeout}, {req.WaveSoak, &spec.WaveSoak}} {
		if d.s != "" {
			if err := d.dst.UnmarshalText([]byte(d.s)); err != nil {
				return spec, fmt.Errorf("%w: duration %q: want a Go duration such as 15m", firmware.ErrInvalidSpec, d.s)
			}
		}
	}
	return spec, spec.Check()
}

// Announcement is the message a rollout sends a device
// (firmware.Announcement).
type Announcement = firmware.Announcement

// rolloutIndex is a rollout's document in RolloutsTable.
type rolloutIndex struct {
	firmware.Summary
	// Active is false once the rollout can change no more.
	Active bool `json:"active"`
	// Next is when the runner must next tick it, if ever.
	Next time.Time `json:"next,omitzero"`
	// Announcement is what its devices are sent.
	Announcement Announcement `json:"announcement"`
}

// RolloutList is the answer to GET /api/v1/firmware/rollouts.
type RolloutList struct {
	Rollouts []firmware.Summary `json:"rollouts"`
}

// Rollout errors.
var (
	// ErrRolloutsReadOnly is a rollout created on a node whose updates
	// another node writes (an edge linked to a core).
	ErrRolloutsReadOnly = errors.New("api: rollouts run on the core")
	// errNoRelease is a rollout of a release the node does not hold.
	errNoRelease = errors.New("api: no such release")
)

// rolloutRoutes adds the routes of /api/v1/firmware/rollouts.
func (s *Server) rolloutRoutes() {
	s.Handle("GET /api/v1/firmware/rollouts", certs.RoleViewer, http.HandlerFunc(s.rolloutList))
	s.Handle("POST /api/v1/firmware/rollouts", certs.RoleOperator, http.HandlerFunc(s.rolloutCreate))
	s.Handle("GET /api/v1/firmware/rollouts/{id}", certs.RoleViewer, http.HandlerFunc(s.rolloutGet))
	for _, action := range []string{"pause", "resume", "abort"} {
		s.Handle("POST /api/v1/firmware/rollouts/{id}/"+action, certs.RoleOperator, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			sum, err := s.ControlRollout(r.Context(), Claims(r.Context()), r.PathValue("id"), action)
			if err != nil {
				s.rolloutError(w, r, err)
				return
			}
			writeJSON(w, http.StatusOK, sum)
		}))
	}
}

// ensureRolloutTables creates the rollout tables if they are missing.
func (s *Server) ensureRolloutTables(ctx context.Context) error {
	for _, p := range []string{RolloutsTable, RolloutStatesTable} {
		if err := s.cfg.Store.CreateTable(ctx, p, store.TableOptions{}); err != nil && !errors.Is(err, store.ErrExists) {
			return fmt.Errorf("api: %s: %w", p, err)
		}
	}
	return nil
}

// Rollouts returns every rollout, newest first.
func (s *Server) Rollouts(ctx context.Context) ([]firmware.Summary, error) {
	idx, err := s.rolloutIndexes(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]firmware.Summary, len(idx))
	for i := range idx {
		out[i] = idx[i].Summary
	}
	slices.SortFunc(out, func(a, b firmware.Summary) int { return b.Created.Compare(a.Created) })
	return out, nil
}

// rolloutIndexes reads every rollout's index document.
func (s *Server) rolloutIndexes(ctx context.Context) ([]rolloutIndex, error) {
	var out []rolloutIndex
	after := ""
	for {
		docs, next, err := s.cfg.Store.Table(RolloutsTable).Scan(ctx, "", after, 0)
		if errors.Is(err, store.ErrNotFound) {
			return nil, nil // no rollout yet
		}
		if err != nil {
			return nil, err
		}
		for _, d := range docs {
			var ix rolloutIndex
			if err := json.Unmarshal(d.Value, &ix); err != nil {
				return nil, fmt.Errorf("api: rollout %s: %w", d.Key, err)
			}
			out = append(out, ix)
		}
		if next == "" {
			return out, nil
		}
		after = next
	}
}

// Rollout returns one rollout's summary.
func (s *Server) Rollout(ctx context.Context, id string) (firmware.Summary, error) {
	d, err := s.cfg.Store.Table(RolloutsTable).Get(ctx, id)
	if errors.Is(err, store.ErrInvalid) || errors.Is(err, store.ErrNotFound) {
		return firmware.Summary{}, fmt.Errorf("%w: rollout %s", store.ErrNotFound, id)
	}
	if err != nil {
		return firmware.Summary{}, err
	}
	var ix rolloutIndex
	if err := json.Unmarshal(d.Value, &ix); err != nil {
		return firmware.Summary{}, fmt.Errorf("api: rollout %s: %w", id, err)
	}
	return ix.Summary, nil
}

// CreateRollout starts a rollout of spec for the holder of token c: the
// release must be stored, the target is narrowed to the release's class
// (and device list), and the first wave is announced in the same commit
// as the rollout and its audit record.
func (s *Server) CreateRollout(ctx context.Context, c *certs.TokenClaims, spec firmware.Spec) (firmware.Summary, error) {
	if err := rolloutClaims(c); err != nil {
		return firmware.Summary{}, err
	}
	if s.cfg.DesiredReadOnly {
		return firmware.Summary{}, ErrRolloutsReadOnly
	}
	if err := spec.Check(); err != nil {
		return firmware.Summary{}, err
	}
	name, version, _ := firmware.ParseRelease(spec.Release)
	rel, err := (&firmware.Registry{Store: s.cfg.Store}).Get(ctx, name, version)
	if errors.Is(err, firmware.ErrNotFound) {
		return firmware.Summary{}, fmt.Errorf("%w %s: publish it first", errNoRelease, spec.Release)
	}
	if err != nil {
		return firmware.Summary{}, err
	}
	ids, err := s.rolloutDevices(ctx, spec.Target, rel.Manifest)
	if err != nil {
		return firmware.Summary{}, err
	}
	if err := s.ensureRolloutTables(ctx); err != nil {
		return firmware.Summary{}, err
	}
	id := strings.ToLower(rand.Text()[:16])
	now := s.now()
	r, acts, err := firmware.NewRollout(id, spec, ids, now)
	if err != nil {
		return firmware.Summary{}, err
	}
	ann := Announcement{Rollout: id, Release: spec.Release, Name: rel.Name, Version: rel.Version.String(),
		Manifest: rel.ManifestPath, Image: rel.ImagePath, SHA256: rel.Digest(), Size: rel.Size}
	err = s.cfg.Store.Write(ctx, func(tx *store.Tx) error {
		return s.saveRollout(tx, c.Subject, r, ann, acts, true)
	})
	if err != nil {
		return firmware.Summary{}, err
	}
	return r.Summary(), nil
}

// rolloutDevices resolves a target to the ids of the devices that may
// install the release m: of its class, and in its device list if it has
// one.
func (s *Server) rolloutDevices(ctx context.Context, target string, m firmware.Manifest) ([]string, error) {
	t, err := firmware.ParseTarget(target)
	if err != nil {
		return nil, err
	}
	if t.Class != "" && t.Class != m.Class {
		return nil, fmt.Errorf("%w: target %s: the release is for class %s", firmware.ErrInvalidSpec, target, m.Class)
	}
	var ids []string
	if t.Devices != nil {
		for _, id := range t.Devices {
			d, err := shadow.Get(ctx, s.cfg.Store, id)
			if errors.Is(err, store.ErrNotFound) {
				return nil, fmt.Errorf("%w: target %s: no device %s", firmware.ErrInvalidSpec, target, id)
			}
			if err != nil {
				return nil, err
			}
			if d.Class != m.Class || !m.ForDevice(id) {
				return nil, fmt.Errorf("%w: target %s: device %s (class %s) may not install the release", firmware.ErrInvalidSpec, target, id, d.Class)
			}
			ids = append(ids, id)
		}
		return ids, nil
	}
	after := ""
	for {
		page, err := shadow.List(ctx, s.cfg.Store, shadow.Filter{Class: m.Class}, after, 1000)
		if err != nil {
			return nil, err
		}
		for _, d := range page.Devices {
			if m.ForDevice(d.ID) {
				ids = append(ids, d.ID)
			}
		}
		if len(ids) > firmware.MaxRolloutDevices {
			return nil, fmt.Errorf("%w: target %s has more than %d devices", firmware.ErrInvalidSpec, target, firmware.MaxRolloutDevices)
		}
		if page.Next == "" {
			return ids, nil
		}
		after = page.Next
	}
}

// ControlRollout pauses, resumes or aborts rollout id for the holder of
// token c: action is "pause", "resume" or "abort".
func (s *Server) ControlRollout(ctx context.Context, c *certs.TokenClaims, id, action string) (firmware.Summary, error) {
	if err := rolloutClaims(c); err != nil {
		return firmware.Summary{}, err
	}
	var sum firmware.Summary
	now := s.now()
	err := s.cfg.Store.Write(ctx, func(tx *store.Tx) error {
		r, ann, err := loadRollout(tx, id)
		if err != nil {
			return err
		}
		var acts []firmware.Action
		switch action {
		case "pause":
			acts, err = r.Pause(now)
		case "resume":
			acts, err = r.Resume(now)
		case "abort":
			acts, err = r.Abort(now)
		default:
			err = fmt.Errorf("api: unknown rollout action %q", action)
		}
		if err != nil {
			return err
		}
		sum = r.Summary()
		return s.saveRollout(tx, c.Subject, r, ann, acts, false)
	})
	return sum, err
}

// rolloutClaims checks that token c may change rollouts: an operator
// without a scope (a rollout's target is not bounded by one).
func rolloutClaims(c *certs.TokenClaims) error {
	if c == nil || !c.Role.Allows(certs.RoleOperator) {
		return errNoRole
	}
	for k, v := range c.Scope {
		return fmt.Errorf("%w: %s=%s on rollouts", ErrScopeUnenforced, k, v)
	}
	return nil
}

// loadRollout reads a rollout's state and announcement in tx.
func loadRollout(tx *store.Tx, id string) (*firmware.Rollout, Announcement, error) {
	d, ok, err := tx.Get(RolloutStatesTable, id)
	if errors.Is(err, store.ErrInvalid) || (err == nil && !ok) {
		return nil, Announcement{}, fmt.Errorf("%w: rollout %s", store.ErrNotFound, id)
	}
	if err != nil {
		return nil, Announcement{}, err
	}
	var r firmware.Rollout
	if err := json.Unmarshal(d.Value, &r); err != nil {
		return nil, Announcement{}, fmt.Errorf("api: rollout %s: %w", id, err)
	}
	if err := r.Load(); err != nil {
		return nil, Announcement{}, err
	}
	ix, _, err := tx.Get(RolloutsTable, id)
	if err != nil {
		return nil, Announcement{}, err
	}
	var idx rolloutIndex
	if err := json.Unmarshal(ix.Value, &idx); err != nil {
		return nil, Announcement{}, fmt.Errorf("api: rollout %s: %w", id, err)
	}
	return &r, idx.Announcement, nil
}

// saveRollout stages a rollout's documents and what its actions ask for:
// announcements and cancels in /updates/down, records in the audit
// stream (with subject, empty for the runner's own).
func (s *Server) saveRollout(tx *store.Tx, subject string, r *firmware.Rollout, ann Announcement, acts []firmware.Action, create bool) error {
	state, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("api: rollout %s: %w", r.ID, err)
	}
	next, due := r.NextDeadline()
	if !due {
		next = time.Time{}
	}
	index, err := json.Marshal(rolloutIndex{Summary: r.Summary(), Active: !r.Finished(), Next: next, Announcement: ann})
	if err != nil {
		return fmt.Errorf("api: rollout %s: %w", r.ID, err)
	}
	var conds []store.Cond
	if create {
		conds = []store.Cond{store.IfVersion(0)}
	}
	if _, err := tx.Put(RolloutStatesTable, r.ID, state, conds...); err != nil {
		return err
	}
	if _, err := tx.Put(RolloutsTable, r.ID, index, conds...); err != nil {
		return err
	}
	var reqs, down []store.AppendRequest
	object := RolloutsTable + "/" + r.ID
	for _, a := range acts {
		switch a.Kind {
		case firmware.Announce, firmware.Cancel:
			m := ann
			m.Canceled = a.Kind == firmware.Cancel
			b, err := json.Marshal(m)
			if err != nil {
				return err
			}
			down = append(down, store.AppendRequest{Path: store.UpdatesStream, Topic: shadow.DeviceTopic(a.Device), Partition: -1,
				Messages: []store.Message{{Key: []byte(r.ID), Value: b, Headers: map[string]string{headerSubtopic: FirmwareAnnounceSubtopic}}}})
		case firmware.Record:
			detail := map[string]any{"state": r.State}
			for k, v := range a.Detail {
				detail[k] = v
			}
			rec, err := s.auditFor(subject, a.Change, object, detail)
			if err != nil {
				return err
			}
			reqs = append(reqs, rec)
		}
	}
	if len(reqs) > 0 {
		if _, err := tx.Append(reqs...); err != nil {
			return err
		}
	}
	// Announcements and cancels through the node's one path of
	// core-owned writes: in this commit on a single node, staged for
	// the cluster's log on a cluster's node (shadow.Stage).
	return shadow.Stage(tx, s.cfg.Store, shadow.Write{Records: down})
}

// RunRollouts carries rollouts out until ctx ends: it feeds them the
// devices' firmware status reports, as they arrive in /uplink/events
// (where every gateway copies them, in the commit that stores them, as it
// does command answers; the node's own gateway's and its edges'), and
// advances them in time every RolloutTick. It does not read the devices'
// telemetry (/telemetry/by_device), which would cost the node a read of
// every message replicated to it.
// The node that writes /updates/down (the core, or an edge without one)
// runs it beside its API. On a node whose updates another writes
// (Config.DesiredReadOnly) it returns ErrRolloutsReadOnly at once:
// device/<id> topics are the core's.
func (s *Server) RunRollouts(ctx context.Context) error {
	if s.cfg.DesiredReadOnly {
		return ErrRolloutsReadOnly
	}
	if err := s.ensureRolloutTables(ctx); err != nil {
		return err
	}
	// Before the first rollout no report matters: start at the streams'
	// ends. Once there are rollouts, a topic the runner has no cursor for
	// appeared while it was not running: read it whole.
	idx, err := s.rolloutIndexes(ctx)
	if err != nil {
		return err
	}
	start := store.StartOldest
	if len(idx) == 0 {
		start = store.StartNewest
	}
	c, err := s.cfg.Store.Stream(store.UplinkStream).Consumer(store.ConsumerConfig{Group: rolloutGroup, Start: start,
		Logger: s.log.With("component", "rollouts", "stream", store.UplinkStream)})
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, s.rolloutStatusBatch) }()
	t := time.NewTicker(RolloutTick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return <-done
		case <-t.C:
			if err := s.TickRollouts(ctx, s.now()); err != nil && ctx.Err() == nil {
				s.log.Error("rollouts not advanced", "err", err)
			}
		}
	}
}

// TickRollouts advances every active rollout that has something due at
// now (a device timeout, the end of a soak).
func (s *Server) TickRollouts(ctx context.Context, now time.Time) error {
	idx, err := s.rolloutIndexes(ctx)
	if err != nil {
		return err
	}
	for _, ix := range idx {
		if !ix.Active || ix.Next.IsZero() || ix.Next.After(now) {
			continue
		}
		err := s.cfg.Store.Write(ctx, func(tx *store.Tx) error {
			return s.stepRollout(tx, ix.ID, func(r *firmware.Rollout) []firmware.Action { return r.Tick(now) })
		})
		if err != nil {
			return fmt.Errorf("api: rollout %s: %w", ix.ID, err)
		}
	}
	return nil
}

// stepRollout loads a rollout in tx, applies step and saves it if it
// changed.
func (s *Server) stepRollout(tx *store.Tx, id string, step func(*firmware.Rollout) []firmware.Action) error {
	r, ann, err := loadRollout(tx, id)
	if err != nil {
		return err
	}
	seq := r.Seq
	acts := step(r)
	if r.Seq == seq {
		return nil
	}
	return s.saveRollout(tx, "", r, ann, acts, false)
}

// deviceStatus is a device's firmware status report found in a stream.
type deviceStatus struct {
	device string
	report firmware.StatusReport
	state  firmware.DeviceState
}

// firmwareStatusOf returns the status report a stored device message
// holds, if it is one: a publish on devices/<id>/firmware/status.
func firmwareStatusOf(m *store.Message) (deviceStatus, bool) {
	dev := m.Headers["device"]
	if dev == "" || m.Headers[headerMQTTTopic] != "devices/"+dev+"/firmware/status" {
		return deviceStatus{}, false
	}
	rep, st, err := firmware.ParseStatus(m.Value)
	if err != nil {
		return deviceStatus{}, false
	}
	return deviceStatus{device: dev, report: rep, state: st}, true
}

// rolloutStatusBatch is the runner's consumer handler: the batch's status
// reports are applied to the rollouts they concern, in the transaction
// that moves the cursor past them.
func (s *Server) rolloutStatusBatch(ctx context.Context, b store.Batch) (func(tx *store.Tx) error, error) {
	var reports []deviceStatus
	for i := range b.Messages {
		if st, ok := firmwareStatusOf(&b.Messages[i]); ok {
			reports = append(reports, st)
		}
	}
	if reports == nil {
		return nil, nil
	}
	idx, err := s.rolloutIndexes(ctx)
	if err != nil {
		return nil, err
	}
	concerned := map[string][]deviceStatus{}
	var ids []string
	for _, ix := range idx {
		if !ix.Active {
			continue
		}
		r := firmware.Rollout{ID: ix.ID, Spec: firmware.Spec{Release: ix.Release}}
		for _, st := range reports {
			if st.report.Concerns(&r) {
				if concerned[ix.ID] == nil {
					ids = append(ids, ix.ID)
				}
				concerned[ix.ID] = append(concerned[ix.ID], st)
			}
		}
	}
	if ids == nil {
		return nil, nil
	}
	now := s.now()
	return func(tx *store.Tx) error {
		for _, id := range ids {
			err := s.stepRollout(tx, id, func(r *firmware.Rollout) []firmware.Action {
				var acts []firmware.Action
				for _, st := range concerned[id] {
					acts = append(acts, r.Status(now, st.device, st.state)...)
				}
				return acts
			})
			if err != nil {
				return fmt.Errorf("api: rollout %s: %w", id, err)
			}
		}
		return nil
	}, nil
}

// rolloutList serves GET /api/v1/firmware/rollouts.
func (s *Server) rolloutList(w http.ResponseWriter, r *http.Request) {
	list, err := s.Rollouts(r.Context())
	if err != nil {
		s.rolloutError(w, r, err)
		return
	}
	if list == nil {
		list = []firmware.Summary{}
	}
	writeJSON(w, http.StatusOK, RolloutList{Rollouts: list})
}

// rolloutGet serves GET /api/v1/firmware/rollouts/{id}.
func (s *Server) rolloutGet(w http.ResponseWriter, r *http.Request) {
	sum, err := s.Rollout(r.Context(), r.PathValue("id"))
	if err != nil {
		s.rolloutError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, sum)
}

// rolloutCreate serves POST /api/v1/firmware/rollouts.
func (s *Server) rolloutCreate(w http.ResponseWriter, r *http.Request) {
	spec, err := ParseRolloutRequest(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		badBody(w, err, "")
		return
	}
	sum, err := s.CreateRollout(r.Context(), Claims(r.Context()), spec)
	if err != nil {
		s.rolloutError(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/firmware/rollouts/"+sum.ID)
	writeJSON(w, http.StatusCreated, sum)
}

// rolloutError answers the errors of the rollout routes.
func (s *Server) rolloutError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, firmware.ErrInvalidSpec):
		badRequest(w, err.Error())
	case errors.Is(err, errNoRelease):
		Problem(w, http.StatusNotFound, "Not found", err.Error())
	case errors.Is(err, firmware.ErrRolloutState):
		Problem(w, http.StatusConflict, "Rollout state", err.Error())
	case errors.Is(err, ErrRolloutsReadOnly):
		Problem(w, http.StatusConflict, "Rollouts run elsewhere", "this node's updates are written by its core; create the rollout there")
	default:
		s.deviceError(w, r, err)
	}
}
