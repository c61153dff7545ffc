package certs

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Files of a certificate directory.
const (
	deviceCACert = "device-ca.crt"
	deviceCAKey  = "device-ca.key"
	fabricCACert = "fabric-ca.crt"
	fabricCAKey  = "fabric-ca.key"
	tokenKeyFile = "token.key"
	tokenPubFile = "token.pub"
	crlFile      = "crl.pem"
	indexFile    = "index.json"
)

const (
	// caValidity is how long a CA made by Init lasts.
	caValidity = 10 * 365 * 24 * time.Hour
	// backdate is subtracted from NotBefore so that peers whose clock is a
	// little behind accept a certificate issued a moment ago.
	backdate = 5 * time.Minute
)

// CA is a certificate authority found in a certificate directory.
type CA struct {
	Cert *x509.Certificate
	PEM  []byte        // Cert, PEM encoded, as read from or written to the directory
	Key  crypto.Signer // nil when the directory holds only the certificate
}

// Authority is a certificate directory: its CAs, token keys and index of
// issued certificates. Fields are nil for files the directory does not hold:
// a gateway's copy typically has the device CA certificate without its key.
//
// An Authority may be used from several goroutines. Two processes must not
// issue or revoke in the same directory at the same moment: each write is
// atomic, but one could overwrite the other's index update.
type Authority struct {
	Dir            string
	DeviceCA       *CA                // signs devices and gateways, and the CRL
	FabricCA       *CA                // signs edge and core nodes
	TokenKey       ed25519.PrivateKey // signs API tokens
	TokenPublicKey ed25519.PublicKey  // verifies API tokens

	// Now is the clock used to issue and revoke; nil means time.Now.
	Now func() time.Time

	mu sync.Mutex // serialises index and CRL updates
}

func (a *Authority) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

// Init creates a certificate directory in dir: the device CA, the fabric
// CA and the token key pair. It refuses, with ErrExists, to touch a
// directory that already holds any of them (or an index or CRL), unless
// force is set; then it replaces them all and removes the index and CRL,
// which belonged to the old CAs. Every certificate issued by the old CAs
// stops verifying.
func Init(dir string, force bool) error {
	if !force {
		for _, name := range []string{deviceCACert, deviceCAKey, fabricCACert, fabricCAKey, tokenKeyFile, tokenPubFile, indexFile, crlFile} {
			if _, err := os.Lstat(filepath.Join(dir, name)); err == nil {
				return fmt.Errorf("%w: %s", ErrExists, filepath.Join(dir, name))
			} else if !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("certs: init: %w", err)
			}
		}
	}
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return fmt.Errorf("certs: init: %w", err)
	}
	now := time.Now()
	for _, ca := range []struct{ name, cert, key string }{
		{"Weft Device CA", deviceCACert, deviceCAKey},
		{"Weft Fabric CA", fabricCACert, fabricCAKey},
	} {
		c, err := newCA(ca.name, now)
		if err != nil {
			return fmt.Errorf("certs: init: %s: %w", ca.name, err)
		}
		kp, err := keyPEM(c.Key)
		if err != nil {
			return fmt.Errorf("certs: init: %s: %w", ca.name, err)
		}
		if err := writeFile(filepath.Join(dir, ca.key), kp, keyMode); err != nil {
			return fmt.Errorf("certs: init: %w", err)
		}
		if err := writeFile(filepath.Join(dir, ca.cert), c.PEM, certMode); err != nil {
			return fmt.Errorf("certs: init: %w", err)
		}
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("certs: init: token key: %w", err)
	}
	privPEM, err := keyPEM(priv)
	if err != nil {
		return fmt.Errorf("certs: init: token key: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return fmt.Errorf("certs: init: token key: %w", err)
	}
	if err := writeFile(filepath.Join(dir, tokenKeyFile), privPEM, keyMode); err != nil {
		return fmt.Errorf("certs: init: %w", err)
	}
	if err := writeFile(filepath.Join(dir, tokenPubFile), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), certMode); err != nil {
		return fmt.Errorf("certs: init: %w", err)
	}
	if force {
		for _, name := range []string{indexFile, crlFile} {
			if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("certs: init: %w", err)
			}
		}
	}
	return nil
}

