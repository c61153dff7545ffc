package api

import (
	"crypto/ed25519"
	"crypto/rand"
	"net/http"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/weft-io/weft/certs"
)

// signJWT signs claims by hand, for tokens IssueToken would not make.
func signJWT(t *testing.T, method jwt.SigningMethod, key any, mod func(jwt.MapClaims)) string {
	t.Helper()
	now := time.Now()
	c := jwt.MapClaims{
		"iss":  certs.TokenIssuer,
		"aud":  []string{certs.TokenAudience},
		"sub":  "mallory",
		"jti":  "t1",
		"role": "admin",
		"iat":  now.Unix(),
		"exp":  now.Add(time.Hour).Unix(),
	}
	if mod != nil {
		mod(c)
	}
	s, err := jwt.NewWithClaims(method, c).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestAuth(t *testing.T) {
	e := newEnv(t)
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	issue := func(c certs.TokenClaims, ttl time.Duration) string {
		tok, err := certs.IssueToken(e.priv, c, ttl)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	const (
		read  = "/api/v1/volumes"
		write = "/api/v1/streams/telemetry/events/messages"
		body  = `{"topic":"edge1","value":"x"}`
	)
	tests := []struct {
		name      string
		method    string
		path      string
		auth      string // the whole Authorization header; none if empty
		status    int
		reason    string
		challenge string
	}{
		{"no token", "GET", read, "", 401, "missing", `Bearer realm="weft"`},
		{"other scheme", "GET", read, "Basic YWxpY2U6cHc=", 401, "missing", `Bearer realm="weft"`},
		{"empty bearer", "GET", read, "Bearer ", 401, "malformed",
			`Bearer realm="weft", error="invalid_token", error_description="token malformed"`},
		{"malformed", "GET", read, "Bearer not.a.jwt", 401, "malformed",
			`Bearer realm="weft", error="invalid_token", error_description="token malformed"`},
		{"expired", "GET", read, "Bearer " + issue(certs.TokenClaims{Subject: "a", Role: certs.RoleAdmin, IssuedAt: time.Now().Add(-2 * time.Hour)}, time.Hour), 401, "expired",
			`Bearer realm="weft", error="invalid_token", error_description="token expired"`},
		{"not yet valid", "GET", read, "Bearer " + issue(certs.TokenClaims{Subject: "a", Role: certs.RoleAdmin, IssuedAt: time.Now().Add(time.Hour)}, time.Hour), 401, "not_yet_valid",
			`Bearer realm="weft", error="invalid_token", error_description="token not valid yet"`},
		{"wrong audience", "GET", read, "Bearer " + signJWT(t, jwt.SigningMethodEdDSA, e.priv, func(c jwt.MapClaims) { c["aud"] = []string{"other-api"} }), 401, "wrong_audience",
			`Bearer realm="weft", error="invalid_token", error_description="token audience mismatch"`},
		{"HS256", "GET", read, "Bearer " + signJWT(t, jwt.SigningMethodHS256, []byte("secret-secret-secret-secret-1234"), nil), 401, "wrong_algorithm",
			`Bearer realm="weft", error="invalid_token", error_description="token algorithm not allowed"`},
		{"HS256 keyed with the public key", "GET", read, "Bearer " + signJWT(t, jwt.SigningMethodHS256, []byte(e.srv.cfg.TokenKey), nil), 401, "wrong_algorithm",
			`Bearer realm="weft", error="invalid_token", error_description="token algorithm not allowed"`},
		{"alg none", "GET", read, "Bearer " + signJWT(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, nil), 401, "wrong_algorithm",
			`Bearer realm="weft", error="invalid_token", error_description="token algorithm not allowed"`},
		{"wrong key", "GET", read, "Bearer " + issue2(t, otherKey, certs.RoleAdmin), 401, "bad_signature",
			`Bearer realm="weft", error="invalid_token", error_description="token signature invalid"`},
		{"viewer on admin route", "POST", write, "Bearer " + e.token(certs.RoleViewer), 403, "role",
			`Bearer realm="weft", error="insufficient_scope", error_description="token does not allow this request"`},
		{"operator on admin route", "POST", write, "Bearer " + e.token(certs.RoleOperator), 403, "role",
			`Bearer realm="weft", error="insufficient_scope", error_description="token does not allow this request"`},
		{"scoped token on store route", "GET", read, "Bearer " + issue(certs.TokenClaims{Subject: "a", Role: certs.RoleAdmin, Scope: map[string]string{"class": "pump"}}, time.Hour), 403, "scope",
			`Bearer realm="weft", error="insufficient_scope", error_description="token does not allow this request"`},
		{"viewer reads", "GET", read, "Bearer " + e.token(certs.RoleViewer), 200, "", ""},
		{"admin appends", "POST", write, "Bearer " + e.token(certs.RoleAdmin), 200, "", ""},
		{"no token for healthz", "GET", "/healthz", "", 200, "", ""},
		{"no token for metrics", "GET", "/metrics", "", 200, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rd string
			if tt.method == "POST" {
				rd = body
			}
			req, err := http.NewRequest(tt.method, e.url+tt.path, stringReader(rd))
			if err != nil {
				t.Fatal(err)
			}
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			resp, b := doReq(t, req)
			if got := resp.Header.Get("WWW-Authenticate"); got != tt.challenge {
				t.Errorf("WWW-Authenticate %q, want %q", got, tt.challenge)
			}
			if tt.status == 200 {
				if resp.StatusCode != 200 {
					t.Fatalf("status %d: %s", resp.StatusCode, b)
				}
				return
			}
			p := problem(t, resp, b, tt.status)
			if p.Reason != tt.reason {
				t.Errorf("reason %q, want %q (%+v)", p.Reason, tt.reason, p)
			}
		})
	}
}

// issue2 issues a token with a key the server does not know.
func issue2(t *testing.T, priv ed25519.PrivateKey, role certs.Role) string {
	tok, err := certs.IssueToken(priv, certs.TokenClaims{Subject: "eve", Role: role}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestAuthAudienceConfig(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Audience = "site-a" })
	resp, b := e.do("GET", "/api/v1/volumes", e.token(certs.RoleAdmin), "")
	if p := problem(t, resp, b, 401); p.Reason != "wrong_audience" {
		t.Fatalf("reason %q, want wrong_audience", p.Reason)
	}
	tok := signJWT(t, jwt.SigningMethodEdDSA, e.priv, func(c jwt.MapClaims) { c["aud"] = []string{"site-a"} })
	if resp, b := e.do("GET", "/api/v1/volumes", tok, ""); resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
}

func TestHandleAndClaims(t *testing.T) {
	e := newEnv(t)
	e.srv.Handle("GET /api/v1/whoami", certs.RoleViewer, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := Claims(r.Context())
		writeJSON(w, 200, map[string]any{"sub": c.Subject, "role": c.Role})
	}))
	e.srv.Handle("GET /api/v1/scoped", certs.RoleViewer, ScopeAware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, Claims(r.Context()).Scope)
	})))
	var who map[string]string
	e.get("/api/v1/whoami", certs.RoleOperator, 200, &who)
	if who["sub"] != "alice@operator" || who["role"] != "operator" {
		t.Fatalf("whoami %v", who)
	}
	tok, err := certs.IssueToken(e.priv, certs.TokenClaims{Subject: "a", Role: certs.RoleViewer, Scope: map[string]string{"site": "s1"}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	resp, b := e.do("GET", "/api/v1/scoped", tok, "")
	if resp.StatusCode != 200 || string(b) != "{\"site\":\"s1\"}\n" {
		t.Fatalf("scoped route: %d %s", resp.StatusCode, b)
	}
	resp, b = e.do("GET", "/api/v1/whoami", tok, "")
	problem(t, resp, b, 403)
}

func TestRequireInvalidRolePanics(t *testing.T) {
	e := newEnv(t)
	defer func() {
		if recover() == nil {
			t.Fatal("no panic")
		}
	}()
	e.srv.Require("root", http.NotFoundHandler())
}
