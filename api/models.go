package api

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
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
		op{"GET", "/api/v1/models/{name}/series", "viewer", "A model's figures over time from the edges' per-minute summaries and status: {name, class, from, to, step, series: [{version, stage, edge, points: [{t, scored, used, detections, detections_per_hour, faults, max_score, latency_ms, agreement, agreement_live, drift}]}]}, the canary's detections last", []string{"from", "to", "step", "by"}, false},
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
	s.Handle("GET /api/v1/models/{name}/series", certs.RoleViewer, http.HandlerFunc(s.modelSeries))
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

// Series of a model over time (GET /api/v1/models/{name}/series): the
// edges' per-minute model_summary records and their model_status records,
// gathered from /uplink/events into steps.
const (
	// DefaultSeriesWindow is the window of a series query without from.
	DefaultSeriesWindow = 24 * time.Hour
	// MaxSeriesPoints is the most steps a series query may span.
	MaxSeriesPoints = 1440
	// MaxSeriesScan is the most /uplink/events records one series query
	// reads; past it the answer is truncated.
	MaxSeriesScan = 2_000_000
	// seriesLookback is how far before from the status records are read,
	// for the first step's baseline: edges report at least every 5 min.
	// The records are read up to a minute past to: a minute's summary is
	// stamped at the minute's end.
	seriesLookback = 10 * time.Minute
)

// seriesSteps are the steps a query without step picks from: the
// smallest that gives at most 120 points.
var seriesSteps = []time.Duration{time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute,
	30 * time.Minute, time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour}

// StageCanary is the stage of the canary's series: the built-in defaults.
const StageCanary = "canary"

// SeriesQuery is what a series covers.
type SeriesQuery struct {
	From, To time.Time
	// Step is the width of a point, a whole number of minutes (0: picked
	// so that the window holds at most 120).
	Step time.Duration
	// ByEdge gives one series per version and edge instead of one per
	// version over every edge.
	ByEdge bool
}

// SeriesPoint is a version's figures over one step. Counts are sums over
// the step; a figure no record gave in the step is null.
type SeriesPoint struct {
	// T is the start of the step.
	T      time.Time `json:"t"`
	Scored int64     `json:"scored"`
	Used   int64     `json:"used"`
	// Detections in the step, and per hour of the step.
	Detections        int64   `json:"detections"`
	DetectionsPerHour float64 `json:"detections_per_hour"`
	Faults            int64   `json:"faults"`
	MaxScore          float64 `json:"max_score"`
	// LatencyMS is the mean time to answer a reading (weighted by
	// readings scored).
	LatencyMS *float64 `json:"latency_ms"`
	// Agreement is the share of the readings scored in the step on which
	// the version detected as the canary did, from the difference of the
	// edges' status records; AgreementLive likewise with the answer used.
	Agreement     *float64 `json:"agreement"`
	AgreementLive *float64 `json:"agreement_live"`
	// Drift is the largest drift an edge reported in the step.
	Drift *float64 `json:"drift"`
}

// ModelSeries is one version's points (the canary's: Version 0, Stage
// StageCanary, detections only), oldest first, steps without any record
// left out.
type ModelSeries struct {
	Version uint64 `json:"version"`
	// Stage is the version's stage now.
	Stage string `json:"stage"`
	// Edge is set with by=edge.
	Edge   string        `json:"edge,omitempty"`
	Points []SeriesPoint `json:"points"`
}

// ModelSeriesResponse is the answer to GET /api/v1/models/{name}/series.
type ModelSeriesResponse struct {
	Name  string    `json:"name"`
	Class string    `json:"class"`
	From  time.Time `json:"from"`
	To    time.Time `json:"to"`
	// Step is the width of a point in seconds.
	Step   int64         `json:"step"`
	Series []ModelSeries `json:"series"`
	// Truncated says the window held more than MaxSeriesScan records.
	Truncated bool `json:"truncated,omitempty"`
}

