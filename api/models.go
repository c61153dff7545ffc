package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/weft-io/weft/anomaly"
	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/models"
	"github.com/weft-io/weft/shadow"
	"github.com/weft-io/weft/store"
)

// Training bounds: what one POST /api/v1/models/train reads at most.
const (
	MaxTrainDevices  = 1000
	MaxTrainReadings = 500_000
)

func init() {
	operations = append(operations,
		op{"GET", "/api/v1/models", "viewer", "Models: each name's class and versions with their stage and the edges' state of each", nil, false},
		op{"POST", "/api/v1/models/train", "operator", "Train a model on the class's readings from..to and store it, signed, as the next version: {name, class, from, to, kind, channels}", nil, true},
		op{"GET", "/api/v1/models/{name}", "viewer", "A model: {name, class, versions: [{version, stage, edges: {edge: {state, scored, agreement, drift}}, manifest}], trained}", nil, false},
		op{"GET", "/api/v1/models/{name}/{version}/manifest", "viewer", "A version's signed manifest (COSE_Sign1)", nil, false},
		op{"GET", "/api/v1/models/{name}/{version}/params", "viewer", "A version's parameters file (JSON)", nil, false},
		op{"POST", "/api/v1/models/{name}/{version}/publish", "operator", "Release a trained version as a candidate", nil, false},
		op{"POST", "/api/v1/models/{name}/{version}/promote", "operator", "Make a version live (the live one is retired)", nil, false},
		op{"POST", "/api/v1/models/{name}/{version}/retire", "operator", "Retire a version", nil, false},
		op{"POST", "/api/v1/models/{name}/rollback", "operator", "Retire the live version and make the previous live one live again", nil, false},
	)
}

// modelRoutes adds the model registry's routes (docs/api.md#models). Every
// node serves the reads (an edge, of its mirror of /models); training
// needs the core's model key.
func (s *Server) modelRoutes() {
	s.Handle("GET /api/v1/models", certs.RoleViewer, http.HandlerFunc(s.modelList))
	s.Handle("POST /api/v1/models/train", certs.RoleOperator, http.HandlerFunc(s.modelTrain))
	s.Handle("GET /api/v1/models/{name}", certs.RoleViewer, http.HandlerFunc(s.modelGet))
	s.Handle("GET /api/v1/models/{name}/{version}/manifest", certs.RoleViewer, http.HandlerFunc(s.modelFile(models.ManifestFile, models.MaxManifestSize, "application/cose; cose-type=cose-sign1")))
	s.Handle("GET /api/v1/models/{name}/{version}/params", certs.RoleViewer, http.HandlerFunc(s.modelFile(models.ParamsName, models.MaxParamsSize, "application/json")))
	for _, a := range []string{models.ActionPublish, models.ActionPromote, models.ActionRetire} {
		s.Handle("POST /api/v1/models/{name}/{version}/"+a, certs.RoleOperator, http.HandlerFunc(s.modelChange(a)))
	}
	s.Handle("POST /api/v1/models/{name}/rollback", certs.RoleOperator, http.HandlerFunc(s.modelChange(models.ActionRollback)))
}

// modelKeyMu serializes loading (and, the first time, making) the model
// key.
var modelKeyMu sync.Mutex

// modelRegistry is the registry over the node's store, for reads and
// stage changes.
func (s *Server) modelRegistry() (*models.Registry, error) {
	return &models.Registry{Store: s.cfg.Store, Now: s.cfg.Now}, nil
}

// modelTrainer is the registry with the model key of the node's
// certificate directory (the directory of Config.FirmwareKeys, which only
// a core sets): <certs>/model.key, made on first use. Nodes without it
// read models but train none.
func (s *Server) modelTrainer() (*models.Registry, error) {
	r, _ := s.modelRegistry()
	if s.cfg.FirmwareKeys == "" {
		return r, nil
	}
	modelKeyMu.Lock()
	defer modelKeyMu.Unlock()
	key, err := models.LoadOrCreateKey(filepath.Dir(s.cfg.FirmwareKeys))
	if err != nil {
		return nil, err
	}
	r.Key = key
	return r, nil
}

