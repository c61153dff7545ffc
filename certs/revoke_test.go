package certs

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"testing"
	"time"
)

func serialOf(t testing.TB, iss *Issued) *big.Int {
	t.Helper()
	return mustParseCert(t, iss.CertPEM).SerialNumber
}

func readCRL(t testing.TB, a *Authority) *x509.RevocationList {
	t.Helper()
	data, err := os.ReadFile(a.CRLFile())
	if err != nil {
		t.Fatal(err)
	}
	crl, err := parseCRL(data, a.DeviceCA.Cert)
	if err != nil {
		t.Fatal(err)
	}
	return crl
}

func TestRevoke(t *testing.T) {
	a := newAuthority(t)
	issue := func(id string) *big.Int {
		iss, err := a.IssueDevice(id, "pump", 0)
		if err != nil {
			t.Fatal(err)
		}
		return serialOf(t, iss)
	}
	d1a, d1b, d2 := issue("d1"), issue("d1"), issue("d2")
	node, err := a.IssueNode(EdgeNode, "e1", []string{"e1"}, 0)
	if err != nil {
		t.Fatal(err)
	}

	r, err := a.Revocations(nil)
	if err != nil {
		t.Fatalf("missing CRL: %v", err)
	}
	if r.Revoked(d1a) {
		t.Error("revoked before any CRL")
	}

	revoked, err := a.RevokeDevice("d1")
	if err != nil || len(revoked) != 2 {
		t.Fatalf("RevokeDevice = %v, %v; want both d1 certificates", revoked, err)
	}
	if n := readCRL(t, a).Number; n.Cmp(big1) != 0 {
		t.Errorf("first CRL number %v, want 1", n)
	}
	if changed, err := r.Reload(); !changed || err != nil {
		t.Fatalf("Reload = %v, %v; want a change", changed, err)
	}
	if !r.Revoked(d1a) || !r.Revoked(d1b) || r.Revoked(d2) {
		t.Errorf("revoked d1a %v d1b %v d2 %v; want true true false", r.Revoked(d1a), r.Revoked(d1b), r.Revoked(d2))
	}
	if changed, err := r.Reload(); changed || err != nil {
		t.Errorf("Reload of the same file = %v, %v", changed, err)
	}

	if revoked, err := a.RevokeDevice("d1"); err != nil || len(revoked) != 0 {
		t.Errorf("RevokeDevice again = %v, %v; want nothing new", revoked, err)
	}
	if _, err := a.RevokeDevice("nobody"); !errors.Is(err, ErrNotFound) {
		t.Errorf("RevokeDevice(nobody): err = %v, want ErrNotFound", err)
	}
	old, err := os.ReadFile(a.CRLFile())
	if err != nil {
		t.Fatal(err)
	}

	// By serial: a node, and a serial never issued here.
	e, err := a.Revoke(serialOf(t, node))
	if err != nil || e.Kind != KindNode || !e.Revoked() {
		t.Fatalf("Revoke(node) = %+v, %v", e, err)
	}
	stranger := big.NewInt(0xbeef)
	if e, err := a.Revoke(stranger); err != nil || e.Kind != "" || e.Subject() != "-" {
		t.Fatalf("Revoke(stranger) = %+v, %v", e, err)
	}
	crl := readCRL(t, a)
	if crl.Number.Cmp(big.NewInt(3)) != 0 || len(crl.RevokedCertificateEntries) != 4 {
		t.Errorf("CRL number %v with %d entries, want 3 with 4", crl.Number, len(crl.RevokedCertificateEntries))
	}
	if changed, err := r.Reload(); !changed || err != nil || !r.Revoked(stranger) || !r.Revoked(serialOf(t, node)) {
		t.Errorf("Reload = %v, %v", changed, err)
	}

	// An older CRL (replayed) does not un-revoke.
	if err := writeFile(a.CRLFile(), old, certMode); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Reload(); !errors.Is(err, ErrCRL) || !r.Revoked(stranger) {
		t.Errorf("older CRL: err = %v, stranger revoked %v", err, r.Revoked(stranger))
	}
	// Nor does a CRL signed by another CA, nor garbage, nor removing the file.
	other := otherCA(t)
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(99), ThisUpdate: time.Now(), NextUpdate: time.Now().Add(time.Hour)}, other.Cert, other.Key)
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{
		"forged":    pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}),
		"truncated": old[:len(old)/2],
		"garbage":   []byte("not a CRL"),
	} {
		if err := writeFile(a.CRLFile(), data, certMode); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Reload(); !errors.Is(err, ErrCRL) || !r.Revoked(stranger) {
			t.Errorf("%s CRL: err = %v, stranger revoked %v", name, err, r.Revoked(stranger))
		}
	}
	if err := os.Remove(a.CRLFile()); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Reload(); !errors.Is(err, ErrCRL) || !r.Revoked(stranger) {
		t.Errorf("removed CRL: err = %v, stranger revoked %v", err, r.Revoked(stranger))
	}
	if _, err := NewRevocations(a.CRLFile()+".x", nil, nil); !errors.Is(err, ErrCRL) {
		t.Errorf("no issuer: err = %v", err)
	}

	// The next revocation rebuilds the CRL from the index, numbered on.
	if _, err := a.Revoke(d2); err != nil {
		t.Fatal(err)
	}
	crl = readCRL(t, a)
	if crl.Number.Cmp(big.NewInt(4)) != 0 || len(crl.RevokedCertificateEntries) != 5 {
		t.Errorf("CRL number %v with %d entries, want 4 with 5", crl.Number, len(crl.RevokedCertificateEntries))
	}
	if changed, err := r.Reload(); !changed || err != nil || !r.Revoked(d2) {
		t.Errorf("Reload = %v, %v", changed, err)
	}

	l, err := a.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range l {
		if !e.Revoked() {
			t.Errorf("%s %s not revoked in index", e.Serial, e.Subject())
		}
	}
}

// TestRevocationsRun checks that a running watcher sees a new revocation
// and tells its subscribers.
func TestRevocationsRun(t *testing.T) {
	a := newAuthority(t)
	iss, err := a.IssueDevice("d1", "pump", 0)
	if err != nil {
		t.Fatal(err)
	}
	r, err := a.Revocations(nil)
	if err != nil {
		t.Fatal(err)
	}
	r.interval = 10 * time.Millisecond
	changes := make(chan struct{}, 10)
	r.OnChange(func() { changes <- struct{}{} })

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()

	if _, err := a.RevokeDevice("d1"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changes:
	case <-time.After(10 * time.Second):
		t.Fatal("no change notified")
	}
	if !r.Revoked(serialOf(t, iss)) {
		t.Error("notified, but not revoked")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v", err)
	}
}
