package core_test

import (
	"bytes"
	"encoding/json"
	"html"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/weft-io/weft/api"
	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/console"
	"github.com/weft-io/weft/core"
	"github.com/weft-io/weft/internal/testenv"
)

func do(t *testing.T, method, url, token string, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestIssuedTokenAuthenticates: a core whose certificate directory holds
// token.key issues tokens through POST /api/v1/tokens, and the token it
// answers with is accepted by its API with the role asked for.
func TestIssuedTokenAuthenticates(t *testing.T) {
	f := testenv.New(t)
	c := f.StartCore("core-1", core.Config{})
	u := "http://" + c.HTTPAddr().String()
	admin, err := certs.IssueToken(f.Auth.TokenKey, certs.TokenClaims{Subject: "root", Role: certs.RoleAdmin}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	st, b := do(t, "POST", u+"/api/v1/tokens", admin, []byte(`{"role":"viewer","subject":"dashboards","ttl":"1h"}`))
	if st != http.StatusOK && st != http.StatusCreated {
		t.Fatalf("issuing: %d %s", st, b)
	}
	var issued api.TokenIssued
	if err := json.Unmarshal(b, &issued); err != nil || issued.Token == "" || issued.ID == "" {
		t.Fatalf("issued %s: %v", b, err)
	}
	if st, b := do(t, "GET", u+"/api/v1/volumes", issued.Token, nil); st != http.StatusOK {
		t.Fatalf("reading with the issued token: %d %s", st, b)
	}
	// A viewer's token: the API holds it to its role.
	if st, b := do(t, "GET", u+"/api/v1/tokens", issued.Token, nil); st != http.StatusForbidden {
		t.Fatalf("a viewer listing tokens: %d %s", st, b)
	}
	// The list names the issued token, without its secret.
	st, b = do(t, "GET", u+"/api/v1/tokens", admin, nil)
	if st != http.StatusOK || !strings.Contains(string(b), issued.ID) || strings.Contains(string(b), issued.Token) {
		t.Fatalf("listing: %d %s", st, b)
	}
}

// TestSigninNamesCertsDir: the core's sign-in page suggests a token
// command naming its own certificate directory.
func TestSigninNamesCertsDir(t *testing.T) {
	f := testenv.New(t)
	c := f.StartCore("core-1", core.Config{})
	st, b := do(t, "GET", "http://"+c.HTTPAddr().String()+"/signin", "", nil)
	if want := console.TokenCommand(f.Certs); st != http.StatusOK || !strings.Contains(html.UnescapeString(string(b)), want) {
		t.Fatalf("sign-in page %d, want %q in:\n%s", st, want, b)
	}
}

// TestAuditRetention: the core gives its audit volume the retention of
// its config, and 400 days by default.
func TestAuditRetention(t *testing.T) {
	f := testenv.New(t)
	for _, tc := range []struct {
		set, want time.Duration
	}{
		{0, api.DefaultAuditRetention},
		{72 * time.Hour, 72 * time.Hour},
		{-1, 0}, // for ever
	} {
		c := f.StartCore("core-1", core.Config{AuditRetention: tc.set})
		vi, err := c.Store().Volume("audit")
		if err != nil {
			t.Fatal(err)
		}
		if vi.TTL != tc.want {
			t.Errorf("retention %s: the audit volume's TTL is %s, want %s", tc.set, vi.TTL, tc.want)
		}
		if err := c.Shutdown(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
}