// ModelVersion is a version as the API gives it.
type ModelVersion struct {
	Version uint64 `json:"version"`
	// Stage is candidate, live or retired ("" in Trained).
	Stage string `json:"stage"`
	// Edges maps an edge's name to its state of the version.
	Edges    map[string]models.EdgeState `json:"edges"`
	Manifest models.Manifest             `json:"manifest"`
}

// ModelResponse is the answer to GET /api/v1/models/{name}.
type ModelResponse struct {
	Name  string `json:"name"`
	Class string `json:"class"`
	// Versions are the published versions, oldest first.
	Versions []ModelVersion `json:"versions"`
	// Trained are the versions trained but not published.
	Trained []ModelVersion `json:"trained"`
	// Previous is the version a rollback makes live again (0: none).
	Previous uint64 `json:"previous,omitempty"`
}

// ModelsResponse is the answer to GET /api/v1/models.
type ModelsResponse struct {
	Models []ModelResponse `json:"models"`
}

// ModelTrainRequest is the body of POST /api/v1/models/train.
type ModelTrainRequest struct {
	Name  string    `json:"name"`
	Class string    `json:"class"`
	From  time.Time `json:"from"`
	To    time.Time `json:"to"`
	// Kind is "channel" (default) or "vector".
	Kind string `json:"kind,omitempty"`
	// Channels limits the model to these channels (default: those in at
	// least half of the readings).
	Channels []string `json:"channels,omitempty"`
}

// ModelTrainResponse is the answer to POST /api/v1/models/train.
type ModelTrainResponse struct {
	Manifest models.Manifest `json:"manifest"`
	Report   models.Report   `json:"report"`
	// Truncated says the class held more than MaxTrainDevices devices or
	// MaxTrainReadings readings in the window: the model saw the first.
	Truncated bool `json:"truncated,omitempty"`
}

// modelError answers the registry's errors; others go to the error table.
func (s *Server) modelError(w http.ResponseWriter, r *http.Request, err error) {
	var refused *models.RefusedError
	switch {
	case errors.As(err, &refused):
		writeProblem(w, ProblemDetails{Status: http.StatusUnprocessableEntity, Title: "Model refused",
			Detail: refused.Verdict.String(), Reason: string(refused.Verdict.Reason)})
	case errors.Is(err, models.ErrNoKey):
		Problem(w, http.StatusServiceUnavailable, "Model key not configured", "this node trains no models: only a core holds the model key")
	case errors.Is(err, models.ErrNotFound):
		Problem(w, http.StatusNotFound, "Not found", err.Error())
	case errors.Is(err, models.ErrStage), errors.Is(err, models.ErrClass):
		Problem(w, http.StatusConflict, "Model stage conflict", err.Error())
	case errors.Is(err, models.ErrNoData):
		Problem(w, http.StatusUnprocessableEntity, "No training data", "the class has no numeric telemetry in the window")
	case errors.Is(err, models.ErrMalformed):
		badRequest(w, err.Error())
	default:
		s.Error(w, r, err)
	}
}

// Models returns every model with the edges' states.
func (s *Server) Models(ctx context.Context) ([]ModelResponse, error) {
	reg, err := s.modelRegistry()
	if err != nil {
		return nil, err
	}
	list, err := reg.List(ctx)
	if err != nil {
		return nil, err
	}
	out := []ModelResponse{}
	for _, m := range list {
		mr, err := s.modelResponse(ctx, m)
		if err != nil {
			return nil, err
		}
		out = append(out, mr)
	}
	return out, nil
}

