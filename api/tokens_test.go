package api

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/internal/testenv/wait"
	"github.com/weft-io/weft/store"
)

// tokenEnv is an env whose server issues tokens with the key of its
// tokens.
func tokenEnv(t *testing.T) *env {
	t.Helper()
	e := newEnv(t)
	e.srv.cfg.TokenSigner = e.priv
	return e
}

func TestTokens(t *testing.T) {
	e := tokenEnv(t)
	admin := e.token(certs.RoleAdmin)

	// Issue.
	resp, body := e.do("POST", "/api/v1/tokens", admin, `{"role":"operator","subject":"bob","ttl":"8h","scope":{"class":"pump"}}`)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /api/v1/tokens: %d %s", resp.StatusCode, body)
	}
	var iss TokenIssued
	if err := json.Unmarshal(body, &iss); err != nil || iss.ID == "" || iss.Token == "" {
		t.Fatalf("answer %s: %v", body, err)
	}
	if d := time.Until(iss.Expires); d < 7*time.Hour || d > 9*time.Hour {
		t.Fatalf("expires %s", iss.Expires)
	}
	claims, err := certs.VerifyToken(e.srv.cfg.TokenKey, iss.Token, "", time.Now())
	if err != nil || claims.ID != iss.ID || claims.Subject != "bob" || claims.Role != certs.RoleOperator || claims.Scope["class"] != "pump" {
		t.Fatalf("claims %+v %v", claims, err)
	}
	// It works (a scoped token, on a route that enforces scopes).
	if resp, body := e.do("GET", "/api/v1/devices", iss.Token, ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("issued token refused: %d %s", resp.StatusCode, body)
	}

	// Listed, without its secret, with its last use.
	var list TokenListResponse
	e.get("/api/v1/tokens", certs.RoleAdmin, http.StatusOK, &list)
	_, rawList := e.do("GET", "/api/v1/tokens", admin, "")
	if raw := string(rawList); strings.Contains(raw, iss.Token) || strings.Contains(raw, `"token"`) {
		t.Fatalf("the list shows the secret: %s", raw)
	}
	var bob *TokenInfo
	for i := range list.Tokens {
		if list.Tokens[i].ID == iss.ID {
			bob = &list.Tokens[i]
		}
	}
	if bob == nil || bob.Subject != "bob" || bob.Role != certs.RoleOperator || bob.Scope["class"] != "pump" || bob.Revoked ||
		bob.LastUsed == nil || bob.Expires == nil || !bob.Expires.Equal(iss.Expires) || bob.IssuedBy != "alice@admin" {
		t.Fatalf("list %+v", list.Tokens)
	}

	// Revoked: refused at once with reason revoked.
	resp, body = e.do("DELETE", "/api/v1/tokens/"+iss.ID, admin, "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE: %d %s", resp.StatusCode, body)
	}
	var rev TokenInfo
	if err := json.Unmarshal(body, &rev); err != nil || !rev.Revoked || rev.RevokedAt == nil || rev.ID != iss.ID {
		t.Fatalf("revoked %s %v", body, err)
	}
	resp, body = e.do("GET", "/api/v1/devices", iss.Token, "")
	if p := problem(t, resp, body, http.StatusUnauthorized); p.Reason != "revoked" {
		t.Fatalf("revoked token: %+v", p)
	}
	if ch := resp.Header.Get("WWW-Authenticate"); !strings.Contains(ch, `error_description="token revoked"`) {
		t.Fatalf("challenge %q", ch)
	}
	// Revoking again changes nothing.
	if resp, body := e.do("DELETE", "/api/v1/tokens/"+iss.ID, admin, ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE again: %d %s", resp.StatusCode, body)
	}

	// A token made offline (weft token create) is revoked by its id.
	offline, err := certs.IssueToken(e.priv, certs.TokenClaims{Subject: "carol", Role: certs.RoleViewer, ID: "offline-1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if resp, body := e.do("GET", "/api/v1/volumes", offline, ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("offline token: %d %s", resp.StatusCode, body)
	}
	if resp, body := e.do("DELETE", "/api/v1/tokens/offline-1", admin, ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE offline: %d %s", resp.StatusCode, body)
	}
	resp, body = e.do("GET", "/api/v1/volumes", offline, "")
	if p := problem(t, resp, body, http.StatusUnauthorized); p.Reason != "revoked" {
		t.Fatalf("revoked offline token: %+v", p)
	}

	// Issuing and revoking are audited under the admin's name.
	rq, _ := ParseRange(url.Values{}, time.Now())
	page, err := e.srv.AuditLog(t.Context(), AuditQuery{RangeQuery: rq})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, r := range page.Records {
		if r.Subject == "alice@admin" {
			seen[r.Action]++
		}
	}
	if seen["token.issue"] != 1 || seen["token.revoke"] != 2 {
		t.Fatalf("audit %v", seen)
	}
}

