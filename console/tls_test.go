package console

import (
	"crypto/ed25519"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/weft-io/weft/api"
	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/store"
)

// TestSecureCookieOverTLS: signing in over HTTPS sets a Secure session
// cookie; over plain HTTP on loopback it is not (the browser would not
// send it back).
func TestSecureCookieOverTLS(t *testing.T) {
	st, err := store.Open(store.Config{Dir: t.TempDir(), MinFreeBytes: -1, RetentionInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	a, err := api.New(api.Config{Store: st, TokenKey: pub})
	if err != nil {
		t.Fatal(err)
	}
	con, err := New(Config{API: a})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := certs.IssueToken(priv, certs.TokenClaims{Subject: "ada", Role: certs.RoleViewer}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, tls := range []bool{true, false} {
		var ts *httptest.Server
		if tls {
			ts = httptest.NewTLSServer(con)
		} else {
			ts = httptest.NewServer(con)
		}
		c := ts.Client()
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		req, _ := http.NewRequest("POST", ts.URL+"/signin", strings.NewReader(url.Values{"token": {tok}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", ts.URL)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		cookies := resp.Cookies()
		if resp.StatusCode != http.StatusSeeOther || len(cookies) != 1 || cookies[0].Name != CookieName || cookies[0].Secure != tls || !cookies[0].HttpOnly {
			t.Fatalf("TLS %v: %d %+v", tls, resp.StatusCode, cookies)
		}
		ts.Close()
	}
}
