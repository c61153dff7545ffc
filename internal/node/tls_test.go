package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/weft-io/weft/api"
	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/internal/testenv/wait"
)

// httpsFiles makes a CA directory and an HTTPS certificate for 127.0.0.1
// in it, returning the authority and the files.
func httpsFiles(t *testing.T) (*certs.Authority, api.TLSFiles) {
	t.Helper()
	dir := t.TempDir()
	if err := certs.Init(dir, false); err != nil {
		t.Fatal(err)
	}
	a, err := certs.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	f := api.TLSFiles{CertFile: filepath.Join(dir, "https.crt"), KeyFile: filepath.Join(dir, "https.key")}
	writeHTTPS(t, a, f)
	return a, f
}

func writeHTTPS(t *testing.T, a *certs.Authority, f api.TLSFiles) {
	t.Helper()
	c, k, err := IssueHTTPS(a.FabricCA, "core-1", []string{"127.0.0.1", "core-1.example.com"}, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// The key first, then the certificate: a handshake in between keeps
	// the previous pair.
	if err := os.WriteFile(f.KeyFile, k, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.CertFile, c, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestHTTPS serves over TLS with HSTS, and serves a certificate renewed in
// its files without a restart.
func TestHTTPS(t *testing.T) {
	a, files := httpsFiles(t)
	s := serve(t, api.Limits{TLS: files}, healthz())
	if got := s.URL(); got != "https://"+s.Addr().String() {
		t.Fatalf("URL = %s", got)
	}
	pool := x509.NewCertPool()
	pool.AddCert(a.FabricCA.Cert)
	var served *x509.Certificate
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool,
		VerifyConnection: func(cs tls.ConnectionState) error { served = cs.PeerCertificates[0]; return nil }}, DisableKeepAlives: true}}
	get := func() *http.Response {
		t.Helper()
		resp, err := client.Get(s.URL() + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	resp := get()
	if resp.StatusCode != 200 || resp.Header.Get("Strict-Transport-Security") != HSTS {
		t.Fatalf("status %d, HSTS %q", resp.StatusCode, resp.Header.Get("Strict-Transport-Security"))
	}
	first := served.SerialNumber
	writeHTTPS(t, a, files)
	wait.For(t, 20*time.Second, "the renewed certificate served", func() bool {
		get()
		return served.SerialNumber.Cmp(first) != 0
	})

	// Plain HTTP to the HTTPS port gets no answer of the API.
	if r, err := http.Get("http://" + s.Addr().String() + "/healthz"); err == nil {
		r.Body.Close()
		if r.StatusCode == 200 {
			t.Fatal("plain HTTP answered on the HTTPS listener")
		}
	}
}

// TestPlainHTTPRefused: plain HTTP listens on loopback, elsewhere only
// with Insecure; a certificate without its key is refused.
func TestPlainHTTPRefused(t *testing.T) {
	for _, tc := range []struct {
		addr string
		tls  api.TLSFiles
		err  bool
	}{
		{"127.0.0.1:0", api.TLSFiles{}, false},
		{"[::1]:0", api.TLSFiles{}, false},
		{"localhost:0", api.TLSFiles{}, false},
		{"0.0.0.0:0", api.TLSFiles{}, true},
		{":0", api.TLSFiles{}, true},
		{"0.0.0.0:0", api.TLSFiles{Insecure: true}, false},
		{"127.0.0.1:0", api.TLSFiles{CertFile: "x.crt"}, true},
	} {
		s, err := ServeHTTP(context.Background(), tc.addr, healthz(), api.Limits{TLS: tc.tls}, nil, nil)
		if err == nil {
			s.Shutdown(context.Background())
		} else if errors.Is(err, ErrPlainHTTP) != (tc.tls.CertFile == "") {
			t.Errorf("%s %+v: %v", tc.addr, tc.tls, err)
		}
		if (err != nil) != tc.err && !(tc.addr == "[::1]:0" && err != nil && !errors.Is(err, ErrPlainHTTP)) {
			t.Errorf("%s %+v: err %v, want error %v", tc.addr, tc.tls, err, tc.err)
		}
	}
}

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:8080": true, "127.1.2.3:1": true, "[::1]:80": true, "localhost:80": true, "LOCALHOST:1": true,
		"0.0.0.0:8080": false, ":8080": false, "10.0.0.5:80": false, "[::]:80": false, "core.example.com:443": false,
	} {
		if got := IsLoopback(addr); got != want {
			t.Errorf("IsLoopback(%q) = %v", addr, got)
		}
	}
}