// Model returns one model with the edges' states.
func (s *Server) Model(ctx context.Context, name string) (ModelResponse, error) {
	reg, err := s.modelRegistry()
	if err != nil {
		return ModelResponse{}, err
	}
	m, err := reg.Get(ctx, name)
	if err != nil {
		return ModelResponse{}, err
	}
	return s.modelResponse(ctx, m)
}

func (s *Server) modelResponse(ctx context.Context, m models.Model) (ModelResponse, error) {
	states, err := s.edgeModelStates(ctx, m.Name)
	if err != nil {
		return ModelResponse{}, err
	}
	out := ModelResponse{Name: m.Name, Class: m.Class, Versions: []ModelVersion{}, Trained: []ModelVersion{}, Previous: m.Previous}
	for _, v := range m.Versions {
		mv := ModelVersion{Version: v.Manifest.Version, Stage: v.Stage, Manifest: v.Manifest, Edges: map[string]models.EdgeState{}}
		key := strconv.FormatUint(v.Manifest.Version, 10)
		for edge, rec := range states {
			if st, ok := rec.Versions[key]; ok {
				mv.Edges[edge] = st
			}
		}
		if v.Stage == "" {
			out.Trained = append(out.Trained, mv)
		} else {
			out.Versions = append(out.Versions, mv)
		}
	}
	return out, nil
}

// edgeModelStates returns each edge's latest status record of the model:
// from /uplink/events, the edges' topics (this node's own included).
func (s *Server) edgeModelStates(ctx context.Context, name string) (map[string]models.StatusRecord, error) {
	info, err := s.cfg.Store.Stat(ctx, store.UplinkStream)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	names := s.edgeTopics(ctx)
	out := map[string]models.StatusRecord{}
	q := RangeQuery{Latest: true, Limit: 1, To: s.now().Add(24 * time.Hour)}
	for edge := range names {
		if edge == "" {
			continue
		}
		msgs, _, err := ReadRange(ctx, s.cfg.Store.Stream(store.UplinkStream), info.Partitions, edge, q, func(m *store.Message) bool {
			return m.Headers[anomaly.RecordHeader] == models.RecordStatus && string(m.Key) == name
		})
		if err != nil {
			return nil, err
		}
		if len(msgs) == 0 {
			continue
		}
		var rec models.StatusRecord
		if json.Unmarshal(msgs[len(msgs)-1].Value, &rec) == nil && rec.Model == name {
			out[edge] = rec
		}
	}
	return out, nil
}

// edgeTopics are the names of the edges whose /uplink/events topics this
// node may hold: its own, its fleet's edges and its linked edges.
func (s *Server) edgeTopics(ctx context.Context) map[string]bool {
	names := map[string]bool{s.cfg.Store.Name(): true}
	sum, err := s.Fleet(ctx, nil)
	if err == nil {
		for _, e := range sum.Edges {
			names[e.Name] = true
		}
	}
	if s.cfg.Links != nil {
		for _, l := range s.cfg.Links.Links(ctx) {
			if l.Role == "" || l.Role == certs.EdgeNode {
				names[l.Peer] = true
			}
		}
	}
	return names
}

// modelList serves GET /api/v1/models.
func (s *Server) modelList(w http.ResponseWriter, r *http.Request) {
	list, err := s.Models(r.Context())
	if err != nil {
		s.modelError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ModelsResponse{Models: list})
}

// modelGet serves GET /api/v1/models/{name}.
func (s *Server) modelGet(w http.ResponseWriter, r *http.Request) {
	m, err := s.Model(r.Context(), r.PathValue("name"))
	if err != nil {
		s.modelError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, m)
}

// modelFile serves one file of a version as stored.
func (s *Server) modelFile(file string, limit int64, contentType string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := models.ParseVersion(r.PathValue("version"))
		if err != nil {
			badRequest(w, err.Error())
			return
		}
		reg, err := s.modelRegistry()
		if err != nil {
			s.modelError(w, r, err)
			return
		}
		b, err := reg.ReadFile(r.Context(), r.PathValue("name"), v, file, limit)
		if err != nil {
			s.modelError(w, r, err)
			return
		}
		w.Header().Set("Content-Type", contentType)
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.Write(b)
	}
}

