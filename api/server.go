package api

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/shadow"
	"github.com/weft-io/weft/store"
)

// Config configures a Server. Store and TokenKey are required; the zero
// value of every other field works.
type Config struct {
	// Store is the node's store. Required.
	Store *store.Store
	// TokenKey verifies API tokens: the public half of the certificate
	// directory's token key (token.pub). Required.
	TokenKey ed25519.PublicKey
	// TokenSigner, the private half (token.key), lets the node issue
	// tokens (POST /api/v1/tokens) and sign-in links with tokens of their
	// own. Nil: issuing is refused (503); revoking works.
	TokenSigner ed25519.PrivateKey
	// Audience is the aud tokens must carry. Default certs.TokenAudience.
	Audience string
	// Gatherer is what /metrics serves. Default prometheus.DefaultGatherer.
	Gatherer prometheus.Gatherer
	// Registerer receives the API's own request metrics
	// (weft_api_requests_total, weft_api_request_duration_seconds). Nil:
	// they are not kept.
	Registerer prometheus.Registerer
	// MaxBodyBytes bounds a request body; a larger one is answered 413.
	// Default 8 MiB.
	MaxBodyBytes int64
	// OIDC, if set, also accepts tokens of an OpenID Connect provider,
	// verified against its JWKS.
	OIDC *OIDC
	// DesiredReadOnly refuses desired-state changes (409 Desired state
	// owned elsewhere). Set it on an edge linked to a core: the core owns
	// desired state and sends it down.
	DesiredReadOnly bool
	// RemoteHistory, if set, fetches the history of a device whose
	// messages the node does not hold from the device's edge (the core
	// sets it).
	RemoteHistory RemoteHistory
	// Links, if set, reports the node's sync links for GET /api/v1/edges
	// and the console.
	Links Links
	// Limits bound the clients' connections and event streams
	// (docs/api.md#limits); the zero value holds the defaults. The Server
	// applies the stream caps; the node builds its http.Server and
	// listener from the rest (Limits.HTTPServer).
	Limits Limits
	// FirmwareKeys is the JSON file of public keys firmware releases must
	// be signed with (certs/firmware-keys.json, docs/firmware.md), read at
	// each publish. Empty: publishing firmware is refused (503); reading
	// releases works.
	FirmwareKeys string
	// AuditRetention is how long the audit volume keeps its records
	// (its TTL), set at New when it differs. Zero: DefaultAuditRetention
	// if the volume has no TTL yet, else the TTL it has (weft volume set
	// changed it); negative: keep records for ever.
	AuditRetention time.Duration
	// Logger receives the server's logs. Nil discards them.
	Logger *slog.Logger
	// Now is the clock tokens are checked against. Default time.Now.
	Now func() time.Time
}

// auditVolume is the volume of store.AuditStream.
const auditVolume = "audit"

// DefaultAuditRetention is the audit volume's TTL when none is set.
const DefaultAuditRetention = 400 * 24 * time.Hour

// DefaultMaxBodyBytes is the default of Config.MaxBodyBytes.
const DefaultMaxBodyBytes = 8 << 20

// Server is a node's HTTP API.
type Server struct {
	cfg     Config
	log     *slog.Logger
	mux     *http.ServeMux
	root    http.Handler
	metrics *metrics
	oidc    *oidcVerifier // nil unless Config.OIDC
	limits  Limits        // Config.Limits with its defaults
	streams *streamSlots  // the open event streams
	// patterns are the routes added, as ServeMux patterns.
	patterns []string
	// summaries caches fleet counts (devices.go).
	summaries *shadow.SummaryCache
	// tokens is the list of issued and revoked tokens (tokens.go).
	tokens *tokenList
	// signinLinks mints console sign-in links (tokens.go).
	signinMu    sync.Mutex
	signinLinks SigninLinks

	// testHookWait, if set, runs just before a blocking read starts to wait.
	testHookWait func()
}

// New checks cfg, applies its defaults and returns a Server with the
// routes of docs/api.md.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("api: no store")
	}
	if len(cfg.TokenKey) != ed25519.PublicKeySize {
		return nil, errors.New("api: no token verification key")
	}
	if cfg.Audience == "" {
		cfg.Audience = certs.TokenAudience
	}
	if cfg.Gatherer == nil {
		cfg.Gatherer = prometheus.DefaultGatherer
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.Limits = cfg.Limits.WithDefaults()
	s := &Server{cfg: cfg, log: cfg.Logger.With("component", "api"), mux: http.NewServeMux(),
		limits: cfg.Limits, streams: newStreamSlots(cfg.Limits), tokens: newTokenList(cfg.Store)}
	if cfg.OIDC != nil {
		v, err := newOIDCVerifier(context.Background(), *cfg.OIDC)
		if err != nil {
			return nil, err
		}
		s.oidc = v
	}
	if cfg.Registerer != nil {
		m, err := newMetrics(cfg.Registerer)
		if err != nil {
			return nil, err
		}
		s.metrics = m
	}
	if err := s.applyAuditRetention(context.Background()); err != nil {
		// The node still serves (a full disk refuses the change): the
		// policy is applied at the next start.
		s.log.Error("audit retention not applied", "err", err)
	}
	s.routes()
	s.root = s.metrics.wrap(http.HandlerFunc(s.serve))
	return s, nil
}

