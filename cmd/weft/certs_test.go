package main

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCertsIssueServer: the HTTPS certificate is a pair TLS loads, for the
// hosts given, verified by the fabric CA, with a key only its owner reads.
func TestCertsIssueServer(t *testing.T) {
	dir := t.TempDir()
	must(t, "certs", "init", "--dir", dir)
	out := must(t, "certs", "issue", "server", "--dir", dir, "--name", "core-1", "--host", "core-1.example.com,127.0.0.1")
	certFile, keyFile := filepath.Join(dir, "servers", "core-1.crt"), filepath.Join(dir, "servers", "core-1.key")
	if !strings.Contains(out, certFile) || !strings.Contains(out, keyFile) {
		t.Fatalf("output %q", out)
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi.Mode(), err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "fabric-ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	for _, host := range []string{"core-1.example.com", "127.0.0.1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: host}); err != nil {
			t.Errorf("%s: %v", host, err)
		}
	}
	fails(t, "required flag", "certs", "issue", "server", "--dir", dir, "--name", "x")
}

// TestHTTPTLSSettings: the HTTPS settings are flags and config file keys
// of weft core and weft edge.
func TestHTTPTLSSettings(t *testing.T) {
	for _, node := range []string{"core", "edge"} {
		file := filepath.Join(t.TempDir(), node+".yaml")
		if err := os.WriteFile(file, []byte("http: 0.0.0.0:8443\nhttp_tls_cert: /etc/weft/https.crt\nhttp_tls_key: /etc/weft/https.key\nhttp_insecure: false\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		out := must(t, "config", "print", node, "--config", file)
		for _, want := range []string{"http-tls-cert: /etc/weft/https.crt", "http-tls-key: /etc/weft/https.key", `http-insecure: "false"`} {
			if !strings.Contains(out, want) {
				t.Errorf("%s: no %q in\n%s", node, want, out)
			}
		}
	}
}