// modelChange serves the stage changes.
func (s *Server) modelChange(action string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		var v uint64
		if action != models.ActionRollback {
			var err error
			if v, err = models.ParseVersion(r.PathValue("version")); err != nil {
				badRequest(w, err.Error())
				return
			}
		}
		mr, err := s.ChangeModel(r.Context(), Claims(r.Context()), name, action, v)
		if err != nil {
			s.modelError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, mr)
	}
}

// Errors of ChangeModel, for callers that do not import package models.
var (
	// ErrModelStage: the version's stage does not allow the change.
	ErrModelStage = models.ErrStage
	// ErrModelNotFound: no such model or version.
	ErrModelNotFound = models.ErrNotFound
)

// ChangeModel changes the stage of version v of model name (action one of
// models.ActionPublish, ActionPromote, ActionRetire, ActionRollback, which
// takes no version) for token c, an operator, and audits it.
func (s *Server) ChangeModel(ctx context.Context, c *certs.TokenClaims, name, action string, v uint64) (ModelResponse, error) {
	if c == nil || !c.Role.Allows(certs.RoleOperator) {
		return ModelResponse{}, fmt.Errorf("%w: changing a model's stage needs the operator role", errNoRole)
	}
	switch action {
	case models.ActionPublish, models.ActionPromote, models.ActionRetire, models.ActionRollback:
	default:
		return ModelResponse{}, fmt.Errorf("%w: unknown action %q", models.ErrStage, action)
	}
	reg, err := s.modelRegistry()
	if err != nil {
		return ModelResponse{}, err
	}
	m, err := reg.Change(ctx, name, action, v)
	if err != nil {
		return ModelResponse{}, err
	}
	if err := s.cfg.Store.Audit(ctx, c.Subject, "model."+action, "/"+models.Volume+"/"+name, map[string]any{"version": v}); err != nil {
		return ModelResponse{}, err
	}
	return s.modelResponse(ctx, m)
}

// modelTrain serves POST /api/v1/models/train: it reads the telemetry of
// the class's devices (those the token may see) in the window, through
// the history the node holds or fetches from the devices' edges, trains
// on it and stores the model unpublished.
func (s *Server) modelTrain(w http.ResponseWriter, r *http.Request) {
	var in ModelTrainRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		badBody(w, err, "the body must be {name, class, from, to, kind, channels}: "+err.Error())
		return
	}
	if in.To.IsZero() {
		in.To = s.now()
	}
	if !models.ValidName(in.Name) || !models.ValidName(in.Class) || !in.From.Before(in.To) {
		badRequest(w, "want a name and a class (no '/' or '@') and from before to")
		return
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
	readings, truncated, err := s.classReadings(r.Context(), Claims(r.Context()), in.Class, in.From, in.To)
	if err != nil {
		s.modelError(w, r, err)
		return
	}
	m, rep, err := reg.Train(r.Context(), models.TrainRequest{Name: in.Name, Class: in.Class,
		TrainConfig: models.TrainConfig{Kind: in.Kind, Channels: in.Channels}}, readings)
	if err != nil {
		s.modelError(w, r, err)
		return
	}
	if err := s.Audit(r, "model.train", models.VersionDir(m.Name, m.Version), map[string]any{"class": m.Class,
		"from": in.From, "to": in.To, "devices": m.Training.Devices, "readings": m.Training.Readings}); err != nil {
		s.Error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ModelTrainResponse{Manifest: m, Report: rep, Truncated: truncated})
}