// newCA makes a self-signed ECDSA P-256 CA that may sign leaves only (no
// intermediates).
func newCA(name string, now time.Time) (*CA, error) {
	key, err := newKey()
	if err != nil {
		return nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"Weft"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(caValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, PEM: certPEM(der), Key: key}, nil
}

// Load reads the certificate directory dir. Every file is optional except
// that at least one CA certificate must be present (ErrNoCA otherwise); a
// CA key that does not match its certificate is an error.
func Load(dir string) (*Authority, error) {
	a := &Authority{Dir: dir}
	var err error
	if a.DeviceCA, err = loadCA(dir, deviceCACert, deviceCAKey); err != nil {
		return nil, err
	}
	if a.FabricCA, err = loadCA(dir, fabricCACert, fabricCAKey); err != nil {
		return nil, err
	}
	if a.DeviceCA == nil && a.FabricCA == nil {
		return nil, fmt.Errorf("%w: %s (run weft certs init)", ErrNoCA, dir)
	}

	if data, err := readOptional(dir, tokenKeyFile); err != nil {
		return nil, err
	} else if data != nil {
		k, err := parseKeyPEM(data)
		if err != nil {
			return nil, fmt.Errorf("certs: %s: %w", filepath.Join(dir, tokenKeyFile), err)
		}
		priv, ok := k.(ed25519.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("certs: %s: not an Ed25519 key", filepath.Join(dir, tokenKeyFile))
		}
		a.TokenKey = priv
		a.TokenPublicKey = priv.Public().(ed25519.PublicKey)
	}
	if data, err := readOptional(dir, tokenPubFile); err != nil {
		return nil, err
	} else if data != nil {
		pub, err := ParseTokenPublicKey(data)
		if err != nil {
			return nil, fmt.Errorf("certs: %s: %w", filepath.Join(dir, tokenPubFile), err)
		}
		if a.TokenPublicKey != nil && !a.TokenPublicKey.Equal(pub) {
			return nil, fmt.Errorf("certs: %s does not match %s", tokenPubFile, tokenKeyFile)
		}
		a.TokenPublicKey = pub
	}
	return a, nil
}

// readOptional reads dir/name, returning nil data if it does not exist.
func readOptional(dir, name string) ([]byte, error) {
	data, err := os.ReadFile(filepath.Join(dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	return data, nil
}

// loadCA reads a CA certificate and its key if present; it returns nil if
// the certificate is absent.
func loadCA(dir, certName, keyName string) (*CA, error) {
	data, err := readOptional(dir, certName)
	if err != nil || data == nil {
		return nil, err
	}
	cert, err := parseCertPEM(data)
	if err != nil {
		return nil, fmt.Errorf("certs: %s: %w", filepath.Join(dir, certName), err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("certs: %s: not a CA certificate", filepath.Join(dir, certName))
	}
	ca := &CA{Cert: cert, PEM: data}
	data, err = readOptional(dir, keyName)
	if err != nil || data == nil {
		return ca, err
	}
	key, err := parseKeyPEM(data)
	if err != nil {
		return nil, fmt.Errorf("certs: %s: %w", filepath.Join(dir, keyName), err)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("certs: %s does not match %s", keyName, certName)
	}
	ca.Key = key
	return ca, nil
}

// Files returns where a certificate directory keeps the certificate and
// key of a device (by id), gateway or node (by name):
// dir/devices/ID.crt, dir/gateways/NAME.crt, dir/nodes/NAME.crt, and .key.
func Files(dir string, kind Kind, name string) (certFile, keyFile string) {
	var sub string
	switch kind {
	case KindDevice:
		sub = "devices"
	case KindGateway:
		sub = "gateways"
	case KindNode:
		sub = "nodes"
	default:
		sub = string(kind)
	}
	base := filepath.Join(dir, sub, name)
	return base + ".crt", base + ".key"
}

// CRLFile returns the path of the directory's revocation list.
func (a *Authority) CRLFile() string { return filepath.Join(a.Dir, crlFile) }
