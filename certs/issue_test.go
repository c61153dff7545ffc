package certs

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "c")
	if err := Init(dir, false); err != nil {
		t.Fatal(err)
	}
	modes := map[string]fs.FileMode{
		".":             dirMode,
		"device-ca.key": keyMode,
		"fabric-ca.key": keyMode,
		"token.key":     keyMode,
		"device-ca.crt": certMode,
		"fabric-ca.crt": certMode,
		"token.pub":     certMode,
	}
	for name, want := range modes {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s: mode %o, want %o", name, got, want)
		}
	}

	a, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		ca   *CA
		name string
	}{{a.DeviceCA, "Weft Device CA"}, {a.FabricCA, "Weft Fabric CA"}} {
		cert := c.ca.Cert
		if !cert.IsCA || cert.Subject.CommonName != c.name || cert.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
			t.Errorf("%s: IsCA %v, subject %q, key usage %v", c.name, cert.IsCA, cert.Subject.CommonName, cert.KeyUsage)
		}
		if cert.MaxPathLen != 0 || !cert.MaxPathLenZero {
			t.Errorf("%s: CA may sign intermediates", c.name)
		}
		if life := cert.NotAfter.Sub(cert.NotBefore); life < 10*365*24*time.Hour {
			t.Errorf("%s: valid for %s only", c.name, life)
		}
		if k, ok := c.ca.Key.(*ecdsa.PrivateKey); !ok || k.Curve != elliptic.P256() {
			t.Errorf("%s: key is %T, want ECDSA P-256", c.name, c.ca.Key)
		}
		if err := cert.CheckSignatureFrom(cert); err != nil {
			t.Errorf("%s: not self-signed: %v", c.name, err)
		}
	}
	if a.TokenKey == nil || !a.TokenPublicKey.Equal(a.TokenKey.Public()) {
		t.Error("token key pair not loaded")
	}

	if err := Init(dir, false); !errors.Is(err, ErrExists) {
		t.Errorf("second Init: err = %v, want ErrExists", err)
	}
	if _, err := a.IssueDevice("d1", "pump", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := a.RevokeDevice("d1"); err != nil {
		t.Fatal(err)
	}
	if err := Init(dir, true); err != nil {
		t.Fatalf("forced Init: %v", err)
	}
	b, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if b.DeviceCA.Cert.Equal(a.DeviceCA.Cert) {
		t.Error("forced Init kept the device CA")
	}
	if l, err := b.List(); err != nil || len(l) != 0 {
		t.Errorf("forced Init kept the index: %v, %v", l, err)
	}
	if _, err := os.Stat(b.CRLFile()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("forced Init kept the CRL: %v", err)
	}
}

func TestLoad(t *testing.T) {
	if _, err := Load(t.TempDir()); !errors.Is(err, ErrNoCA) {
		t.Errorf("empty dir: err = %v, want ErrNoCA", err)
	}

	// A gateway's copy: the device CA certificate only.
	a := newAuthority(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, deviceCACert), a.DeviceCA.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if b.DeviceCA.Key != nil || b.FabricCA != nil || b.TokenKey != nil {
		t.Error("loaded files that are not there")
	}
	if _, err := b.IssueDevice("d1", "pump", 0); !errors.Is(err, ErrNoKey) {
		t.Errorf("issue without key: err = %v, want ErrNoKey", err)
	}
	if _, err := b.Revoke(big1); !errors.Is(err, ErrNoKey) {
		t.Errorf("revoke without key: err = %v, want ErrNoKey", err)
	}

	// A key that is not the CA's.
	other, err := os.ReadFile(filepath.Join(a.Dir, fabricCAKey))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, deviceCAKey), other, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); err == nil {
		t.Error("loaded a CA with a mismatched key")
	}
}

