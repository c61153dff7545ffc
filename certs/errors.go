package certs

import "errors"

// Errors returned by this package. They are sentinels: compare with
// errors.Is, as most are wrapped with detail (which name, which file).
var (
	// Directory and issuing.
	ErrInvalidName = errors.New("certs: invalid name")
	ErrExists      = errors.New("certs: certificate directory already initialised")
	ErrNoCA        = errors.New("certs: no CA in directory")
	ErrNoKey       = errors.New("certs: key not present")
	ErrNotFound    = errors.New("certs: no such certificate")
	ErrCSR         = errors.New("certs: invalid certificate request")

	// Identity checks of a peer certificate.
	ErrNoIdentity         = errors.New("certs: no weft identity in certificate")
	ErrMultipleIdentities = errors.New("certs: several weft identities in certificate")
	ErrMalformedIdentity  = errors.New("certs: malformed weft identity")
	ErrWrongKind          = errors.New("certs: weft identity of another kind")
	ErrCALeaf             = errors.New("certs: CA certificate used as a leaf")
	ErrKeyUsage           = errors.New("certs: wrong key usage")
	ErrExtKeyUsage        = errors.New("certs: wrong extended key usage")
	ErrExpired            = errors.New("certs: certificate expired")
	ErrNotYetValid        = errors.New("certs: certificate not yet valid")
	ErrUnknownAuthority   = errors.New("certs: certificate not signed by a trusted CA")
	ErrRevoked            = errors.New("certs: certificate revoked")

	// Revocation lists.
	ErrCRL = errors.New("certs: invalid CRL")
)
