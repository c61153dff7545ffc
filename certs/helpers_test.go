package certs

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/url"
	"testing"
	"time"
)

// newAuthority initialises a certificate directory under t.TempDir and
// loads it.
func newAuthority(t testing.TB) *Authority {
	t.Helper()
	dir := t.TempDir()
	if err := Init(dir, false); err != nil {
		t.Fatal(err)
	}
	a, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// otherCA makes a CA unrelated to any directory.
func otherCA(t testing.TB) *CA {
	t.Helper()
	ca, err := newCA("Some Other CA", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// leafTemplate is a valid device certificate template at now; test cases
// spoil one thing in it.
func leafTemplate(now time.Time, uris ...string) *x509.Certificate {
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{CommonName: "test"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	for _, s := range uris {
		u, err := url.Parse(s)
		if err != nil {
			panic(err)
		}
		tmpl.URIs = append(tmpl.URIs, u)
	}
	return tmpl
}

// sign signs tmpl with ca and parses the result.
func sign(t testing.TB, tmpl *x509.Certificate, ca *CA) *x509.Certificate {
	t.Helper()
	key, err := newKey()
	if err != nil {
		t.Fatal(err)
	}
	return signKey(t, tmpl, ca, key)
}

func signKey(t testing.TB, tmpl *x509.Certificate, ca *CA, key *ecdsa.PrivateKey) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func mustParseCert(t testing.TB, pemBytes []byte) *x509.Certificate {
	t.Helper()
	cert, err := parseCertPEM(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func pool(t testing.TB, ca *CA) *x509.CertPool {
	t.Helper()
	p, err := Pool(ca.PEM)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var big1 = big.NewInt(1)