func TestIssue(t *testing.T) {
	a := newAuthority(t)
	now := time.Now()
	tests := []struct {
		kind   Kind
		issue  func() (*Issued, error)
		ca     *CA
		uri    string
		eku    []x509.ExtKeyUsage
		dns    []string
		ips    int
		name   string // file name
		maxAge time.Duration
	}{
		{
			kind:  KindDevice,
			issue: func() (*Issued, error) { return a.IssueDevice("pump-0042", "pump", 0) },
			ca:    a.DeviceCA, uri: "weft://device/pump/pump-0042",
			eku: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, name: "pump-0042", maxAge: DefaultValidity,
		},
		{
			kind: KindGateway,
			issue: func() (*Issued, error) {
				return a.IssueGateway("gw-1", []string{"GW.example", "10.0.0.1", "::1"}, 48*time.Hour)
			},
			ca: a.DeviceCA, uri: "weft://gateway/gw-1",
			eku: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, dns: []string{"gw.example"}, ips: 2, name: "gw-1", maxAge: 48 * time.Hour,
		},
		{
			kind:  KindNode,
			issue: func() (*Issued, error) { return a.IssueNode(CoreNode, "core-1", []string{"core.example"}, 0) },
			ca:    a.FabricCA, uri: "weft://node/core/core-1",
			eku: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, dns: []string{"core.example"}, name: "core-1", maxAge: DefaultValidity,
		},
		{
			kind: KindNode,
			issue: func() (*Issued, error) {
				return a.IssueNode(EdgeNode, "truck-7", []string{"truck-7"}, 100*365*24*time.Hour)
			},
			ca: a.FabricCA, uri: "weft://node/edge/truck-7",
			eku: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, dns: []string{"truck-7"}, name: "truck-7", maxAge: caValidity,
		},
	}
	seen := map[string]bool{}
	for _, tc := range tests {
		t.Run(tc.uri, func(t *testing.T) {
			iss, err := tc.issue()
			if err != nil {
				t.Fatal(err)
			}
			certFile, keyFile, err := a.Save(iss)
			if err != nil {
				t.Fatal(err)
			}
			wantCert, wantKey := Files(a.Dir, tc.kind, tc.name)
			if certFile != wantCert || keyFile != wantKey {
				t.Errorf("saved to %s, %s; want %s, %s", certFile, keyFile, wantCert, wantKey)
			}
			for f, mode := range map[string]fs.FileMode{keyFile: keyMode, filepath.Dir(keyFile): dirMode} {
				if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != mode {
					t.Errorf("%s: %v, mode %v, want %o", f, err, fi.Mode().Perm(), mode)
				}
			}
			pair, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				t.Fatal(err)
			}
			cert := pair.Leaf
			if k, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
				t.Errorf("key is %T, want ECDSA P-256", cert.PublicKey)
			}
			if err := cert.CheckSignatureFrom(tc.ca.Cert); err != nil {
				t.Errorf("not signed by %s: %v", tc.ca.Cert.Subject.CommonName, err)
			}
			if cert.IsCA || cert.KeyUsage != x509.KeyUsageDigitalSignature {
				t.Errorf("IsCA %v, key usage %v", cert.IsCA, cert.KeyUsage)
			}
			if !slices.Equal(cert.ExtKeyUsage, tc.eku) {
				t.Errorf("ext key usage %v, want %v", cert.ExtKeyUsage, tc.eku)
			}
			if len(cert.URIs) != 1 || cert.URIs[0].String() != tc.uri {
				t.Errorf("URIs %v, want [%s]", cert.URIs, tc.uri)
			}
			if !slices.Equal(cert.DNSNames, tc.dns) || len(cert.IPAddresses) != tc.ips {
				t.Errorf("DNS %v, IPs %v", cert.DNSNames, cert.IPAddresses)
			}
			if s := cert.SerialNumber; s.Sign() <= 0 || s.BitLen() > 128 || s.BitLen() < 64 || seen[s.String()] {
				t.Errorf("serial %x: want a fresh random 128-bit number", s)
			}
			seen[cert.SerialNumber.String()] = true
			if iss.Serial != FormatSerial(cert.SerialNumber) {
				t.Errorf("entry serial %s, certificate %x", iss.Serial, cert.SerialNumber)
			}
			if cert.NotAfter.After(now.Add(tc.maxAge+time.Minute)) || cert.NotAfter.Before(now.Add(tc.maxAge-time.Hour)) {
				t.Errorf("not after %s, want about now + %s", cert.NotAfter, tc.maxAge)
			}
			if cert.NotAfter.After(tc.ca.Cert.NotAfter) || cert.NotBefore.After(now) {
				t.Errorf("validity %s to %s", cert.NotBefore, cert.NotAfter)
			}
			roots := pool(t, tc.ca)
			id, err := Verify(cert, roots, tc.kind, now)
			if err != nil || id.URI() != tc.uri {
				t.Errorf("Verify = %v, %v", id, err)
			}
		})
	}

	l, err := a.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(l) != len(tests) {
		t.Fatalf("index has %d entries, want %d", len(l), len(tests))
	}
	for i, e := range l {
		if e.Kind != tests[i].kind || e.Subject() != tests[i].uri || e.Revoked() {
			t.Errorf("index entry %d = %+v", i, e)
		}
	}
}

