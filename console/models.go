package console

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/weft-io/weft/api"
	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/store"
)

// This file holds the models page: per device class, its live models,
// candidates and the canary (the built-in defaults), each version with
// its agreement, latency, detections and drift over the edges that run
// it, the same over time in charts (modelcharts.go), and the promote,
// retire and rollback buttons for operators.

func init() {
	pageNames = append(pageNames, "models")
	funcs["rowOf"] = rowOf
}

// modelRow is what the template modelrow gets.
type modelRow struct {
	V       versionView
	Role    string
	Session *sessionView
}

func rowOf(v versionView, role string, sess *sessionView) modelRow {
	return modelRow{V: v, Role: role, Session: sess}
}

// modelRoutes adds the models page and its buttons.
func (s *Server) modelRoutes() {
	s.mux.Handle("GET /models", s.session(certs.RoleViewer, s.modelsPage))
	s.mux.Handle("POST /models/{name}/{action}", sameOrigin(s.session(certs.RoleViewer, s.checkCSRF(s.modelForm))))
	s.mux.Handle("GET /live/models", s.session(certs.RoleViewer, s.liveModels))
}

// Pacing of the models page's event stream: at most an event every half
// step of its charts (?window=), from modelsEvery (the last hour: a point
// a minute) to modelsAtMost (a day or more: the edges' status comes at
// least every 5 min). Each refresh reads the window's uplink records.
const (
	modelsEvery  = 15 * time.Second
	modelsAtMost = 5 * time.Minute
)

// modelsPace is the pacing of the stream of a page charting window.
func modelsPace(window string) time.Duration {
	return min(max(api.SeriesStep(windowOf(window).D)/2, modelsEvery), modelsAtMost)
}

// liveModels serves GET /live/models?window=: an event "models" when
// the node's /uplink/events (where the edges' model summaries and status
// arrive) took records, at most one every modelsPace(window).
func (s *Server) liveModels(w http.ResponseWriter, r *http.Request) {
	pace := modelsPace(r.URL.Query().Get("window"))
	// Watch before the stream opens, and again before each event, so
	// that no record after the page's last fetch goes unannounced.
	uplink := s.st.Stream(store.UplinkStream)
	changed := uplink.Changed()
	ev, ok := s.api.StartSSEFor(w, r, sessionOf(r.Context()).claims)
	if !ok {
		return
	}
	ctx := r.Context()
	for {
		if !s.waitOrKeepAlive(ctx, ev, changed) {
			return
		}
		changed = uplink.Changed()
		if ev.Event("", "models", []byte("{}")) != nil {
			return
		}
		if !sleep(ctx, pace) {
			return
		}
	}
}

// modelNotices are the messages of the models page after a button, by
// code.
var modelNotices = map[string]*notice{
	"promote":   {"ok", "Version promoted: it answers for its class once the edges have it; the one live before is retired."},
	"retire":    {"ok", "Version retired: the edges stop running it."},
	"rollback":  {"ok", "Rolled back: the previous live version is live again."},
	"stage":     {"error", "The version's stage does not allow that any more; the page shows it as it is now."},
	"forbidden": {"error", "Your role does not allow changing models."},
	"notfound":  {"error", "No such model or version."},
	"failed":    {"error", "The change failed; the node's log has the details."},
}

// versionView is one version as the page shows it: its figures over the
// edges reporting on it.
type versionView struct {
	Name    string
	Version uint64
	Stage   string
	Kind    string
	// Running counts the edges running it, of Edges reporting on it.
	Running, Edges int
	Refused        int
	Scored, Used   int64
	Faults         int64
	// Figures, formatted: agreement with the canary and with the answer
	// used (weighted by readings scored), mean latency, detections per
	// hour (all edges), the largest drift.
	Agreement, AgreementLive, Latency, PerHour, Drift string
	Drifting                                          bool
	CanPromote, CanRetire                             bool
}

// classView is a class's models.
type classView struct {
	Class      string
	Live       []versionView
	Candidates []versionView
	// Names are the class's models, by name.
	Names []string
	// Charts are its versions' figures over the page's window, one per
	// metric; ChartsErr says why there are none.
	Charts    []metricChart
	ChartsErr string
	// Rollback lists the models of the class with a previous live version.
	Rollback []rollbackView
}

type rollbackView struct {
	Name     string
	Previous uint64
}

// driftAbove is the drift the page marks (alarm model_drift's default).
const driftAbove = 0.3

