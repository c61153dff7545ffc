package api_test

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weft-io/weft/api"
	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/core"
	"github.com/weft-io/weft/internal/node"
	"github.com/weft-io/weft/internal/testenv"
)

// TestCoreServesHTTPS: a core given a certificate serves its API and
// console over HTTPS only, with HSTS and a Secure session cookie.
func TestCoreServesHTTPS(t *testing.T) {
	f := testenv.New(t)
	certPEM, keyPEM, err := node.IssueHTTPS(f.Auth.FabricCA, "core-1", []string{"127.0.0.1"}, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	files := api.TLSFiles{CertFile: filepath.Join(f.Dir, "https.crt"), KeyFile: filepath.Join(f.Dir, "https.key")}
	os.WriteFile(files.CertFile, certPEM, 0o644)
	os.WriteFile(files.KeyFile, keyPEM, 0o600)
	c := f.StartCore("core-1", core.Config{HTTP: api.Limits{TLS: files}})
	base := "https://" + c.HTTPAddr().String()

	pool := x509.NewCertPool()
	pool.AddCert(f.Auth.FabricCA.Cert)
	client := &http.Client{
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Get(base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Strict-Transport-Security") == "" {
		t.Fatalf("healthz over HTTPS: %d %v", resp.StatusCode, resp.Header)
	}
	tok, err := certs.IssueToken(f.Auth.TokenKey, certs.TokenClaims{Subject: "ada", Role: certs.RoleViewer}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", base+"/signin", strings.NewReader(url.Values{"token": {tok}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", base)
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if cs := resp.Cookies(); resp.StatusCode != http.StatusSeeOther || len(cs) != 1 || !cs[0].Secure {
		t.Fatalf("sign-in over HTTPS: %d %+v", resp.StatusCode, cs)
	}
	// Plain HTTP on the same port is not served.
	if r, err := http.Get("http://" + c.HTTPAddr().String() + "/healthz"); err == nil {
		r.Body.Close()
		if r.StatusCode == 200 {
			t.Fatal("plain HTTP answered")
		}
	}
}
