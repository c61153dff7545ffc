package main

import (
	"crypto/ed25519"
	"encoding/json"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weft-io/weft/api"
	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/console"
	"github.com/weft-io/weft/store"
)

// consoleNode is a node's API and console over a real store, with the
// token keys of a certificate directory, served on loopback.
func consoleNode(t *testing.T) (url, certsDir string, a *certs.Authority, srv *api.Server) {
	t.Helper()
	certsDir = t.TempDir()
	if err := certs.Init(certsDir, false); err != nil {
		t.Fatal(err)
	}
	a, err := certs.Load(certsDir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(store.Config{Dir: t.TempDir(), MinFreeBytes: -1, RetentionInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	reg := prometheus.NewRegistry()
	srv, err = api.New(api.Config{Store: st, TokenKey: a.TokenPublicKey, TokenSigner: a.TokenKey, Gatherer: reg})
	if err != nil {
		t.Fatal(err)
	}
	con, err := console.New(console.Config{API: srv, CertsDir: certsDir})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(con)
	t.Cleanup(ts.Close)
	return ts.URL, certsDir, a, srv
}

// TestTokenCommands: issue, list and revoke tokens through the API, and
// get a sign-in link, with the commands as printed.
func TestTokenCommands(t *testing.T) {
	isolate(t)
	url, _, a, srv := consoleNode(t)
	admin, err := certs.IssueToken(a.TokenKey, certs.TokenClaims{Subject: "root", Role: certs.RoleAdmin}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	remote := []string{"--server", url, "--token", admin}

	tok := strings.TrimSpace(must(t, append([]string{"token", "issue", "--role", "viewer", "--subject", "bob", "--ttl", "2h"}, remote...)...))
	claims, err := srv.Verify(tok)
	if err != nil || claims.Subject != "bob" {
		t.Fatalf("issued token: %+v %v", claims, err)
	}
	var list []map[string]any
	if err := json.Unmarshal([]byte(must(t, append([]string{"token", "ls", "-o", "json"}, remote...)...)), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0]["id"] != claims.ID || list[0]["revoked"] != false || list[0]["subject"] != "bob" {
		t.Fatalf("ls: %v", list)
	}
	if out := must(t, append([]string{"token", "revoke", claims.ID}, remote...)...); !strings.Contains(out, "revoked "+claims.ID) {
		t.Fatalf("revoke: %q", out)
	}
	if _, err := srv.Verify(tok); err == nil {
		t.Fatal("the revoked token still verifies")
	}
	if table := must(t, append([]string{"token", "ls"}, remote...)...); !strings.Contains(table, "LAST-USED") || !strings.Contains(table, "true") {
		t.Fatalf("ls table:\n%s", table)
	}

	// A fresh sign-in link, without a restart, as many as asked for.
	link := strings.TrimSpace(must(t, append([]string{"signin-link"}, remote...)...))
	if !strings.HasPrefix(link, url+"/signin?code=") {
		t.Fatalf("link %q", link)
	}
	if again := strings.TrimSpace(must(t, append([]string{"signin-link"}, remote...)...)); again == link {
		t.Fatal("the same link twice")
	}
	resp, err := http.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), `id="code-signin"`) {
		t.Fatalf("link page: %d\n%s", resp.StatusCode, page)
	}
	fails(t, "403", "signin-link", "--server", url, "--token", strings.TrimSpace(must(t, append([]string{"token", "issue", "--role", "operator", "--subject", "op"}, remote...)...)))
}

// TestSigninPageCommand: the command the sign-in page suggests works as
// printed and makes a token the node accepts.
func TestSigninPageCommand(t *testing.T) {
	url, _, _, srv := consoleNode(t)
	resp, err := http.Get(url + "/signin")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`<pre class="cmd" id="token-command">([^<]*)</pre>`).FindSubmatch(page)
	if m == nil {
		t.Fatalf("no command on the sign-in page:\n%s", page)
	}
	args := strings.Fields(html.UnescapeString(string(m[1])))
	if args[0] != "weft" {
		t.Fatalf("command %q", m[1])
	}
	tok := strings.TrimSpace(must(t, args[1:]...))
	if c, err := srv.Verify(tok); err != nil || c.Role != certs.RoleOperator {
		t.Fatalf("token of the suggested command: %+v %v", c, err)
	}
}

// TestLsShowsAuditRetention: once a node has run on a data directory,
// weft ls shows the audit volume's retention.
func TestLsShowsAuditRetention(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(store.Config{Dir: dir, MinFreeBytes: -1, RetentionInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _ := ed25519.GenerateKey(nil)
	if _, err := api.New(api.Config{Store: st, TokenKey: pub}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	out := must(t, "ls", "--data", dir)
	for line := range strings.Lines(out) {
		if strings.HasPrefix(line, "/audit ") {
			if !strings.Contains(line, "9600h") {
				t.Fatalf("audit line %q", line)
			}
			return
		}
	}
	t.Fatalf("no /audit in\n%s", out)
}
