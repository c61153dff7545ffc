package console

import (
	"errors"
	"net/http"
	"net/url"

	"github.com/weft-io/weft/api"
	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/firmware"
	"github.com/weft-io/weft/store"
)

// This file holds the firmware page: the node's releases, and its
// rollouts with a progress bar per wave, counts by state, the halt reason,
// and pause, resume and abort buttons for operators.

func init() { pageNames = append(pageNames, "firmware") }

// firmwareRoutes adds the firmware page and its rollout buttons.
func (s *Server) firmwareRoutes() {
	s.mux.Handle("GET /firmware", s.session(certs.RoleViewer, s.firmwarePage))
	s.mux.Handle("POST /firmware/rollouts/{id}/{action}", sameOrigin(s.session(certs.RoleViewer, s.checkCSRF(s.rolloutForm))))
}

// rolloutNotices are the messages of the firmware page after a button, by
// code.
var rolloutNotices = map[string]*notice{
	"pause":     {"ok", "Rollout paused: nothing more is sent until it is resumed."},
	"resume":    {"ok", "Rollout resumed."},
	"abort":     {"ok", "Rollout aborted: devices that had not started are canceled."},
	"state":     {"error", "The rollout's state does not allow that any more; the page shows it as it is now."},
	"forbidden": {"error", "Your role does not allow changing rollouts."},
	"notfound":  {"error", "No such rollout."},
	"failed":    {"error", "The change failed; the node's log has the details."},
}

// waveBar is one wave's progress bar: the widths, out of 100, of its
// succeeded, failed (failed, timed out, rejected), in-progress and
// canceled devices.
type waveBar struct {
	firmware.WaveSummary
	Number                       int
	Done, Failed, Busy, Canceled int
	// FailedAt, BusyAt and CanceledAt are where those segments start.
	FailedAt, BusyAt, CanceledAt int
}

func barOf(i int, w firmware.WaveSummary) waveBar {
	b := waveBar{WaveSummary: w, Number: i + 1}
	total := w.Counts.Total()
	if total == 0 {
		return b
	}
	width := func(n int) int { return n * 100 / total }
	b.Done = width(w.Counts.Succeeded)
	b.Failed = width(w.Counts.Failures())
	b.Busy = width(w.Counts.Downloading + w.Counts.Installing)
	b.Canceled = width(w.Counts.Canceled)
	b.FailedAt = b.Done
	b.BusyAt = b.FailedAt + b.Failed
	b.CanceledAt = b.BusyAt + b.Busy
	return b
}

// rolloutView is a rollout as the page shows it.
type rolloutView struct {
	firmware.Summary
	Bars []waveBar
	// CanPause, CanResume and CanAbort say which buttons apply.
	CanPause, CanResume, CanAbort bool
}

func viewOf(r firmware.Summary) rolloutView {
	v := rolloutView{Summary: r, CanPause: r.State == firmware.Running,
		CanResume: r.State == firmware.Paused || r.State == firmware.Halted,
		CanAbort:  r.State != firmware.Done && r.State != firmware.Aborted}
	for i, w := range r.Waves {
		v.Bars = append(v.Bars, barOf(i, w))
	}
	return v
}

// firmwarePage serves GET /firmware.
func (s *Server) firmwarePage(w http.ResponseWriter, r *http.Request) {
	type data struct {
		Releases []firmware.Release
		Rollouts []rolloutView
		Err      string
	}
	var d data
	if sess := sessionOf(r.Context()); len(sess.claims.Scope) > 0 {
		d.Err = "Your token's scope cannot be applied to rollouts: they are shown to unscoped tokens only."
		v := s.view(r, "Firmware", "firmware", d)
		s.renderView(w, r, http.StatusForbidden, "firmware", "layout", v)
		return
	}
	var errs []error
	rels, err := (&firmware.Registry{Store: s.st}).List(r.Context())
	if err != nil {
		errs = append(errs, err)
	}
	d.Releases = rels
	rollouts, err := s.api.Rollouts(r.Context())
	if err != nil {
		errs = append(errs, err)
	}
	for _, ro := range rollouts {
		d.Rollouts = append(d.Rollouts, viewOf(ro))
	}
	if err := errors.Join(errs...); err != nil {
		s.log.Error("firmware page", "err", err)
		d.Err = problemText(err)
	}
	v := s.view(r, "Firmware", "firmware", d)
	v.Notice = rolloutNotices[r.URL.Query().Get("notice")]
	s.renderView(w, r, http.StatusOK, "firmware", "layout", v)
}

// rolloutForm takes a rollout's pause, resume or abort button.
func (s *Server) rolloutForm(w http.ResponseWriter, r *http.Request) {
	sess := sessionOf(r.Context())
	action := r.PathValue("action")
	back := func(code string) {
		http.Redirect(w, r, "/firmware?notice="+url.QueryEscape(code)+"#rollout-"+url.QueryEscape(r.PathValue("id")), http.StatusSeeOther)
	}
	if action != "pause" && action != "resume" && action != "abort" {
		http.NotFound(w, r)
		return
	}
	if !sess.claims.Role.Allows(certs.RoleOperator) {
		back("forbidden")
		return
	}
	_, err := s.api.ControlRollout(r.Context(), sess.claims, r.PathValue("id"), action)
	switch {
	case err == nil:
		back(action)
	case errors.Is(err, firmware.ErrRolloutState):
		back("state")
	case errors.Is(err, store.ErrNotFound):
		back("notfound")
	case errors.Is(err, api.ErrScopeUnenforced):
		back("forbidden")
	default:
		s.log.Error("rollout not changed", "rollout", r.PathValue("id"), "action", action, "err", err)
		back("failed")
	}
}
