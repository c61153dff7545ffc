package console

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/weft-io/weft/alarm"
	"github.com/weft-io/weft/api"
	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/store"
)

// This file holds the alarms page: the node's alarms with filters by
// state, type and device, an Acknowledge button for operators, and the
// parts other pages load with static/alarms.js: the count of active alarms
// in the header (?part=count) and a device's alarms on its page
// (?part=device&device=ID).

func init() { pageNames = append(pageNames, "alarms") }

// alarmRoutes adds the alarms page and its button.
func (s *Server) alarmRoutes() {
	s.mux.Handle("GET /alarms", s.session(certs.RoleViewer, s.alarmsPage))
	s.mux.Handle("POST /alarms/{id}/ack", sameOrigin(s.session(certs.RoleViewer, s.checkCSRF(s.alarmAckForm))))
}

// alarmNotices are the messages of the alarms page after its button.
var alarmNotices = map[string]*notice{
	"ack":       {"ok", "Alarm acknowledged."},
	"forbidden": {"error", "Your role does not allow acknowledging alarms."},
	"notfound":  {"error", "No such alarm."},
	"failed":    {"error", "The alarm was not acknowledged; the node's log has the details."},
}

// alarmRow is an alarm as the page shows it.
type alarmRow struct {
	alarm.Alarm
	Fields []kv
}

func (s *Server) alarmsPage(w http.ResponseWriter, r *http.Request) {
	sess := sessionOf(r.Context())
	q := r.URL.Query()
	type data struct {
		State, Type, Device string
		States, Types       []string
		Rows                []alarmRow
		Active              int
		CanAck              bool
		Back                string
		Err                 string
	}
	d := data{State: q.Get("state"), Type: q.Get("type"), Device: strings.TrimSpace(q.Get("device")),
		States: alarm.States, Types: alarm.Types, CanAck: sess.claims.Role.Allows(certs.RoleOperator)}
	if q.Get("part") == "count" {
		d.State, d.Type, d.Device = alarm.Active, "", ""
	}
	if !slices.Contains(alarm.States, d.State) {
		d.State = ""
	}
	if !slices.Contains(alarm.Types, d.Type) {
		d.Type = ""
	}
	d.Back = "/alarms?" + url.Values{"state": {d.State}, "type": {d.Type}, "device": {d.Device}}.Encode()
	if q.Get("part") == "device" {
		d.Back = "/devices/" + url.PathEscape(d.Device)
	}
	list, err := s.api.Alarms(r.Context(), sess.claims, alarm.Filter{State: d.State, Type: d.Type, Device: d.Device})
	if err != nil {
		d.Err = problemText(err)
	}
	for _, a := range list {
		row := alarmRow{Alarm: a}
		var det map[string]any
		if json.Unmarshal(a.Details, &det) == nil {
			row.Fields = flatten("", det, nil)
		}
		d.Rows = append(d.Rows, row)
		if a.State == alarm.Active {
			d.Active++
		}
	}
	v := s.view(r, "Alarms", "alarms", d)
	if n := alarmNotices[q.Get("notice")]; n != nil {
		v.Notice = n
	}
	v.Events = "/live/fleet"
	s.renderPart(w, r, "alarms", v, "alarms.live", "alarms.count", "alarms.device")
}

// alarmAckForm takes an alarm's Acknowledge button and goes back to the
// page it was pressed on.
func (s *Server) alarmAckForm(w http.ResponseWriter, r *http.Request) {
	sess := sessionOf(r.Context())
	next := localPath(r.PostForm.Get("next"))
	back := func(code string) {
		sep := "?"
		if strings.Contains(next, "?") {
			sep = "&"
		}
		http.Redirect(w, r, next+sep+"notice="+code, http.StatusSeeOther)
	}
	if !sess.claims.Role.Allows(certs.RoleOperator) {
		back("forbidden")
		return
	}
	_, err := s.api.AckAlarm(r.Context(), sess.claims, r.PathValue("id"))
	switch {
	case err == nil:
		back("ack")
	case errors.Is(err, store.ErrNotFound):
		back("notfound")
	case errors.Is(err, api.ErrScopeUnenforced):
		back("forbidden")
	default:
		s.log.Error("alarm not acknowledged", "alarm", r.PathValue("id"), "err", err)
		back("failed")
	}
}
