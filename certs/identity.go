package certs

import (
	"crypto/x509"
	"fmt"
	"net/url"
	"slices"
	"time"
)

// DeviceIdentity checks that cert is a valid device leaf at time now and
// returns its identity. It does not check the signature chain or
// revocation: use it on a chain the TLS stack has verified, or use Verify.
//
// A device certificate is not a CA, has the digital signature key usage
// (and neither certificate nor CRL signing), the client authentication
// extended key usage, and exactly one weft URI SAN, of the form
// weft://device/<class>/<id>. URI SANs of other schemes are ignored.
func DeviceIdentity(cert *x509.Certificate, now time.Time) (Identity, error) {
	return identity(cert, KindDevice, now)
}

// NodeIdentity is DeviceIdentity for edge and core nodes: the single weft
// URI SAN is weft://node/<role>/<name>, and the certificate allows both
// server and client authentication, as each node is both on QUIC links.
func NodeIdentity(cert *x509.Certificate, now time.Time) (Identity, error) {
	return identity(cert, KindNode, now)
}

// GatewayIdentity is DeviceIdentity for a gateway's server certificate:
// the single weft URI SAN is weft://gateway/<name>, and the certificate
// allows server authentication.
func GatewayIdentity(cert *x509.Certificate, now time.Time) (Identity, error) {
	return identity(cert, KindGateway, now)
}

// Verify checks that cert chains to one of roots (no intermediates), then
// that it is a valid leaf of the given kind at time now, and returns its
// identity. It does not check revocation.
func Verify(cert *x509.Certificate, roots *x509.CertPool, kind Kind, now time.Time) (Identity, error) {
	id, err := identity(cert, kind, now)
	if err != nil {
		return Identity{}, err
	}
	_, err = cert.Verify(x509.VerifyOptions{
		Roots:       roots,
		CurrentTime: now,
		KeyUsages:   extKeyUsages(kind),
	})
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %w", ErrUnknownAuthority, err)
	}
	return id, nil
}

// extKeyUsages returns the extended key usages a leaf of kind must carry.
func extKeyUsages(kind Kind) []x509.ExtKeyUsage {
	switch kind {
	case KindDevice:
		return []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	case KindGateway:
		return []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	case KindNode:
		return []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	}
	return nil
}

// identity runs the checks shared by DeviceIdentity, NodeIdentity and
// GatewayIdentity.
func identity(cert *x509.Certificate, kind Kind, now time.Time) (Identity, error) {
	if cert == nil {
		return Identity{}, fmt.Errorf("%w: no certificate", ErrNoIdentity)
	}
	if cert.IsCA {
		return Identity{}, ErrCALeaf
	}
	ku := cert.KeyUsage
	if ku&x509.KeyUsageDigitalSignature == 0 || ku&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != 0 {
		return Identity{}, fmt.Errorf("%w: want digital signature only for a %s", ErrKeyUsage, kind)
	}
	want := extKeyUsages(kind)
	if want == nil {
		return Identity{}, fmt.Errorf("%w: kind %q", ErrWrongKind, kind)
	}
	for _, u := range want {
		if !slices.Contains(cert.ExtKeyUsage, u) {
			return Identity{}, fmt.Errorf("%w: a %s needs %s", ErrExtKeyUsage, kind, extKeyUsageName(u))
		}
	}
	if now.Before(cert.NotBefore) {
		return Identity{}, fmt.Errorf("%w: valid from %s", ErrNotYetValid, cert.NotBefore.UTC().Format(time.RFC3339))
	}
	if now.After(cert.NotAfter) {
		return Identity{}, fmt.Errorf("%w: valid until %s", ErrExpired, cert.NotAfter.UTC().Format(time.RFC3339))
	}

	var weft []*url.URL
	for _, u := range cert.URIs {
		if u.Scheme == "weft" {
			weft = append(weft, u)
		}
	}
	switch {
	case len(weft) == 0:
		return Identity{}, ErrNoIdentity
	case len(weft) > 1:
		return Identity{}, fmt.Errorf("%w: %d weft URIs", ErrMultipleIdentities, len(weft))
	}
	id, err := parseURI(weft[0])
	if err != nil {
		return Identity{}, err
	}
	if id.Kind != kind {
		return Identity{}, fmt.Errorf("%w: want a %s, have %s", ErrWrongKind, kind, id.URI())
	}
	id.Serial = cert.SerialNumber
	id.NotAfter = cert.NotAfter
	return id, nil
}

func extKeyUsageName(u x509.ExtKeyUsage) string {
	switch u {
	case x509.ExtKeyUsageClientAuth:
		return "client authentication"
	case x509.ExtKeyUsageServerAuth:
		return "server authentication"
	}
	return fmt.Sprintf("extended key usage %d", u)
}
