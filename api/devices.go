package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/shadow"
	"github.com/weft-io/weft/store"
)

// Device errors, answered by deviceError.
var (
	// ErrScopeUnenforced is a token scope the device routes cannot
	// enforce (site: shadows do not say where a device is).
	ErrScopeUnenforced = errors.New("api: token scope cannot be enforced on devices")
	// ErrDesiredReadOnly is a desired-state change on a node whose desired
	// state is owned by another (Config.DesiredReadOnly).
	ErrDesiredReadOnly = errors.New("api: desired state is owned by the core")
)

// DeviceSummary is one device of a device list.
type DeviceSummary struct {
	ID        string    `json:"id"`
	Class     string    `json:"class"`
	Edge      string    `json:"edge"`
	Site      string    `json:"site,omitempty"`
	Connected bool      `json:"connected"`
	LastSeen  time.Time `json:"last_seen,omitzero"`
	InSync    bool      `json:"in_sync"`
	Anomalous bool      `json:"anomalous"`
	Score     *float64  `json:"score,omitempty"`
	Firmware  string    `json:"firmware,omitempty"`
	Version   uint64    `json:"version"`
}

// SummaryOf returns the list entry of a shadow.
func SummaryOf(d *shadow.Doc) DeviceSummary {
	return DeviceSummary{
		ID: d.ID, Class: d.Class, Edge: d.Edge, Site: d.Site, Connected: d.Connected, LastSeen: d.LastSeen,
		InSync: d.InSync, Anomalous: d.Anomalous(0), Score: d.Score, Firmware: d.Firmware, Version: d.Version,
	}
}

// DevicesResponse is the answer to GET /api/v1/devices. Next is the after
// of the following page, empty on the last one.
type DevicesResponse struct {
	Devices []DeviceSummary `json:"devices"`
	Next    string          `json:"next"`
}

// deviceRoutes adds the device, fleet and audit routes.
func (s *Server) deviceRoutes() {
	s.summaries = shadow.NewSummaryCache(s.cfg.Store, 0, s.cfg.Now)
	s.Handle("GET /api/v1/devices", certs.RoleViewer, ScopeAware(http.HandlerFunc(s.deviceList)))
	s.Handle("GET /api/v1/devices/{id}", certs.RoleViewer, ScopeAware(http.HandlerFunc(s.deviceGet)))
	s.Handle("PATCH /api/v1/devices/{id}/desired", certs.RoleOperator, ScopeAware(http.HandlerFunc(s.desiredPatch)))
	s.Handle("POST /api/v1/devices/{id}/commands", certs.RoleOperator, ScopeAware(http.HandlerFunc(s.commandPost)))
	s.Handle("GET /api/v1/devices/{id}/history", certs.RoleViewer, ScopeAware(http.HandlerFunc(s.deviceHistory)))
	s.Handle("GET /api/v1/devices/{id}/events", certs.RoleViewer, ScopeAware(http.HandlerFunc(s.deviceEvents)))
	s.Handle("GET /api/v1/fleet", certs.RoleViewer, ScopeAware(http.HandlerFunc(s.fleet)))
	s.Handle("GET /api/v1/edges", certs.RoleViewer, ScopeAware(http.HandlerFunc(s.edges)))
	s.Handle("GET /api/v1/anomalies", certs.RoleViewer, ScopeAware(http.HandlerFunc(s.anomalies)))
	s.Handle("GET /api/v1/audit", certs.RoleAdmin, http.HandlerFunc(s.auditList))
	s.Handle("GET /api/v1/streams/{volume}/{stream}/tail", certs.RoleViewer, http.HandlerFunc(s.tail))
	s.rolloutRoutes()
}

