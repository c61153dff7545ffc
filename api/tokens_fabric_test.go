package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/core"
	"github.com/weft-io/weft/edge"
	"github.com/weft-io/weft/internal/testenv"
	"github.com/weft-io/weft/internal/testenv/wait"
)

func call(t *testing.T, method, url, token string) (int, []byte) {
	t.Helper()
	// A node that does not answer fails the test here, not at go test's
	// timeout with every other test.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestTokenRevokedAtEdge: a token revoked at the core is refused by the
// core at once and by an edge linked to it once the revocation has come
// down the link, as desired state does.
func TestTokenRevokedAtEdge(t *testing.T) {
	f := testenv.New(t)
	c := f.StartCore("core-1", core.Config{})
	e := f.StartEdge("edge-1", edge.Config{Core: c.SyncAddr().String()})
	coreURL, edgeURL := "http://"+c.HTTPAddr().String(), "http://"+e.HTTPAddr().String()

	admin, err := certs.IssueToken(f.Auth.TokenKey, certs.TokenClaims{Subject: "root", Role: certs.RoleAdmin}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := certs.IssueToken(f.Auth.TokenKey, certs.TokenClaims{Subject: "field-crew", Role: certs.RoleViewer, ID: "crew-1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{coreURL, edgeURL} {
		if st, b := call(t, "GET", u+"/api/v1/volumes", tok); st != http.StatusOK {
			t.Fatalf("%s before revocation: %d %s", u, st, b)
		}
	}
	// The edge follows its core's list.
	if st, b := call(t, "DELETE", edgeURL+"/api/v1/tokens/crew-1", admin); st != http.StatusConflict {
		t.Fatalf("revoking at the edge: %d %s", st, b)
	}
	if st, b := call(t, "DELETE", coreURL+"/api/v1/tokens/crew-1", admin); st != http.StatusOK {
		t.Fatalf("revoking at the core: %d %s", st, b)
	}
	reason := func(u string) string {
		st, b := call(t, "GET", u+"/api/v1/volumes", tok)
		var p struct{ Reason string }
		json.Unmarshal(b, &p)
		if st != http.StatusUnauthorized {
			return ""
		}
		return p.Reason
	}
	if r := reason(coreURL); r != "revoked" {
		t.Fatalf("core: reason %q", r)
	}
	wait.For(t, 30*time.Second, "the edge refusing the revoked token", func() bool { return reason(edgeURL) == "revoked" })
	// Other tokens still work at the edge.
	if st, b := call(t, "GET", edgeURL+"/api/v1/volumes", admin); st != http.StatusOK {
		t.Fatalf("edge, another token: %d %s", st, b)
	}
}
