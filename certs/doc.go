// Package certs is Weft's public key infrastructure: the certificate
// authorities, issuing of device, gateway and node certificates, the
// identities read back from them, revocation, and API tokens.
//
// # Directory
//
// Everything lives in a certificate directory, created by Init and opened
// by Load as an Authority:
//
//	device-ca.crt, device-ca.key  the manufacturer CA: signs devices, gateways and the CRL
//	fabric-ca.crt, fabric-ca.key  signs edge and core nodes (QUIC links)
//	token.key, token.pub          Ed25519 key pair for API tokens (PKCS #8 / PKIX PEM)
//	devices/ID.crt, ID.key        issued leaves, by kind
//	gateways/NAME.crt, NAME.key
//	nodes/NAME.crt, NAME.key
//	crl.pem                       revoked serials, signed by the device CA
//	index.json                    every certificate issued, for listing and revoking
//
// Keys are ECDSA P-256 (token keys Ed25519), written with mode 0600 in
// directories of mode 0700. Nodes get copies of only what they need: a
// gateway the device CA certificate, its own pair and the CRL; a node the
// fabric CA certificate, its own pair, and the device CA certificate and
// CRL; the core's API the token public key.
//
// # Identity
//
// A leaf names who it is in exactly one weft URI SAN:
// weft://device/<class>/<id>, weft://gateway/<name> or
// weft://node/<role>/<name> (role edge or core). Ids, classes and names
// are 1 to 128 characters from [A-Za-z0-9._-] (see ValidName).
// DeviceIdentity, NodeIdentity and GatewayIdentity check a certificate the
// TLS stack has verified (not a CA, key usage, extended key usage,
// validity, the URI) and return its Identity; Verify also checks the chain
// against a CA pool. Failures are sentinel errors such as ErrExpired or
// ErrMultipleIdentities, for errors.Is.
//
// # Revocation
//
// Authority.Revoke and Authority.RevokeDevice mark certificates revoked in
// the index and rewrite crl.pem. Revocations loads that file, checks its
// signature, and with Run picks up a new one within a second; OnChange
// tells a gateway to close the sessions of newly revoked devices.
//
// # TLS
//
// Pool builds a CA pool without the system roots; KeyPair serves a
// certificate and key that are reloaded when their files change;
// VerifyConnection is the tls.Config hook that checks the peer's identity
// and revocation on every handshake, resumed sessions included;
// ServerConfig and ClientConfig put them together for the gateway and the
// sync links.
//
// # Tokens
//
// IssueToken and VerifyToken make and check the EdDSA JWTs of the core's
// HTTP API, carrying a subject, a Role and an optional scope.
package certs