// ScopeFilter returns the filter that holds a token's scope: the devices
// the token may see and change. A scope key shadows cannot be checked
// against is ErrScopeUnenforced.
func ScopeFilter(c *certs.TokenClaims) (shadow.Filter, error) {
	var f shadow.Filter
	if c == nil {
		return f, nil
	}
	for k, v := range c.Scope {
		switch k {
		case "class":
			f.Class = v
		case "edge":
			f.Edge = v
		case "site":
			f.Site = v
		case "device":
			f.Device = v
		default:
			return f, fmt.Errorf("%w: %s=%s", ErrScopeUnenforced, k, v)
		}
	}
	return f, nil
}

// InScope reports whether a token's scope allows the device d.
func InScope(c *certs.TokenClaims, d *shadow.Doc) bool {
	f, err := ScopeFilter(c)
	if err != nil {
		return false
	}
	return scopeMatch(&f, d)
}

// scoped reports whether a scope filter restricts anything.
func scoped(f shadow.Filter) bool {
	return f.Class != "" || f.Edge != "" || f.Site != "" || f.Device != ""
}

func scopeMatch(f *shadow.Filter, d *shadow.Doc) bool {
	return (f.Class == "" || d.Class == f.Class) && (f.Edge == "" || d.Edge == f.Edge) &&
		(f.Site == "" || d.Site == f.Site) && (f.Device == "" || d.ID == f.Device)
}

// narrow adds the scope to a query's filter; false when they disagree, so
// that nothing can match.
func narrow(q, scope shadow.Filter) (shadow.Filter, bool) {
	for _, p := range []struct {
		q *string
		s string
	}{{&q.Class, scope.Class}, {&q.Edge, scope.Edge}, {&q.Site, scope.Site}, {&q.Device, scope.Device}} {
		if p.s == "" {
			continue
		}
		if *p.q != "" && *p.q != p.s {
			return q, false
		}
		*p.q = p.s
	}
	return q, true
}

// DeviceQuery is a device list request: a filter, and where the page
// starts.
type DeviceQuery struct {
	Filter shadow.Filter
	After  string
	Limit  int
}

// Devices returns the page of devices that q asks for and the token c may
// see.
func (s *Server) Devices(ctx context.Context, c *certs.TokenClaims, q DeviceQuery) (shadow.Page, error) {
	scope, err := ScopeFilter(c)
	if err != nil {
		return shadow.Page{}, err
	}
	f, ok := narrow(q.Filter, scope)
	if !ok {
		return shadow.Page{Devices: []shadow.Doc{}}, nil
	}
	return shadow.List(ctx, s.cfg.Store, f, q.After, q.Limit)
}

// Device returns the shadow of device id, store.ErrNotFound if it has none
// or the token c may not see it.
func (s *Server) Device(ctx context.Context, c *certs.TokenClaims, id string) (shadow.Doc, error) {
	if _, err := ScopeFilter(c); err != nil {
		return shadow.Doc{}, err
	}
	d, err := shadow.Get(ctx, s.cfg.Store, id)
	if err != nil {
		return shadow.Doc{}, err
	}
	if !InScope(c, &d) {
		return shadow.Doc{}, fmt.Errorf("%w: device %s", store.ErrNotFound, id)
	}
	return d, nil
}

// Fleet returns the counts of the devices the token c may see, at most a
// few seconds old.
func (s *Server) Fleet(ctx context.Context, c *certs.TokenClaims) (shadow.Summary, error) {
	scope, err := ScopeFilter(c)
	if err != nil {
		return shadow.Summary{}, err
	}
	return s.summaries.Get(ctx, scope)
}

