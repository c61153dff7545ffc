package console

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/weft-io/weft/api"
	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/cluster"
	"github.com/weft-io/weft/store"
)

// CookieName is the name of the session cookie, which holds the signed-in
// API token.
const CookieName = "weft_session"

// Config configures a console. API is required; the zero value of every
// other field works.
type Config struct {
	// API is the node's API server. The console verifies tokens with it,
	// reads and changes devices through it (so roles, scopes and audit
	// are the API's), and hands it the requests under /api/, /healthz,
	// /readyz, /metrics and /debug/pprof/. Required.
	API *api.Server
	// Title is the product name in the header. Default "Weft".
	Title string
	// CodeTTL is how long a one-time sign-in code stays valid (it is also
	// never valid past its token's expiry). Default 24 hours.
	CodeTTL time.Duration
	// CertsDir is the node's certificate directory, named in the command
	// the sign-in page suggests for making a token (weft token create
	// --dir CertsDir). Empty: the page names it CERTS for the reader to
	// fill in.
	CertsDir string
	// SecureCookie marks the session cookie Secure even on plain HTTP
	// requests (behind a TLS-terminating proxy). Requests that came over
	// TLS always get a Secure cookie.
	SecureCookie bool
	// Logger receives the console's logs. Nil discards them.
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Cluster, if set (a node of a core cluster), lists the cluster's
	// nodes for the edges page: their addresses, state and edges.
	Cluster func(ctx context.Context) ([]cluster.NodeState, error)
	// Lists, if set (a node of a core cluster), answers the lists of
	// devices, edges and models the devices, edges, fleet and models
	// pages show, in place of this node's own store: it is served
	// GET /api/v1/devices, /api/v1/edges and /api/v1/models with the
	// visitor's token and answers as the API does, naming in
	// missing_nodes the nodes whose part is missing (the pages say so).
	// Nil: the pages list this node's store.
	Lists http.Handler
}

// Server is the console: an http.Handler.
type Server struct {
	cfg     Config
	api     *api.Server
	st      *store.Store
	log     *slog.Logger
	mux     *http.ServeMux
	root    http.Handler
	pages   *templates
	csrfKey []byte
	static  http.Handler

	mu    sync.Mutex
	codes map[string]oneTimeCode
}

type oneTimeCode struct {
	token   string
	expires time.Time
}

// New checks cfg and returns a console.
func New(cfg Config) (*Server, error) {
	if cfg.API == nil {
		return nil, errors.New("console: no API server")
	}
	if cfg.Title == "" {
		cfg.Title = "Weft"
	}
	if cfg.CodeTTL <= 0 {
		cfg.CodeTTL = 24 * time.Hour
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	pages, err := parseTemplates()
	if err != nil {
		return nil, err
	}
	key := make([]byte, 32)
	rand.Read(key)
	staticFS, err := fs.Sub(assets, "static")
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:     cfg,
		api:     cfg.API,
		st:      cfg.API.Store(),
		log:     cfg.Logger.With("component", "console"),
		mux:     http.NewServeMux(),
		pages:   pages,
		csrfKey: key,
		static:  http.StripPrefix("/static/", http.FileServerFS(staticFS)),
		codes:   map[string]oneTimeCode{},
	}
	s.routes()
	s.root = securityHeaders(s.mux)
	// POST /api/v1/signin-links mints this console's one-time links.
	cfg.API.SetSigninLinks(func(token string) (string, error) {
		code, err := s.OneTimeCode(token)
		if err != nil {
			return "", err
		}
		return "/signin?code=" + url.QueryEscape(code), nil
	})
	return s, nil
}

func (s *Server) routes() {
	apiHandler := s.api.Handler()
	s.mux.Handle("/api/", apiHandler)
	s.mux.Handle("GET /healthz", apiHandler)
	s.mux.Handle("GET /readyz", apiHandler)
	s.mux.Handle("GET /metrics", apiHandler)
	s.mux.Handle("GET /debug/pprof/", apiHandler)

	s.mux.Handle("GET /static/", s.static)
	s.mux.HandleFunc("GET /signin", s.signinPage)
	s.mux.Handle("POST /signin", sameOrigin(http.HandlerFunc(s.signin)))
	s.mux.Handle("POST /signout", sameOrigin(s.session(certs.RoleViewer, s.checkCSRF(s.signout))))

	s.mux.Handle("GET /{$}", s.session(certs.RoleViewer, s.overview))
	s.mux.Handle("GET /devices", s.session(certs.RoleViewer, s.deviceList))
	s.mux.Handle("GET /devices/{id}", s.session(certs.RoleViewer, s.devicePage))
	s.mux.Handle("POST /devices/{id}/desired", sameOrigin(s.session(certs.RoleViewer, s.checkCSRF(s.desiredForm))))
	s.mux.Handle("GET /edges", s.session(certs.RoleViewer, s.edgesPage))
	s.mux.Handle("GET /anomalies", s.session(certs.RoleViewer, s.anomaliesPage))
	s.mux.Handle("GET /audit", s.session(certs.RoleViewer, s.auditPage))
	s.firmwareRoutes()
	s.modelRoutes()
	s.alarmRoutes()
	s.mux.Handle("GET /live/fleet", s.session(certs.RoleViewer, s.liveFleet))
	s.mux.Handle("GET /live/devices/{id}", s.session(certs.RoleViewer, s.liveDevice))
}