func TestIssueInvalid(t *testing.T) {
	a := newAuthority(t)
	tests := []struct {
		name string
		err  error
		fn   func() (*Issued, error)
	}{
		{"empty id", ErrInvalidName, func() (*Issued, error) { return a.IssueDevice("", "pump", 0) }},
		{"slash in id", ErrInvalidName, func() (*Issued, error) { return a.IssueDevice("a/b", "pump", 0) }},
		{"plus in id", ErrInvalidName, func() (*Issued, error) { return a.IssueDevice("a+b", "pump", 0) }},
		{"hash in class", ErrInvalidName, func() (*Issued, error) { return a.IssueDevice("a", "p#", 0) }},
		{"NUL in class", ErrInvalidName, func() (*Issued, error) { return a.IssueDevice("a", "p\x00", 0) }},
		{"dot dot id", ErrInvalidName, func() (*Issued, error) { return a.IssueDevice("..", "pump", 0) }},
		{"long id", ErrInvalidName, func() (*Issued, error) { return a.IssueDevice(string(make([]byte, 129)), "pump", 0) }},
		{"space in gateway", ErrInvalidName, func() (*Issued, error) { return a.IssueGateway("g 1", []string{"h"}, 0) }},
		{"gateway without host", ErrInvalidName, func() (*Issued, error) { return a.IssueGateway("g1", nil, 0) }},
		{"bad host", ErrInvalidName, func() (*Issued, error) { return a.IssueGateway("g1", []string{"a..b"}, 0) }},
		{"bad role", ErrInvalidName, func() (*Issued, error) { return a.IssueNode("rig", "n1", []string{"h"}, 0) }},
		{"node without host", ErrInvalidName, func() (*Issued, error) { return a.IssueNode(EdgeNode, "n1", nil, 0) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.fn(); !errors.Is(err, tc.err) {
				t.Errorf("err = %v, want %v", err, tc.err)
			}
		})
	}
	if _, err := a.IssueDevice("d", "c", -time.Hour); err == nil {
		t.Error("negative validity accepted")
	}
	if l, _ := a.List(); len(l) != 0 {
		t.Errorf("failed issues were indexed: %v", l)
	}
}

func TestSignCSR(t *testing.T) {
	a := newAuthority(t)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)

	csr := func(key any, cn string, uris ...string) []byte {
		tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}, DNSNames: []string{"ignored.example"}}
		for _, s := range uris {
			u, _ := url.Parse(s)
			tmpl.URIs = append(tmpl.URIs, u)
		}
		der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	}
	tampered := func() []byte {
		der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "dev-1"}}, p256)
		i := len(der) - 5
		der[i] ^= 0xff // in the signature
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	}

	tests := []struct {
		name string
		csr  []byte
		err  error
	}{
		{"common name", csr(p256, "dev-1"), nil},
		{"matching URI", csr(p256, "dev-1", "weft://device/pump/dev-1"), nil},
		{"other URI ignored", csr(p256, "dev-1", "https://example.com"), nil},
		{"URI of another class", csr(p256, "dev-1", "weft://device/valve/dev-1"), ErrCSR},
		{"URI of another id", csr(p256, "dev-1", "weft://device/pump/dev-2"), ErrCSR},
		{"two URIs", csr(p256, "dev-1", "weft://device/pump/dev-1", "weft://device/pump/dev-1"), ErrCSR},
		{"no common name", csr(p256, ""), ErrCSR},
		{"bad common name", csr(p256, "dev/1"), ErrCSR},
		{"P-384 key", csr(p384, "dev-1"), ErrCSR},
		{"Ed25519 key", csr(ed, "dev-1"), ErrCSR},
		{"RSA key", csr(rsaKey, "dev-1"), ErrCSR},
		{"bad signature", tampered(), ErrCSR},
		{"not PEM", []byte("hello"), ErrCSR},
		{"a certificate", a.DeviceCA.PEM, ErrCSR},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			iss, err := a.SignCSR(tc.csr, "pump", 0)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if err != nil {
				return
			}
			if iss.KeyPEM != nil {
				t.Error("SignCSR returned a key")
			}
			cert := mustParseCert(t, iss.CertPEM)
			if !cert.PublicKey.(*ecdsa.PublicKey).Equal(&p256.PublicKey) {
				t.Error("certificate is not for the CSR's key")
			}
			if len(cert.DNSNames) != 0 {
				t.Errorf("copied SANs from the request: %v", cert.DNSNames)
			}
			id, err := Verify(cert, pool(t, a.DeviceCA), KindDevice, time.Now())
			if err != nil || id.URI() != "weft://device/pump/dev-1" {
				t.Errorf("Verify = %v, %v", id, err)
			}
			certFile, keyFile, err := a.Save(iss)
			if err != nil || keyFile != "" || filepath.Base(certFile) != "dev-1.crt" {
				t.Errorf("Save = %s, %q, %v", certFile, keyFile, err)
			}
		})
	}
	if _, err := a.SignCSR(csr(p256, "dev-1"), "pu/mp", 0); !errors.Is(err, ErrCSR) || !errors.Is(err, ErrInvalidName) {
		t.Errorf("bad class: err = %v", err)
	}
}

func TestParseSerial(t *testing.T) {
	for in, want := range map[string]string{
		"1f":         "1f",
		"0x1F":       "1f",
		"01:AB:cd":   "1abcd",
		" abcdef\n":  "abcdef",
		"":           "",
		"0":          "",
		"-1":         "",
		"+1":         "",
		"xyz":        "",
		"1_0":        "",
		"0x":         "",
		"12:34:5g:6": "",
	} {
		n, err := ParseSerial(in)
		if want == "" {
			if err == nil {
				t.Errorf("ParseSerial(%q) = %x, want error", in, n)
			}
			continue
		}
		if err != nil || FormatSerial(n) != want {
			t.Errorf("ParseSerial(%q) = %v, %v; want %s", in, n, err, want)
		}
	}
}