// classReadings reads the numeric telemetry of the class's devices in
// [from, to), at most MaxTrainDevices devices and MaxTrainReadings
// readings (truncated says some were left).
func (s *Server) classReadings(ctx context.Context, c *certs.TokenClaims, class string, from, to time.Time) (out []models.Reading, truncated bool, err error) {
	out, truncated, err = s.classHistory(ctx, c, class, from, to)
	if err != nil || truncated {
		return out, truncated, err
	}
	return s.decoyReadings(ctx, c, class, from, to, out)
}

// decoyReadings adds to out the readings of the class's devices the edges'
// decoys archived in /uplink/events (models.InputRecord) in [from, to),
// but those already in out (the same device and time).
func (s *Server) decoyReadings(ctx context.Context, c *certs.TokenClaims, class string, from, to time.Time, out []models.Reading) ([]models.Reading, bool, error) {
	info, err := s.cfg.Store.Stat(ctx, store.UplinkStream)
	if errors.Is(err, store.ErrNotFound) {
		return out, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	type key struct {
		device string
		at     int64
	}
	seen := make(map[key]bool, len(out))
	for _, r := range out {
		seen[key{r.Device, r.At.UnixNano()}] = true
	}
	allowed := map[string]bool{}
	may := func(device string) bool {
		ok, known := allowed[device]
		if !known {
			_, err := s.Device(ctx, c, device)
			ok = err == nil
			allowed[device] = ok
		}
		return ok
	}
	for edge := range s.edgeTopics(ctx) {
		q := RangeQuery{From: from, To: to, Limit: MaxLimit}
		for {
			msgs, more, err := ReadRange(ctx, s.cfg.Store.Stream(store.UplinkStream), info.Partitions, edge, q, func(m *store.Message) bool {
				return m.Headers[anomaly.RecordHeader] == models.RecordInput
			})
			if err != nil {
				return nil, false, err
			}
			for _, m := range msgs {
				var in models.InputRecord
				if json.Unmarshal(m.Value, &in) != nil || in.Class != class || len(in.Values) == 0 || !may(in.Device) {
					continue
				}
				k := key{in.Device, in.At.UnixNano()}
				if seen[k] {
					continue
				}
				seen[k] = true
				out = append(out, models.Reading{Device: in.Device, At: in.At, Values: in.Values})
				if len(out) >= MaxTrainReadings {
					return out, true, nil
				}
			}
			if !more || len(msgs) == 0 {
				break
			}
			q.From = msgs[len(msgs)-1].Timestamp.Add(time.Nanosecond)
		}
	}
	return out, false, nil
}

// classHistory reads the class's devices' histories (classReadings).
func (s *Server) classHistory(ctx context.Context, c *certs.TokenClaims, class string, from, to time.Time) (out []models.Reading, truncated bool, err error) {
	after := ""
	devices := 0
	for {
		page, err := s.Devices(ctx, c, DeviceQuery{Filter: shadow.Filter{Class: class}, After: after, Limit: 500})
		if err != nil {
			return nil, false, err
		}
		for _, d := range page.Devices {
			if devices == MaxTrainDevices || len(out) >= MaxTrainReadings {
				return out, true, nil
			}
			devices++
			q := RangeQuery{From: from, To: to, Limit: MaxLimit}
			for {
				h, err := s.DeviceHistory(ctx, c, d.ID, q)
				if err != nil {
					return nil, false, err
				}
				for _, m := range h.Messages {
					if vals := models.Values(d.ID, m.Headers[headerMQTTTopic], m.Value); len(vals) > 0 {
						out = append(out, models.Reading{Device: d.ID, At: m.Timestamp, Values: vals})
					}
				}
				if !h.More || len(h.Messages) == 0 || len(out) >= MaxTrainReadings {
					truncated = truncated || (h.More && len(out) >= MaxTrainReadings)
					break
				}
				q.From = h.Messages[len(h.Messages)-1].Timestamp.Add(time.Nanosecond)
			}
		}
		if page.Next == "" {
			return out, truncated, nil
		}
		after = page.Next
	}
}
