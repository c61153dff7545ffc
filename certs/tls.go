package certs

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// Pool returns a certificate pool holding only the CA certificates in
// caPEM, never the system roots. Every certificate in it must be a CA.
func Pool(caPEM []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	n := 0
	for rest := caPEM; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certs: pool: %w", err)
		}
		if !cert.IsCA {
			return nil, fmt.Errorf("certs: pool: %q is not a CA", cert.Subject.CommonName)
		}
		pool.AddCert(cert)
		n++
	}
	if n == 0 {
		return nil, errors.New("certs: pool: no CA certificate")
	}
	return pool, nil
}

// KeyPair serves a certificate and key from two PEM files (read with
// tls.LoadX509KeyPair) to a tls.Config, and picks up new files without a
// restart: at most once a second, a handshake looks at the files and loads
// them again if either changed. If the new files do not load (for example
// the certificate is replaced but not yet its key), the previous pair stays
// in use.
type KeyPair struct {
	certFile, keyFile string

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   [2]fileStamp
	checked time.Time
}

type fileStamp struct {
	mod  time.Time
	size int64
}

// LoadKeyPair reads a certificate and key from PEM files.
func LoadKeyPair(certFile, keyFile string) (*KeyPair, error) {
	k := &KeyPair{certFile: certFile, keyFile: keyFile}
	if err := k.load(); err != nil {
		return nil, err
	}
	return k, nil
}

func (k *KeyPair) stamps() ([2]fileStamp, error) {
	var s [2]fileStamp
	for i, f := range []string{k.certFile, k.keyFile} {
		fi, err := os.Stat(f)
		if err != nil {
			return s, err
		}
		s[i] = fileStamp{fi.ModTime(), fi.Size()}
	}
	return s, nil
}

// load reads the files; k.mu must be held or k not yet shared.
func (k *KeyPair) load() error {
	s, err := k.stamps()
	if err != nil {
		return fmt.Errorf("certs: key pair: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(k.certFile, k.keyFile)
	if err != nil {
		return fmt.Errorf("certs: key pair %s: %w", k.certFile, err)
	}
	k.cert, k.stamp, k.checked = &cert, s, time.Now()
	return nil
}

// Certificate returns the current pair, reloading it if the files changed.
func (k *KeyPair) Certificate() *tls.Certificate {
	k.mu.Lock()
	defer k.mu.Unlock()
	if time.Since(k.checked) >= time.Second {
		k.checked = time.Now()
		if s, err := k.stamps(); err == nil && s != k.stamp {
			k.load() // on error the previous pair stays
		}
	}
	return k.cert
}

// GetCertificate is for tls.Config.GetCertificate.
func (k *KeyPair) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return k.Certificate(), nil
}

// GetClientCertificate is for tls.Config.GetClientCertificate.
func (k *KeyPair) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return k.Certificate(), nil
}

// PeerIdentity checks the peer of a TLS connection: the leaf of its first
// verified chain must be a valid certificate of the given kind at time now
// and not revoked by rev (which may be nil). It returns ErrUnknownAuthority
// if the TLS stack verified no chain.
func PeerIdentity(cs tls.ConnectionState, kind Kind, rev Revoker, now time.Time) (Identity, error) {
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return Identity{}, fmt.Errorf("%w: no verified chain", ErrUnknownAuthority)
	}
	id, err := identity(cs.VerifiedChains[0][0], kind, now)
	if err != nil {
		return Identity{}, err
	}
	if rev != nil && rev.Revoked(id.Serial) {
		return Identity{}, fmt.Errorf("%w: %s serial %s", ErrRevoked, id.URI(), FormatSerial(id.Serial))
	}
	return id, nil
}

// VerifyConnection returns a tls.Config.VerifyConnection callback that
// calls PeerIdentity. VerifyConnection is the hook to use, not
// VerifyPeerCertificate: crypto/tls calls it on every handshake, resumed
// sessions included, after the chain is verified, whereas
// VerifyPeerCertificate is skipped when a session is resumed. This is how a
// device revoked after its session ticket was issued is still refused. A
// nil now means time.Now.
func VerifyConnection(kind Kind, rev Revoker, now func() time.Time) func(tls.ConnectionState) error {
	if now == nil {
		now = time.Now
	}
	return func(cs tls.ConnectionState) error {
		_, err := PeerIdentity(cs, kind, rev, now())
		return err
	}
}

// ServerConfig returns the TLS configuration of a server whose clients are
// of kind peer: a gateway serving devices (clientCAs = the device CA,
// peer = KindDevice, TLS 1.2 and later) or a node serving nodes (the
// fabric CA, KindNode, TLS 1.3 only). Client certificates are required,
// verified against clientCAs only and checked by VerifyConnection against
// rev. Callers add what their protocol needs (NextProtos for QUIC).
func ServerConfig(pair *KeyPair, clientCAs *x509.CertPool, peer Kind, rev Revoker) *tls.Config {
	return &tls.Config{
		MinVersion:       minVersion(peer),
		GetCertificate:   pair.GetCertificate,
		ClientAuth:       tls.RequireAndVerifyClientCert,
		ClientCAs:        clientCAs,
		VerifyConnection: VerifyConnection(peer, rev, nil),
	}
}

// ClientConfig returns the TLS configuration of a client of a server of
// kind peer: a device to a gateway (rootCAs = the device CA, peer =
// KindGateway) or a node to a node (the fabric CA, KindNode). The server is
// verified against rootCAs only, by host name (set ServerName unless the
// dialler does) and by VerifyConnection against rev, which may be nil.
func ClientConfig(pair *KeyPair, rootCAs *x509.CertPool, peer Kind, rev Revoker) *tls.Config {
	return &tls.Config{
		MinVersion:           minVersion(peer),
		GetClientCertificate: pair.GetClientCertificate,
		RootCAs:              rootCAs,
		VerifyConnection:     VerifyConnection(peer, rev, nil),
	}
}

func minVersion(peer Kind) uint16 {
	if peer == KindNode {
		return tls.VersionTLS13
	}
	return tls.VersionTLS12
}