// SetDesired applies a merge patch to the desired state of device id for
// the holder of token c, as PATCH .../desired does: ifVersion, if not
// nil, is the version the shadow must have (store.ErrVersion if not); a
// device outside the token's scope is store.ErrNotFound. The audit record
// naming c's subject is appended with the delta message. An error
// wrapping shadow.ErrDeltaNotSent comes with the saved shadow.
func (s *Server) SetDesired(ctx context.Context, c *certs.TokenClaims, id string, patch json.RawMessage, ifVersion *uint64) (shadow.Doc, error) {
	if s.cfg.DesiredReadOnly {
		return shadow.Doc{}, ErrDesiredReadOnly
	}
	if c == nil || !c.Role.Allows(certs.RoleOperator) {
		return shadow.Doc{}, errNoRole
	}
	scope, err := ScopeFilter(c)
	if err != nil {
		return shadow.Doc{}, err
	}
	isScoped := scoped(scope)
	opt := shadow.SetOptions{
		Now: s.now(),
		Check: func(cur shadow.Doc, exists bool) error {
			if isScoped && (!exists || !scopeMatch(&scope, &cur)) {
				return fmt.Errorf("%w: device %s", store.ErrNotFound, id)
			}
			return nil
		},
		Also: func(saved shadow.Doc) []store.AppendRequest {
			rec, err := s.auditFor(c.Subject, "shadow.desired", store.ShadowsTable+"/"+id, desiredDetail(patch, saved.Version))
			if err != nil {
				return nil
			}
			return []store.AppendRequest{rec}
		},
	}
	if ifVersion != nil {
		opt.Conds = []store.Cond{store.IfVersion(*ifVersion)}
	}
	doc, err := shadow.SetDesired(ctx, s.cfg.Store, id, patch, opt)
	if errors.Is(err, shadow.ErrDeltaNotSent) {
		// The change stands: record it on its own.
		detail := desiredDetail(patch, doc.Version)
		detail["delta_sent"] = false
		if aerr := s.cfg.Store.Audit(context.WithoutCancel(ctx), c.Subject, "shadow.desired", store.ShadowsTable+"/"+id, detail); aerr != nil {
			RequestLogger(ctx, s.log).Error("audit record not written", "device", id, "err", aerr)
		}
	}
	return doc, err
}

// errNoRole is a change asked for with a token whose role does not allow
// it (Require stops such requests before; this guards other callers).
var errNoRole = errors.New("api: token role does not allow this change")

func desiredDetail(patch json.RawMessage, version uint64) map[string]any {
	return map[string]any{"patch": patch, "version": version}
}

// auditFor returns the request that appends the record of action by
// subject, in the form store.Store.Audit writes.
func (s *Server) auditFor(subject, action, path string, detail any) (store.AppendRequest, error) {
	rec := map[string]any{
		"ts":     s.now().UTC(),
		"action": action,
		"object": path,
		"node":   s.cfg.Store.Name(),
		"detail": map[string]any{"subject": subject, "detail": detail},
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return store.AppendRequest{}, fmt.Errorf("api: audit record: %w", err)
	}
	return store.AppendRequest{Path: store.AuditStream, Topic: s.cfg.Store.Name(), Partition: 0, Messages: []store.Message{{Value: b}}}, nil
}

// deviceError answers the errors of the device routes: their own first,
// then the error table.
func (s *Server) deviceError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, ErrScopeUnenforced):
		forbidden(w, "scope", err.Error())
	case errors.Is(err, errNoRole):
		forbidden(w, "role", err.Error())
	case errors.Is(err, ErrDesiredReadOnly):
		Problem(w, http.StatusConflict, "Desired state owned elsewhere", "this node follows the desired state its core sets; set it there")
	case errors.Is(err, shadow.ErrDeltaNotSent):
		RequestLogger(r.Context(), s.log).Error("delta not sent", "path", r.URL.Path, "err", err)
		Problem(w, http.StatusServiceUnavailable, "Delta not sent", err.Error()+"; the desired state is saved: PATCH {} to send the delta again")
	default:
		s.Error(w, r, err)
	}
}

// boolParam reads an optional true/false query parameter.
func boolParam(q url.Values, names ...string) (*bool, error) {
	for _, name := range names {
		v := q.Get(name)
		if v == "" {
			continue
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, fmt.Errorf("%s %q: want true or false", name, v)
		}
		return &b, nil
	}
	return nil, nil
}

