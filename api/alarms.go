package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/weft-io/weft/alarm"
	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/shadow"
)

// This file holds the alarm routes (docs/alarms.md): the alarms a node's
// alarm engine (package alarm) raised or took in from its edges, their
// acknowledgement, and the settings the engine applies.

// AlarmsResponse is the answer to GET /api/v1/alarms.
type AlarmsResponse struct {
	Alarms []alarm.Alarm `json:"alarms"`
}

func (s *Server) alarmRoutes() {
	s.Handle("GET /api/v1/alarms", certs.RoleViewer, ScopeAware(http.HandlerFunc(s.alarmList)))
	s.Handle("POST /api/v1/alarms/{id}/ack", certs.RoleOperator, ScopeAware(http.HandlerFunc(s.alarmAck)))
	s.Handle("GET /api/v1/alarm-settings", certs.RoleAdmin, http.HandlerFunc(s.alarmSettingsGet))
	s.Handle("PUT /api/v1/alarm-settings", certs.RoleAdmin, http.HandlerFunc(s.alarmSettingsPut))
}

// Alarms returns the alarms f selects, newest first, those the token c may
// see only: a scoped token sees the alarms of the devices in its scope.
func (s *Server) Alarms(ctx context.Context, c *certs.TokenClaims, f alarm.Filter) ([]alarm.Alarm, error) {
	scope, err := ScopeFilter(c)
	if err != nil {
		return nil, err
	}
	all, err := alarm.List(ctx, s.cfg.Store, f)
	if err != nil {
		return nil, err
	}
	if !scoped(scope) {
		return all, nil
	}
	visible := map[string]bool{}
	return slices.DeleteFunc(all, func(a alarm.Alarm) bool {
		if a.Device == "" {
			return true
		}
		ok, seen := visible[a.Device]
		if !seen {
			d, err := shadow.Get(ctx, s.cfg.Store, a.Device)
			ok = err == nil && scopeMatch(&scope, &d)
			visible[a.Device] = ok
		}
		return !ok
	}), nil
}

// AckAlarm acknowledges alarm id for the holder of token c, with an audit
// record, and returns the alarm. An alarm the token may not see is not
// found.
func (s *Server) AckAlarm(ctx context.Context, c *certs.TokenClaims, id string) (alarm.Alarm, error) {
	if c == nil || !c.Role.Allows(certs.RoleOperator) {
		return alarm.Alarm{}, fmt.Errorf("%w: acknowledging an alarm needs the operator role", errNoRole)
	}
	rec, err := alarm.Get(ctx, s.cfg.Store, id)
	if err != nil {
		return alarm.Alarm{}, err
	}
	if scope, err := ScopeFilter(c); err != nil {
		return alarm.Alarm{}, err
	} else if scoped(scope) {
		d, err := shadow.Get(ctx, s.cfg.Store, rec.Device)
		if rec.Device == "" || err != nil || !scopeMatch(&scope, &d) {
			return alarm.Alarm{}, fmt.Errorf("%w %s", alarm.ErrNotFound, id)
		}
	}
	a, changed, err := alarm.Ack(ctx, s.cfg.Store, id, c.Subject, s.now())
	if err != nil {
		return alarm.Alarm{}, err
	}
	if changed {
		if err := s.cfg.Store.Audit(ctx, c.Subject, "alarm.ack", alarm.AlarmsTable+"/"+id,
			map[string]string{"type": a.Type, "device": a.Device, "edge": a.Edge}); err != nil {
			return a, err
		}
	}
	return a, nil
}

// alarmList serves GET /api/v1/alarms?state=&type=&device=&edge=.
func (s *Server) alarmList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := alarm.Filter{State: q.Get("state"), Type: q.Get("type"), Device: q.Get("device"), Edge: q.Get("edge")}
	if f.State != "" && !slices.Contains(alarm.States, f.State) {
		badRequest(w, fmt.Sprintf("state %q: want one of %v", f.State, alarm.States))
		return
	}
	if f.Type != "" && !slices.Contains(alarm.Types, f.Type) {
		badRequest(w, fmt.Sprintf("type %q: want one of %v", f.Type, alarm.Types))
		return
	}
	out, err := s.Alarms(r.Context(), Claims(r.Context()), f)
	if err != nil {
		s.deviceError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, AlarmsResponse{Alarms: out})
}

// alarmAck serves POST /api/v1/alarms/{id}/ack.
func (s *Server) alarmAck(w http.ResponseWriter, r *http.Request) {
	a, err := s.AckAlarm(r.Context(), Claims(r.Context()), r.PathValue("id"))
	if err != nil {
		s.deviceError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, a)
}

// alarmSettingsGet serves GET /api/v1/alarm-settings: the settings with
// webhook secrets masked.
func (s *Server) alarmSettingsGet(w http.ResponseWriter, r *http.Request) {
	set, _, err := alarm.LoadSettings(r.Context(), s.cfg.Store)
	if err != nil {
		s.Error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, set.Masked())
}

// alarmSettingsPut serves PUT /api/v1/alarm-settings: the whole settings,
// members left out taking their defaults; a secret sent back masked keeps
// the stored one. The engine applies them at its next check.
func (s *Server) alarmSettingsPut(w http.ResponseWriter, r *http.Request) {
	var in alarm.Settings
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		badBody(w, err, "the body must be the alarm settings as JSON: "+err.Error())
		return
	}
	set, err := alarm.SaveSettings(r.Context(), s.cfg.Store, in)
	if errors.Is(err, alarm.ErrInvalid) {
		badRequest(w, err.Error())
		return
	}
	if err != nil {
		s.Error(w, r, err)
		return
	}
	masked := set.Masked()
	if err := s.Audit(r, "alarm.settings", alarm.SettingsTable+"/"+alarm.SettingsKey, masked); err != nil {
		s.Error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, masked)
}