// ServeHTTP serves the console, and the API beside it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.root.ServeHTTP(w, r) }

// securityHeaders sets the headers every page carries: scripts and styles
// from the console itself only, no framing, no MIME sniffing. API answers
// keep their own.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/api/") {
			hd := w.Header()
			hd.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
			hd.Set("X-Frame-Options", "DENY")
			hd.Set("X-Content-Type-Options", "nosniff")
			hd.Set("Referrer-Policy", "same-origin")
		}
		h.ServeHTTP(w, r)
	})
}

// sameOrigin refuses cross-origin POSTs (by Sec-Fetch-Site, or Origin
// against Host), the first line of defence against CSRF; the form's CSRF
// token is the second.
func sameOrigin(h http.Handler) http.Handler {
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "cross-origin request refused", http.StatusForbidden)
	}))
	return cop.Handler(h)
}

// sessionKey holds a request's session in its context.
type sessionKey struct{}

// session is a signed-in visitor.
type session struct {
	token  string
	claims *certs.TokenClaims
	csrf   string
}

func sessionOf(ctx context.Context) *session {
	s, _ := ctx.Value(sessionKey{}).(*session)
	return s
}

// session runs h for requests whose cookie holds a valid token allowing
// role. Others are sent to the sign-in page (pages) or answered 401
// (parts of pages and event streams, which scripts fetch).
func (s *Server) session(role certs.Role, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie(CookieName)
		var claims *certs.TokenClaims
		if err == nil {
			claims, err = s.api.Verify(c.Value)
		}
		if err != nil {
			if r.Method == http.MethodGet && r.URL.Query().Get("part") == "" && !strings.HasPrefix(r.URL.Path, "/live/") {
				http.Redirect(w, r, "/signin?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			http.Error(w, "sign in first", http.StatusUnauthorized)
			return
		}
		if !claims.Role.Allows(role) {
			http.Error(w, "your role does not allow this", http.StatusForbidden)
			return
		}
		sess := &session{token: c.Value, claims: claims, csrf: s.csrfToken(c.Value)}
		h(w, r.WithContext(context.WithValue(r.Context(), sessionKey{}, sess)))
	})
}

// csrfToken is the CSRF token of the session whose cookie holds token:
// a MAC of the token under a key of this process, so it needs no storage
// and cannot be made by another site.
func (s *Server) csrfToken(token string) string {
	m := hmac.New(sha256.New, s.csrfKey)
	m.Write([]byte("csrf\x00" + token))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// checkCSRF runs h only for forms carrying the session's CSRF token.
func (s *Server) checkCSRF(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sess := sessionOf(r.Context())
		r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
		if err := r.ParseForm(); err != nil {
			http.Error(w, "bad form", http.StatusBadRequest)
			return
		}
		got := r.PostForm.Get("csrf")
		if sess == nil || subtle.ConstantTimeCompare([]byte(got), []byte(sess.csrf)) != 1 {
			http.Error(w, "the form is out of date or not from this console; reload the page and try again", http.StatusForbidden)
			return
		}
		h(w, r)
	}
}

// OneTimeCode mints a code that signs in once, as the holder of token,
// through the link /signin?code=<code> (the one `weft up` prints). Opening
// the link only shows a page with a Sign in button; the button's POST uses
// the code up, so link previews and prefetchers that open the link do not.
// The code is valid for Config.CodeTTL, never past the token's expiry, and
// only in this process. The token must be valid.
func (s *Server) OneTimeCode(token string) (string, error) {
	claims, err := s.api.Verify(token)
	if err != nil {
		return "", fmt.Errorf("console: sign-in token: %w", err)
	}
	now := s.cfg.Now()
	exp := now.Add(s.cfg.CodeTTL)
	if !claims.ExpiresAt.IsZero() && claims.ExpiresAt.Before(exp) {
		exp = claims.ExpiresAt
	}
	code := rand.Text()
	s.mu.Lock()
	defer s.mu.Unlock()
	for c, oc := range s.codes {
		if !now.Before(oc.expires) {
			delete(s.codes, c)
		}
	}
	s.codes[code] = oneTimeCode{token: token, expires: exp}
	return code, nil
}

// peek returns the token of a one-time code that is still valid, and
// keeps the code.
func (s *Server) peek(code string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	oc, ok := s.codes[code]
	if !ok || !s.cfg.Now().Before(oc.expires) {
		return "", false
	}
	return oc.token, true
}