// ParseSeriesQuery reads from and to (RFC 3339; to defaults to now, from
// to DefaultSeriesWindow before to), step (a Go duration, whole minutes)
// and by (edge) from a query.
func ParseSeriesQuery(q url.Values, now time.Time) (SeriesQuery, error) {
	sq := SeriesQuery{To: now}
	var err error
	if v := q.Get("to"); v != "" {
		if sq.To, err = time.Parse(time.RFC3339Nano, v); err != nil {
			return sq, fmt.Errorf("to %q: want an RFC 3339 time", v)
		}
	}
	sq.From = sq.To.Add(-DefaultSeriesWindow)
	if v := q.Get("from"); v != "" {
		if sq.From, err = time.Parse(time.RFC3339Nano, v); err != nil {
			return sq, fmt.Errorf("from %q: want an RFC 3339 time", v)
		}
	}
	if v := q.Get("step"); v != "" {
		if sq.Step, err = time.ParseDuration(v); err != nil || sq.Step <= 0 || sq.Step%time.Minute != 0 {
			return sq, fmt.Errorf("step %q: want a whole number of minutes, such as 5m or 1h", v)
		}
	}
	switch q.Get("by") {
	case "":
	case "edge":
		sq.ByEdge = true
	default:
		return sq, fmt.Errorf("by %q: want edge or nothing", q.Get("by"))
	}
	return sq.normalize()
}

// normalize checks the window and picks the step; the window's ends
// become whole steps.
func (q SeriesQuery) normalize() (SeriesQuery, error) {
	if !q.From.Before(q.To) {
		return q, fmt.Errorf("%w: from must be before to", models.ErrMalformed)
	}
	if q.Step == 0 {
		q.Step = SeriesStep(q.To.Sub(q.From))
	}
	q.From = q.From.Truncate(q.Step)
	if n := (q.To.Sub(q.From) + q.Step - 1) / q.Step; n > MaxSeriesPoints {
		return q, fmt.Errorf("%w: %d steps of %s from %s to %s, at most %d", models.ErrMalformed, n, q.Step, q.From.Format(time.RFC3339), q.To.Format(time.RFC3339), MaxSeriesPoints)
	}
	return q, nil
}

// SeriesStep is the step a series query over span takes without one:
// the smallest of seriesSteps that gives at most 120 points.
func SeriesStep(span time.Duration) time.Duration {
	for _, s := range seriesSteps {
		if span <= 120*s {
			return s
		}
	}
	return seriesSteps[len(seriesSteps)-1]
}