// applyAuditRetention gives the audit volume the TTL of
// Config.AuditRetention (see there), writing nothing when it has it.
func (s *Server) applyAuditRetention(ctx context.Context) error {
	vi, err := s.cfg.Store.Volume(auditVolume)
	if err != nil {
		return fmt.Errorf("api: audit volume: %w", err)
	}
	want := s.cfg.AuditRetention
	switch {
	case want < 0:
		want = 0
	case want == 0 && vi.TTL != 0:
		return nil
	case want == 0:
		want = DefaultAuditRetention
	}
	if vi.TTL == want {
		return nil
	}
	if _, err := s.cfg.Store.ChangeVolume(ctx, auditVolume, store.VolumeChange{TTL: &want}); err != nil {
		return fmt.Errorf("api: audit retention: %w", err)
	}
	s.log.Info("audit retention set", "ttl", want.String())
	return nil
}

func (s *Server) routes() {
	s.handlePublic("GET /healthz", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	}))
	s.handlePublic("GET /readyz", http.HandlerFunc(s.readyz))
	s.handlePublic("GET /metrics", promhttp.HandlerFor(s.cfg.Gatherer, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelError)}))
	s.handlePublic("GET /api/v1/openapi.json", http.HandlerFunc(serveOpenAPI))

	s.Handle("GET /api/v1/streams/{volume}/{rest...}", certs.RoleViewer, http.HandlerFunc(s.streamGet))
	s.Handle("POST /api/v1/streams/{volume}/{rest...}", certs.RoleAdmin, http.HandlerFunc(s.streamPost))
	s.Handle("GET /api/v1/tables/{volume}/{table}", certs.RoleViewer, http.HandlerFunc(s.tableScan))
	s.Handle("GET /api/v1/tables/{volume}/{table}/{key...}", certs.RoleViewer, http.HandlerFunc(s.tableGet))
	s.Handle("GET /api/v1/ls", certs.RoleViewer, http.HandlerFunc(s.list))
	s.Handle("GET /api/v1/ls/{path...}", certs.RoleViewer, http.HandlerFunc(s.list))
	s.Handle("GET /api/v1/volumes", certs.RoleViewer, http.HandlerFunc(s.volumes))
	s.deviceRoutes()
	s.firmwareRoutes()
	s.modelRoutes()
	s.modelExternalRoutes()
	s.alarmRoutes()
	s.tokenRoutes()
	s.pprofRoutes()
}

// readyz answers whether the node should be sent traffic: 200
// {"status":"ready"} while its store is open and takes writes (open, not
// stopped by a failed commit, its disk neither read-only nor below its
// reserve), else 503 Unavailable saying why. A node serves HTTP only once
// its other listeners (gateway, sync) are up, and closes it first when it
// stops, so an answer at all means they are up.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if err := s.cfg.Store.Writable(); err != nil {
		writeProblem(w, ProblemDetails{Status: http.StatusServiceUnavailable, Title: "Unavailable", Detail: "not ready: " + err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// DesiredReadOnly says the node refuses desired-state changes
// (Config.DesiredReadOnly): it follows its core's.
func (s *Server) DesiredReadOnly() bool { return s.cfg.DesiredReadOnly }

// CoreLink is the link of this edge to its core, when the node reports
// its links (Config.Links) and has such a link; ok is false elsewhere.
func (s *Server) CoreLink(ctx context.Context) (l LinkStatus, ok bool) {
	if s.cfg.Links == nil {
		return LinkStatus{}, false
	}
	for _, l := range s.cfg.Links.Links(ctx) {
		if l.Role == certs.CoreNode {
			return l, true
		}
	}
	return LinkStatus{}, false
}

// Handler returns the handler that serves the API.
func (s *Server) Handler() http.Handler { return s.root }

// Handle adds a route (a net/http ServeMux pattern) served by h for tokens
// whose role allows role, as Require does. It panics, as ServeMux does, if
// pattern is invalid or conflicts with another route.
func (s *Server) Handle(pattern string, role certs.Role, h http.Handler) {
	s.handlePublic(pattern, s.Require(role, h))
}

// handlePublic adds a route served by h without authentication of its own.
func (s *Server) handlePublic(pattern string, h http.Handler) {
	s.mux.Handle(pattern, h)
	s.patterns = append(s.patterns, pattern)
}

// Audit records that the token holder of r did action on the object at
// path, in the store's audit stream. Routes added with Handle call it for
// each change they make.
func (s *Server) Audit(r *http.Request, action, path string, detail any) error {
	sub := ""
	if c := Claims(r.Context()); c != nil {
		sub = c.Subject
	}
	return s.cfg.Store.Audit(r.Context(), sub, action, path, detail)
}

func (s *Server) now() time.Time { return s.cfg.Now() }

// serve dispatches to the mux, answering requests that match no route
// (404, 405) with a problem document rather than the mux's plain text.
func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if _, pattern := s.mux.Handler(r); pattern == "" {
		w = &problemWriter{ResponseWriter: w}
	}
	s.mux.ServeHTTP(w, r)
}

// problemWriter replaces an error response of the mux by a problem
// document, keeping its status and headers (such as Allow).
type problemWriter struct {
	http.ResponseWriter
	replaced bool
}

func (p *problemWriter) WriteHeader(code int) {
	if code < 400 {
		p.ResponseWriter.WriteHeader(code)
		return
	}
	p.replaced = true
	title, detail := "Not found", "no such route"
	if code == http.StatusMethodNotAllowed {
		title, detail = "Method not allowed", "the route does not allow this method"
	} else if code != http.StatusNotFound {
		title, detail = http.StatusText(code), ""
	}
	Problem(p.ResponseWriter, code, title, detail)
}

func (p *problemWriter) Write(b []byte) (int, error) {
	if p.replaced {
		return len(b), nil
	}
	return p.ResponseWriter.Write(b)
}

func (p *problemWriter) Unwrap() http.ResponseWriter { return p.ResponseWriter }

// writeJSON writes v as a JSON response.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		Problem(w, http.StatusInternalServerError, "Internal error", "cannot encode the response")
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}