func TestTokensRefused(t *testing.T) {
	e := tokenEnv(t)
	admin := e.token(certs.RoleAdmin)
	for _, c := range []struct {
		body string
		want int
	}{
		{`{"role":"root","subject":"bob"}`, http.StatusBadRequest},
		{`{"role":"viewer"}`, http.StatusBadRequest},
		{`{"role":"viewer","subject":"bob","ttl":"forever"}`, http.StatusBadRequest},
		{`{"role":"viewer","subject":"bob","ttl":"10000h"}`, http.StatusBadRequest},
		{`{"role":"viewer","subject":"bob","scope":{"planet":"mars"}}`, http.StatusBadRequest},
		{`{bad json`, http.StatusBadRequest},
	} {
		resp, body := e.do("POST", "/api/v1/tokens", admin, c.body)
		problem(t, resp, body, c.want)
	}
	// A ttl in seconds.
	var iss TokenIssued
	e.post("/api/v1/tokens", `{"role":"viewer","subject":"bob","ttl":3600}`, http.StatusCreated, &iss)
	if d := time.Until(iss.Expires); d < 59*time.Minute || d > 61*time.Minute {
		t.Fatalf("ttl 3600: expires %s", iss.Expires)
	}
	// Only admins.
	resp, body := e.do("POST", "/api/v1/tokens", e.token(certs.RoleOperator), `{"role":"viewer","subject":"bob"}`)
	problem(t, resp, body, http.StatusForbidden)
	resp, body = e.do("DELETE", "/api/v1/tokens/x", e.token(certs.RoleOperator), "")
	problem(t, resp, body, http.StatusForbidden)

	// Without the signing key: no issuing, but revoking works.
	plain := newEnv(t)
	resp, body = plain.do("POST", "/api/v1/tokens", plain.token(certs.RoleAdmin), `{"role":"viewer","subject":"bob"}`)
	problem(t, resp, body, http.StatusServiceUnavailable)
	if resp, body := plain.do("DELETE", "/api/v1/tokens/x", plain.token(certs.RoleAdmin), ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE without signer: %d %s", resp.StatusCode, body)
	}

	// An edge that follows its core's list refuses both.
	edge := newEnv(t, func(c *Config) { c.DesiredReadOnly = true })
	resp, body = edge.do("DELETE", "/api/v1/tokens/x", edge.token(certs.RoleAdmin), "")
	problem(t, resp, body, http.StatusConflict)
}

// TestTokensRevokedFromStore: a revocation that reaches the store by
// replication (appended to TokensTopic by another node) is enforced
// without a request to this node.
func TestTokensRevokedFromStore(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.DesiredReadOnly = true })
	tok, err := certs.IssueToken(e.priv, certs.TokenClaims{Subject: "dave", Role: certs.RoleViewer, ID: "t-9"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if resp, body := e.do("GET", "/api/v1/volumes", tok, ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	rec, _ := json.Marshal(tokenRecord{Op: "revoke", ID: "t-9", Time: time.Now()})
	if _, err := e.st.Stream(store.UpdatesStream).Append(t.Context(), TokensTopic, store.Message{Value: rec}); err != nil {
		t.Fatal(err)
	}
	wait.For(t, 10*time.Second, "the replicated revocation enforced", func() bool {
		resp, _ := e.do("GET", "/api/v1/volumes", tok, "")
		return resp.StatusCode == http.StatusUnauthorized
	})
}