func versionOf(name string, v api.ModelVersion) versionView {
	out := versionView{Name: name, Version: v.Version, Stage: v.Stage, Kind: v.Manifest.Kind, Edges: len(v.Edges),
		CanPromote: v.Stage == "candidate" || v.Stage == "retired", CanRetire: v.Stage == "candidate" || v.Stage == "live"}
	var agree, agreeLive, lat, perHour, drift float64
	for _, e := range v.Edges {
		switch e.State {
		case "running":
			out.Running++
		case "refused":
			out.Refused++
		}
		out.Scored += e.Scored
		out.Used += e.Used
		out.Faults += e.Faults
		agree += e.Agreement * float64(e.Scored)
		agreeLive += e.AgreementLive * float64(e.Scored)
		lat += e.LatencyMicros * float64(e.Scored)
		perHour += e.DetectionsPerHour
		drift = max(drift, e.Drift)
	}
	dash := "—"
	out.Agreement, out.AgreementLive, out.Latency = dash, dash, dash
	if out.Scored > 0 {
		n := float64(out.Scored)
		out.Agreement = strconv.FormatFloat(100*agree/n, 'f', 1, 64) + "%"
		if v.Stage == "candidate" || out.Used < out.Scored {
			out.AgreementLive = strconv.FormatFloat(100*agreeLive/n, 'f', 1, 64) + "%"
		}
		out.Latency = strconv.FormatFloat(lat/n, 'f', 1, 64) + " µs"
	}
	out.PerHour = strconv.FormatFloat(perHour, 'f', 2, 64)
	out.Drift = strconv.FormatFloat(drift, 'f', 3, 64)
	out.Drifting = drift > driftAbove
	return out
}

// classesOf groups the models by class, in class order.
func classesOf(list []api.ModelResponse) []classView {
	by := map[string]*classView{}
	for _, m := range list {
		c := by[m.Class]
		if c == nil {
			c = &classView{Class: m.Class}
			by[m.Class] = c
		}
		c.Names = append(c.Names, m.Name)
		for _, v := range m.Versions {
			switch v.Stage {
			case "live":
				c.Live = append(c.Live, versionOf(m.Name, v))
			case "candidate":
				c.Candidates = append(c.Candidates, versionOf(m.Name, v))
			}
		}
		if m.Previous != 0 {
			c.Rollback = append(c.Rollback, rollbackView{Name: m.Name, Previous: m.Previous})
		}
	}
	out := make([]classView, 0, len(by))
	for _, c := range by {
		out = append(out, *c)
	}
	slices.SortFunc(out, func(a, b classView) int { return compareStrings(a.Class, b.Class) })
	return out
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// modelsPage serves GET /models: ?class= shows one class, ?window= the
// span of its charts (1h, 6h, 24h or 7d, ending now); ?part=live is the
// classes alone, which the page fetches again on each event of
// /live/models.
func (s *Server) modelsPage(w http.ResponseWriter, r *http.Request) {
	type data struct {
		Classes []classView
		// All are every class with models, for the picker.
		All     []string
		Class   string
		Window  string
		Windows []windowView
		Missing []string
		Err     string
	}
	q := r.URL.Query()
	d := data{Class: q.Get("class"), Window: windowOf(q.Get("window")).Name, Windows: seriesWindows}
	list, missing, err := s.listModels(r)
	d.Missing = missing
	if err != nil {
		s.log.Error("models page", "err", err)
		d.Err = problemText(err)
	}
	var names []string
	for _, c := range classesOf(list) {
		d.All = append(d.All, c.Class)
		if d.Class == "" || c.Class == d.Class {
			d.Classes = append(d.Classes, c)
			names = append(names, c.Names...)
		}
	}
	// The charts of every class shown, from one read of the uplinks.
	to := s.cfg.Now()
	from := to.Add(-windowOf(d.Window).D)
	res, err := s.api.ModelSeriesOf(r.Context(), names, api.SeriesQuery{From: from, To: to})
	if err != nil {
		s.log.Error("models page: series", "err", err)
	}
	byName := map[string]api.ModelSeriesResponse{}
	for _, m := range res {
		byName[m.Name] = m
	}
	for i := range d.Classes {
		c := &d.Classes[i]
		if err != nil {
			c.ChartsErr = problemText(err)
			continue
		}
		var rs []api.ModelSeriesResponse
		for _, n := range c.Names {
			rs = append(rs, byName[n])
		}
		c.Charts = drawMetrics(classSeries(rs), from, to)
	}
	v := s.view(r, "Models", "models", d)
	v.Notice = modelNotices[q.Get("notice")]
	v.Events = "/live/models?window=" + d.Window
	s.renderPart(w, r, "models", v, "models.live")
}

// modelForm takes a version's promote or retire button, or a model's
// rollback.
func (s *Server) modelForm(w http.ResponseWriter, r *http.Request) {
	sess := sessionOf(r.Context())
	name, action := r.PathValue("name"), r.PathValue("action")
	back := func(code string) {
		http.Redirect(w, r, "/models?notice="+url.QueryEscape(code)+"#model-"+url.QueryEscape(name), http.StatusSeeOther)
	}
	if action != "promote" && action != "retire" && action != "rollback" {
		http.NotFound(w, r)
		return
	}
	if !sess.claims.Role.Allows(certs.RoleOperator) {
		back("forbidden")
		return
	}
	var v uint64
	if action != "rollback" {
		var err error
		if v, err = strconv.ParseUint(r.PostFormValue("version"), 10, 64); err != nil || v == 0 {
			back("notfound")
			return
		}
	}
	_, err := s.api.ChangeModel(r.Context(), sess.claims, name, action, v)
	switch {
	case err == nil:
		back(action)
	case errors.Is(err, api.ErrModelStage):
		back("stage")
	case errors.Is(err, api.ErrModelNotFound):
		back("notfound")
	default:
		s.log.Error("model not changed", "model", name, "action", action, "err", err)
		back("failed")
	}
}