// redeem returns the token of a one-time code and forgets the code.
func (s *Server) redeem(code string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	oc, ok := s.codes[code]
	if !ok {
		return "", false
	}
	delete(s.codes, code)
	return oc.token, s.cfg.Now().Before(oc.expires)
}

// setSession keeps token in the session cookie until the token expires.
func (s *Server) setSession(w http.ResponseWriter, r *http.Request, token string, claims *certs.TokenClaims) {
	http.SetCookie(w, &http.Cookie{
		Name:     CookieName,
		Value:    token,
		Path:     "/",
		Expires:  claims.ExpiresAt,
		HttpOnly: true,
		SameSite: http.SameSiteStrictMode,
		Secure:   r.TLS != nil || s.cfg.SecureCookie,
	})
}

// localPath returns next if it is a path of this console, else "/": a
// sign-in never sends the browser elsewhere.
func localPath(next string) string {
	if next == "" || !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") || strings.ContainsAny(next, "\r\n") {
		return "/"
	}
	return next
}

// TokenCommand is the command the sign-in page suggests: weft token
// create for an operator token of 8 hours, from the certificate directory
// dir (CERTS when empty), quoted for a POSIX shell.
func TokenCommand(dir string) string {
	d := "CERTS"
	if dir != "" {
		d = shellQuote(dir)
	}
	return "weft token create --dir " + d + " --role operator --subject you --ttl 8h"
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./+=:@,") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// codeUsed is what a sign-in link says when its code is no longer valid.
const codeUsed = "This sign-in link has been used already or has expired. Sign in with a token, or ask for a new link."

// signinData is what the sign-in page shows.
type signinData struct {
	Error string
	Next  string
	// Code, when set, is a one-time code to sign in with by pressing the
	// button, as Subject with Role.
	Code    string
	Subject string
	Role    string
	// TokenCommand is the command that makes a token to paste, as it
	// runs on the node's machine.
	TokenCommand string
	// CertsKnown says TokenCommand names the node's certificate
	// directory; else it says CERTS.
	CertsKnown bool
}

// signinPage shows the sign-in form or, for a one-time link, a button
// that signs in with its code. Opening the link does not use the code
// up: link previews, mail scanners and prefetchers that open it would
// burn it before the person does.
func (s *Server) signinPage(w http.ResponseWriter, r *http.Request) {
	code := r.URL.Query().Get("code")
	if code == "" {
		s.renderSignin(w, r, http.StatusOK, signinData{})
		return
	}
	token, ok := s.peek(code)
	var claims *certs.TokenClaims
	var err error
	if ok {
		claims, err = s.api.Verify(token)
	}
	if !ok || err != nil {
		s.renderSignin(w, r, http.StatusUnauthorized, signinData{Error: codeUsed})
		return
	}
	s.renderSignin(w, r, http.StatusOK, signinData{Code: code, Subject: claims.Subject, Role: string(claims.Role)})
}

// signin signs in with the token pasted into the form, or with the
// one-time code of a sign-in link's button, and sends the browser on to
// the page it came for.
func (s *Server) signin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		s.renderSignin(w, r, http.StatusBadRequest, signinData{Error: "The form could not be read."})
		return
	}
	var token string
	var claims *certs.TokenClaims
	var err error
	if code := r.PostForm.Get("code"); code != "" {
		var ok bool
		token, ok = s.redeem(code)
		if ok {
			claims, err = s.api.Verify(token)
		}
		if !ok || err != nil {
			s.renderSignin(w, r, http.StatusUnauthorized, signinData{Error: codeUsed})
			return
		}
	} else {
		token = strings.TrimSpace(r.PostForm.Get("token"))
		token = strings.TrimPrefix(token, "Bearer ")
		claims, err = s.api.Verify(token)
		if err != nil {
			s.renderSignin(w, r, http.StatusUnauthorized, signinData{Error: "That token was refused: " + strings.TrimPrefix(err.Error(), "certs: ") + "."})
			return
		}
	}
	s.setSession(w, r, token, claims)
	// The form was sent from this console, so the page the redirect
	// leads to is a same-site request and gets the SameSite=Strict
	// cookie.
	http.Redirect(w, r, localPath(r.PostForm.Get("next")), http.StatusSeeOther)
}

func (s *Server) signout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil || s.cfg.SecureCookie})
	http.Redirect(w, r, "/signin", http.StatusSeeOther)
}

func (s *Server) renderSignin(w http.ResponseWriter, r *http.Request, status int, d signinData) {
	d.Next = localPath(r.FormValue("next"))
	d.TokenCommand, d.CertsKnown = TokenCommand(s.cfg.CertsDir), s.cfg.CertsDir != ""
	s.render(w, r, status, "signin", "Sign in", d, "")
}