// modelSeries serves GET /api/v1/models/{name}/series.
func (s *Server) modelSeries(w http.ResponseWriter, r *http.Request) {
	q, err := ParseSeriesQuery(r.URL.Query(), s.now())
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	out, err := s.ModelSeries(r.Context(), r.PathValue("name"), q)
	if err != nil {
		s.modelError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// ModelSeries returns the series of model name's versions, and of its
// class's canary, over q: from the edges' model_summary and model_status
// records and the canary's detections in /uplink/events of every edge
// topic the node holds.
func (s *Server) ModelSeries(ctx context.Context, name string, q SeriesQuery) (ModelSeriesResponse, error) {
	out, err := s.ModelSeriesOf(ctx, []string{name}, q)
	if err != nil {
		return ModelSeriesResponse{}, err
	}
	return out[0], nil
}

// ModelSeriesOf is ModelSeries of several models at once (in the order
// of names), reading the uplinks once for them all.
func (s *Server) ModelSeriesOf(ctx context.Context, names []string, q SeriesQuery) ([]ModelSeriesResponse, error) {
	q, err := q.normalize()
	if err != nil {
		return nil, err
	}
	reg, err := s.modelRegistry()
	if err != nil {
		return nil, err
	}
	ms := make([]models.Model, len(names))
	inputs := map[string]*seriesInput{}
	for i, name := range names {
		if ms[i], err = reg.Get(ctx, name); err != nil {
			return nil, err
		}
		stages := map[uint64]string{}
		for _, v := range ms[i].Versions {
			stages[v.Manifest.Version] = v.Stage
		}
		inputs[name] = &seriesInput{Class: ms[i].Class, Stages: stages}
	}
	info, err := s.cfg.Store.Stat(ctx, store.UplinkStream)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	budget := MaxSeriesScan
	if err == nil {
		for edge := range s.edgeTopics(ctx) {
			if edge == "" {
				continue
			}
			err := scanRange(ctx, s.cfg.Store.Stream(store.UplinkStream), info.Partitions, edge, q.From.Add(-seriesLookback), q.To.Add(time.Minute), &budget, func(msg *store.Message) {
				switch msg.Headers[anomaly.RecordHeader] {
				case models.RecordSummary, models.RecordStatus:
					if in := inputs[string(msg.Key)]; in != nil {
						in.add(edge, string(msg.Key), msg)
					}
				case anomaly.RecordAnomaly:
					for name, in := range inputs {
						in.add(edge, name, msg)
					}
				}
			})
			if err != nil {
				return nil, err
			}
		}
	}
	out := make([]ModelSeriesResponse, len(names))
	for i, m := range ms {
		out[i] = ModelSeriesResponse{Name: m.Name, Class: m.Class, From: q.From, To: q.To, Step: int64(q.Step / time.Second),
			Series: inputs[names[i]].series(q), Truncated: budget <= 0}
	}
	return out, nil
}

// scanRange calls fn with each message of topic stamped in [from, to),
// partition by partition in offset order, reading at most *budget
// messages (and taking them off it); quarantined ranges are stepped over.
func scanRange(ctx context.Context, st *store.Stream, parts int, topic string, from, to time.Time, budget *int, fn func(*store.Message)) error {
	// A read that starts inside a batch decodes the whole batch: large
	// spans decode each batch about once (the store bounds a read to 4 MiB).
	const chunk = 10_000
	q := RangeQuery{From: from, To: to}
	for p := range max(parts, 1) {
		low, next, err := st.Bounds(ctx, topic, p)
		if err != nil {
			return err
		}
		start, err := firstAtOrAfter(ctx, st, topic, p, low, next, from)
		if err != nil {
			return err
		}
		end, err := firstAtOrAfter(ctx, st, topic, p, start, next, to)
		if err != nil {
			return err
		}
		for off := start; off < end && *budget > 0; {
			hi := min(end, off+chunk)
			msgs, err := readSpan(ctx, st, topic, p, off, hi)
			if err != nil {
				return err
			}
			for i := range msgs {
				*budget--
				if inRange(&msgs[i], q) {
					fn(&msgs[i])
				}
			}
			off = hi
		}
	}
	return nil
}

// seriesInput gathers the records a series is made of: pure, so the
// steps are tested by feeding records.
type seriesInput struct {
	Class  string
	Stages map[uint64]string
	// Summaries, statuses and canary detections as read.
	Summaries []models.SummaryRecord
	Statuses  []seriesStatus
	Canary    []seriesDetection
}

// seriesStatus is one version's state in one status record of an edge.
type seriesStatus struct {
	Edge    string
	Version uint64
	At      time.Time
	State   models.EdgeState
}

// seriesDetection is one detection of the canary.
type seriesDetection struct {
	Edge string
	At   time.Time
}

// add takes the records of model name (and its class's canary
// detections) among the messages of an edge's uplink topic.
func (in *seriesInput) add(edge, name string, msg *store.Message) {
	switch msg.Headers[anomaly.RecordHeader] {
	case models.RecordSummary:
		var r models.SummaryRecord
		if string(msg.Key) != name || json.Unmarshal(msg.Value, &r) != nil || r.Model != name || r.Version == 0 {
			return
		}
		if r.Edge == "" {
			r.Edge = edge
		}
		in.Summaries = append(in.Summaries, r)
	case models.RecordStatus:
		var r models.StatusRecord
		if string(msg.Key) != name || json.Unmarshal(msg.Value, &r) != nil || r.Model != name {
			return
		}
		if r.Edge == "" {
			r.Edge = edge
		}
		for v, st := range r.Versions {
			if n, err := strconv.ParseUint(v, 10, 64); err == nil && n > 0 {
				in.Statuses = append(in.Statuses, seriesStatus{Edge: r.Edge, Version: n, At: r.At, State: st})
			}
		}
	case anomaly.RecordAnomaly:
		if in.Class == "" {
			return
		}
		var d anomaly.Detection
		if json.Unmarshal(msg.Value, &d) != nil || d.Class != in.Class || strings.Contains(d.Detector, "@") {
			return // another class's, or a model's answer
		}
		at := d.At
		if at.IsZero() {
			at = msg.Timestamp
		}
		in.Canary = append(in.Canary, seriesDetection{Edge: edge, At: at})
	}
}

// seriesKey names one series: a version (0: the canary) and, by edge, an
// edge.
type seriesKey struct {
	version uint64
	edge    string
}

// seriesAcc is one step of one series as it is summed.
type seriesAcc struct {
	p                 SeriesPoint
	latency           float64 // latency_us x scored
	agree, agreeLive  float64 // readings agreed, from the status deltas
	compared          float64 // readings scored, from the status deltas
	drift             float64
	hasDrift, counted bool
}

// series sums the records into q's steps: per version (and edge, with
// ByEdge), the canary last; steps without a record are left out.
func (in *seriesInput) series(q SeriesQuery) []ModelSeries {
	acc := map[seriesKey]map[int64]*seriesAcc{}
	step := func(k seriesKey, t time.Time) *seriesAcc {
		if t.Before(q.From) || !t.Before(q.To) {
			return nil
		}
		if !q.ByEdge {
			k.edge = ""
		}
		i := int64(t.Sub(q.From) / q.Step)
		m := acc[k]
		if m == nil {
			m = map[int64]*seriesAcc{}
			acc[k] = m
		}
		a := m[i]
		if a == nil {
			a = &seriesAcc{p: SeriesPoint{T: q.From.Add(time.Duration(i) * q.Step)}}
			m[i] = a
		}
		return a
	}
	for _, r := range in.Summaries {
		a := step(seriesKey{r.Version, r.Edge}, r.From)
		if a == nil {
			continue
		}
		a.counted = true
		a.p.Scored += r.Scored
		a.p.Used += r.Used
		a.p.Detections += r.Detections
		a.p.Faults += r.Faults
		a.p.MaxScore = max(a.p.MaxScore, r.MaxScore)
		a.latency += r.Latency * float64(r.Scored)
	}
	// Agreement from the difference of each edge's successive status
	// records of a version (cumulative since the edge began running it:
	// a count that fell means the edge started again, from zero).
	statuses := slices.Clone(in.Statuses)
	slices.SortStableFunc(statuses, func(a, b seriesStatus) int {
		if c := strings.Compare(a.Edge, b.Edge); c != 0 {
			return c
		}
		if a.Version != b.Version {
			return cmp.Compare(a.Version, b.Version)
		}
		return a.At.Compare(b.At)
	})
	for i, st := range statuses {
		a := step(seriesKey{st.Version, st.Edge}, st.At)
		if a == nil {
			continue
		}
		if st.State.State == models.StateRunning {
			a.drift = max(a.drift, st.State.Drift)
			a.hasDrift = true
		}
		n, agree, live := float64(st.State.Scored), st.State.Agreement*float64(st.State.Scored), st.State.AgreementLive*float64(st.State.Scored)
		if i > 0 && statuses[i-1].Edge == st.Edge && statuses[i-1].Version == st.Version && statuses[i-1].State.Scored <= st.State.Scored {
			prev := statuses[i-1].State
			pn := float64(prev.Scored)
			n, agree, live = n-pn, agree-prev.Agreement*pn, live-prev.AgreementLive*pn
		}
		if n > 0 {
			a.compared += n
			a.agree += agree
			a.agreeLive += live
		}
	}
	for _, d := range in.Canary {
		if a := step(seriesKey{0, d.Edge}, d.At); a != nil {
			a.counted = true
			a.p.Detections++
		}
	}
	keys := slices.Collect(maps.Keys(acc))
	slices.SortFunc(keys, func(a, b seriesKey) int {
		// Versions in order, the canary (0) last.
		if a.version != b.version {
			if a.version == 0 || b.version == 0 {
				return cmp.Compare(b.version, a.version)
			}
			return cmp.Compare(a.version, b.version)
		}
		return strings.Compare(a.edge, b.edge)
	})
	out := []ModelSeries{}
	for _, k := range keys {
		ms := ModelSeries{Version: k.version, Stage: in.Stages[k.version], Edge: k.edge, Points: []SeriesPoint{}}
		if k.version == 0 {
			ms.Stage = StageCanary
		}
		steps := slices.Sorted(maps.Keys(acc[k]))
		for _, i := range steps {
			a := acc[k][i]
			p := a.p
			if !a.counted && !a.hasDrift && a.compared == 0 {
				continue
			}
			end := p.T.Add(q.Step)
			if end.After(q.To) {
				end = q.To
			}
			if h := end.Sub(p.T).Hours(); h > 0 {
				p.DetectionsPerHour = round6(float64(p.Detections) / h)
			}
			if p.Scored > 0 {
				p.LatencyMS = ptr(round6(a.latency / float64(p.Scored) / 1000))
			}
			if a.compared > 0 {
				p.Agreement = ptr(round6(math.Min(1, math.Max(0, a.agree/a.compared))))
				p.AgreementLive = ptr(round6(math.Min(1, math.Max(0, a.agreeLive/a.compared))))
			}
			if a.hasDrift {
				p.Drift = ptr(a.drift)
			}
			ms.Points = append(ms.Points, p)
		}
		if len(ms.Points) > 0 {
			out = append(out, ms)
		}
	}
	return out
}

func round6(f float64) float64 { return math.Round(f*1e6) / 1e6 }

func ptr[T any](v T) *T { return &v }
