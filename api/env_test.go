package api

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/store"
)

// env is a Server over a real store, served on loopback.
type env struct {
	t    *testing.T
	st   *store.Store
	srv  *Server
	url  string
	priv ed25519.PrivateKey
	reg  *prometheus.Registry
}

func newEnv(t *testing.T, mods ...func(*Config)) *env {
	t.Helper()
	st, err := store.Open(store.Config{Dir: t.TempDir(), MinFreeBytes: -1, RetentionInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	cfg := Config{Store: st, TokenKey: pub, Gatherer: reg, Registerer: reg}
	for _, m := range mods {
		m(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return &env{t: t, st: st, srv: srv, url: ts.URL, priv: priv, reg: reg}
}

// token returns a valid token with the given role.
func (e *env) token(role certs.Role) string {
	e.t.Helper()
	tok, err := certs.IssueToken(e.priv, certs.TokenClaims{Subject: "alice@" + string(role), Role: role}, time.Hour)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// do sends a request with token (none if empty) and returns the response
// with its body read.
func (e *env) do(method, path, token, body string) (*http.Response, []byte) {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, e.url+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	return doReq(e.t, req)
}

// doReq sends req and returns the response with its body read.
func doReq(t *testing.T, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// stringReader is a request body reading s, or none if s is empty.
func stringReader(s string) io.Reader {
	if s == "" {
		return nil
	}
	return strings.NewReader(s)
}

// get sends an authenticated GET expecting status want and decodes the
// body into v (if not nil).
func (e *env) get(path string, role certs.Role, want int, v any) *http.Response {
	e.t.Helper()
	resp, b := e.do("GET", path, e.token(role), "")
	if resp.StatusCode != want {
		e.t.Fatalf("GET %s: status %d, want %d: %s", path, resp.StatusCode, want, b)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			e.t.Fatalf("GET %s: %v: %s", path, err, b)
		}
	}
	return resp
}

// post sends an admin POST expecting status want and decodes the body
// into v (if not nil).
func (e *env) post(path, body string, want int, v any) {
	e.t.Helper()
	resp, b := e.do("POST", path, e.token(certs.RoleAdmin), body)
	if resp.StatusCode != want {
		e.t.Fatalf("POST %s: status %d, want %d: %s", path, resp.StatusCode, want, b)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			e.t.Fatalf("POST %s: %v: %s", path, err, b)
		}
	}
}

// problem checks that a response is a problem document with status want
// and returns it.
func problem(t *testing.T, resp *http.Response, body []byte, want int) ProblemDetails {
	t.Helper()
	if resp.StatusCode != want {
		t.Fatalf("status %d, want %d: %s", resp.StatusCode, want, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type %q, want application/problem+json", ct)
	}
	var p ProblemDetails
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("problem body: %v: %s", err, body)
	}
	if p.Status != want || p.Title == "" || !strings.HasPrefix(p.Type, ProblemTypeBase) {
		t.Fatalf("problem %+v: want status %d, a title and a documented type", p, want)
	}
	return p
}

// request returns a request carrying a token with the given role.
func (e *env) request(method, path string, role certs.Role) *http.Request {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+e.token(role))
	return req
}
