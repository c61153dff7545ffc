package certs

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// crlValidity is the NextUpdate horizon written into CRLs. Weft does not
// refuse a CRL past it (the list is distributed with the CA, not fetched),
// but other tools reading crl.pem may.
const crlValidity = 365 * 24 * time.Hour

// Revoke revokes the certificate with the given serial and rewrites the
// directory's CRL (crl.pem), signed by the device CA, with a higher CRL
// number. The serial need not be in the index (for a certificate issued
// elsewhere or before the index was lost); it is then recorded without a
// kind. Revoking a revoked serial changes nothing and is not an error.
// The device CA key is required (ErrNoKey).
//
// The CRL covers every certificate the directory issued, nodes included:
// serials are random 128-bit numbers, unique across both CAs.
func (a *Authority) Revoke(serial *big.Int) (Entry, error) {
	if serial == nil || serial.Sign() <= 0 {
		return Entry{}, fmt.Errorf("certs: revoke: invalid serial")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	ix, err := a.readIndex()
	if err != nil {
		return Entry{}, err
	}
	s := FormatSerial(serial)
	i := ix.find(s)
	if i < 0 {
		ix.Certs = append(ix.Certs, Entry{Serial: s})
		i = len(ix.Certs) - 1
	}
	if !ix.Certs[i].Revoked() {
		ix.Certs[i].RevokedAt = a.now().UTC().Truncate(time.Second)
		if err := a.commitRevocations(ix); err != nil {
			return Entry{}, err
		}
	}
	return ix.Certs[i], nil
}

// RevokeDevice revokes every certificate issued to device id that is not
// revoked yet, as Revoke does, and returns them. It returns ErrNotFound if
// the index holds no certificate for id, and an empty list if all of them
// were revoked already.
func (a *Authority) RevokeDevice(id string) ([]Entry, error) {
	if err := checkName("device id", id); err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	ix, err := a.readIndex()
	if err != nil {
		return nil, err
	}
	found := false
	var revoked []Entry
	now := a.now().UTC().Truncate(time.Second)
	for i, e := range ix.Certs {
		if e.Kind != KindDevice || e.ID != id {
			continue
		}
		found = true
		if !e.Revoked() {
			ix.Certs[i].RevokedAt = now
			revoked = append(revoked, ix.Certs[i])
		}
	}
	if !found {
		return nil, fmt.Errorf("%w: device %q", ErrNotFound, id)
	}
	if len(revoked) > 0 {
		if err := a.commitRevocations(ix); err != nil {
			return nil, err
		}
	}
	return revoked, nil
}

// commitRevocations writes a new CRL listing every revoked serial of ix and
// of the current CRL, then the index. A crash between the two leaves a CRL
// that lists more than the index, never less; the next revocation merges
// the current CRL back in.
func (a *Authority) commitRevocations(ix *index) error {
	ca := a.DeviceCA
	if ca == nil || ca.Key == nil {
		return fmt.Errorf("%w: device CA key needed to sign the CRL", ErrNoKey)
	}
	number := big.NewInt(ix.CRLNumber)
	entries := map[string]x509.RevocationListEntry{}
	if data, err := os.ReadFile(a.CRLFile()); err == nil {
		old, err := parseCRL(data, ca.Cert)
		if err != nil {
			return fmt.Errorf("certs: %s: %w", a.CRLFile(), err)
		}
		for _, e := range old.RevokedCertificateEntries {
			entries[FormatSerial(e.SerialNumber)] = e
		}
		if old.Number != nil && old.Number.Cmp(number) > 0 {
			number.Set(old.Number)
		}
	} else if !os.IsNotExist(err) {
		return fmt.Errorf("certs: %w", err)
	}
	for _, e := range ix.Certs {
		if !e.Revoked() {
			continue
		}
		if _, ok := entries[e.Serial]; ok {
			continue
		}
		serial, err := ParseSerial(e.Serial)
		if err != nil {
			return fmt.Errorf("certs: %s: %w", filepath.Join(a.Dir, indexFile), err)
		}
		entries[e.Serial] = x509.RevocationListEntry{SerialNumber: serial, RevocationTime: e.RevokedAt}
	}
	number.Add(number, big.NewInt(1))
	if !number.IsInt64() {
		return fmt.Errorf("certs: CRL number %s too large", number)
	}
	tmpl := &x509.RevocationList{Number: number, ThisUpdate: a.now().UTC()}
	tmpl.NextUpdate = tmpl.ThisUpdate.Add(crlValidity)
	for _, e := range entries {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, e)
	}
	slices.SortFunc(tmpl.RevokedCertificateEntries, func(x, y x509.RevocationListEntry) int {
		return x.SerialNumber.Cmp(y.SerialNumber)
	})
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.Cert, ca.Key)
	if err != nil {
		return fmt.Errorf("certs: sign CRL: %w", err)
	}
	if err := writeFile(a.CRLFile(), pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), certMode); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	ix.CRLNumber = number.Int64()
	return a.writeIndex(ix)
}

// parseCRL parses a PEM (or DER) CRL and checks that issuer signed it.
func parseCRL(data []byte, issuer *x509.Certificate) (*x509.RevocationList, error) {
	der := data
	if b, _ := pem.Decode(data); b != nil {
		if b.Type != "X509 CRL" {
			return nil, fmt.Errorf("%w: PEM block %q, want \"X509 CRL\"", ErrCRL, b.Type)
		}
		der = b.Bytes
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCRL, err)
	}
	if issuer == nil {
		return nil, fmt.Errorf("%w: no issuer certificate to check it against", ErrCRL)
	}
	if err := crl.CheckSignatureFrom(issuer); err != nil {
		return nil, fmt.Errorf("%w: not signed by %s: %w", ErrCRL, issuer.Subject.CommonName, err)
	}
	return crl, nil
}