// ParseDeviceQuery reads the filter and paging parameters of a device
// list: class, edge, prefix, connected, in_sync, anomaly, after, limit.
func ParseDeviceQuery(q url.Values) (DeviceQuery, error) {
	dq := DeviceQuery{After: q.Get("after"), Filter: shadow.Filter{Class: q.Get("class"), Edge: q.Get("edge"), Site: q.Get("site"), Prefix: q.Get("prefix")}}
	var err error
	if dq.Limit, err = intParam(q, "limit", DefaultLimit, 1, 1000); err != nil {
		return dq, err
	}
	if dq.Filter.Connected, err = boolParam(q, "connected"); err != nil {
		return dq, err
	}
	if dq.Filter.InSync, err = boolParam(q, "in_sync", "in-sync"); err != nil {
		return dq, err
	}
	if v := q.Get("anomaly"); v != "" {
		b, berr := strconv.ParseBool(v)
		if berr != nil {
			// A threshold: anomalous from this score on.
			t, ferr := strconv.ParseFloat(v, 64)
			if ferr != nil || t <= 0 || t > 1e9 {
				return dq, fmt.Errorf("anomaly %q: want true, false or a score threshold above 0", v)
			}
			b, dq.Filter.Threshold = true, t
		}
		dq.Filter.Anomalous = &b
	}
	return dq, nil
}

// deviceList serves GET /api/v1/devices.
func (s *Server) deviceList(w http.ResponseWriter, r *http.Request) {
	q, err := ParseDeviceQuery(r.URL.Query())
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	page, err := s.Devices(r.Context(), Claims(r.Context()), q)
	if err != nil {
		s.deviceError(w, r, err)
		return
	}
	resp := DevicesResponse{Devices: make([]DeviceSummary, len(page.Devices)), Next: page.Next}
	for i := range page.Devices {
		resp.Devices[i] = SummaryOf(&page.Devices[i])
	}
	writeJSON(w, http.StatusOK, resp)
}

// deviceGet serves GET /api/v1/devices/{id}, with the version as ETag.
func (s *Server) deviceGet(w http.ResponseWriter, r *http.Request) {
	d, err := s.Device(r.Context(), Claims(r.Context()), r.PathValue("id"))
	if err != nil {
		s.deviceError(w, r, err)
		return
	}
	etag := `"` + strconv.FormatUint(d.Version, 10) + `"`
	w.Header().Set("ETag", etag)
	if etagMatch(r.Header.Get("If-None-Match"), etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

// ParseIfMatch reads an If-Match header naming one shadow version: "12"
// or 12. Empty is no condition (nil).
func ParseIfMatch(h string) (*uint64, error) {
	h = strings.TrimSpace(h)
	if h == "" {
		return nil, nil
	}
	v, err := strconv.ParseUint(strings.Trim(h, `"`), 10, 64)
	if err != nil || strings.Count(h, `"`)%2 != 0 {
		return nil, fmt.Errorf("If-Match %q: want one version, such as \"12\"", h)
	}
	return &v, nil
}

// desiredPatch serves PATCH /api/v1/devices/{id}/desired.
func (s *Server) desiredPatch(w http.ResponseWriter, r *http.Request) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || (mt != "application/merge-patch+json" && mt != "application/json") {
		Problem(w, http.StatusUnsupportedMediaType, "Unsupported media type", "send the patch as application/merge-patch+json")
		return
	}
	ifVersion, err := ParseIfMatch(r.Header.Get("If-Match"))
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		badBody(w, err, "cannot read the body")
		return
	}
	d, err := s.SetDesired(r.Context(), Claims(r.Context()), r.PathValue("id"), body, ifVersion)
	if err != nil {
		s.deviceError(w, r, err)
		return
	}
	w.Header().Set("ETag", `"`+strconv.FormatUint(d.Version, 10)+`"`)
	writeJSON(w, http.StatusOK, d)
}

// fleet serves GET /api/v1/fleet.
func (s *Server) fleet(w http.ResponseWriter, r *http.Request) {
	sum, err := s.Fleet(r.Context(), Claims(r.Context()))
	if err != nil {
		s.deviceError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, sum)
}
