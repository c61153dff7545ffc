package api

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/models"
)

// External models and the rendezvous's class schedules
// (docs/models.md#external-models, #schedules).

func init() {
	operations = append(operations,
		op{"POST", "/api/v1/models/external", "operator", "Add an external model: the body is its executable; name, class, channel (repeat), arg (repeat) and threshold in the query. Stored signed as the next version, unpublished: {manifest}", []string{"name", "class", "channel", "arg", "threshold"}, false},
		op{"GET", "/api/v1/schedules", "viewer", "The rendezvous's schedule of every class: {classes: {class: {deadline_ms, models: [{name, deadline_ms}]}}, updated}", nil, false},
		op{"PUT", "/api/v1/schedules/{class}", "operator", "Set a class's schedule, {deadline_ms, models: [{name, deadline_ms}]} (empty: remove it); answers every class's", nil, false},
	)
}

// modelExternalRoutes adds the routes of external models and schedules.
func (s *Server) modelExternalRoutes() {
	s.Handle("POST /api/v1/models/external", certs.RoleOperator, http.HandlerFunc(s.modelAddExternal))
	s.Handle("GET /api/v1/schedules", certs.RoleViewer, http.HandlerFunc(s.schedulesGet))
	s.Handle("PUT /api/v1/schedules/{class}", certs.RoleOperator, http.HandlerFunc(s.schedulePut))
}

// modelAddExternal serves POST /api/v1/models/external.
func (s *Server) modelAddExternal(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	req := models.ExternalRequest{Name: q.Get("name"), Class: q.Get("class"), Channels: q["channel"],
		Params: models.ExternalParams{Args: q["arg"]}}
	if t := q.Get("threshold"); t != "" {
		f, err := strconv.ParseFloat(t, 64)
		if err != nil {
			badRequest(w, "threshold: want a number within [0, 1]")
			return
		}
		req.Params.Threshold = f
	}
	reg, err := s.modelTrainer()
	if err != nil {
		s.modelError(w, r, err)
		return
	}
	if reg.Key == nil {
		s.modelError(w, r, models.ErrNoKey)
		return
	}
	m, err := reg.AddExternal(r.Context(), req, http.MaxBytesReader(w, r.Body, models.MaxExecSize+1))
	if err != nil {
		s.modelError(w, r, err)
		return
	}
	if err := s.Audit(r, "model.add", models.VersionDir(m.Name, m.Version), map[string]any{"class": m.Class,
		"kind": m.Kind, "exec_sha256": m.ExecDigest(), "exec_size": m.ExecSize}); err != nil {
		s.Error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ModelTrainResponse{Manifest: m})
}

// schedulesGet serves GET /api/v1/schedules.
func (s *Server) schedulesGet(w http.ResponseWriter, r *http.Request) {
	reg, _ := s.modelRegistry()
	all, err := reg.Schedules(r.Context())
	if err != nil {
		s.modelError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, all)
}

// schedulePut serves PUT /api/v1/schedules/{class}.
func (s *Server) schedulePut(w http.ResponseWriter, r *http.Request) {
	var cs models.ClassSchedule
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cs); err != nil {
		badBody(w, err, "the body must be {deadline_ms, models: [{name, deadline_ms}]}: "+err.Error())
		return
	}
	reg, _ := s.modelRegistry()
	all, err := reg.SetSchedule(r.Context(), r.PathValue("class"), cs)
	if err != nil {
		s.modelError(w, r, err)
		return
	}
	if err := s.Audit(r, "model.schedule", "/"+models.Volume+"/"+models.SchedulesFile, map[string]any{"class": r.PathValue("class"), "schedule": cs}); err != nil {
		s.Error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, all)
}
