package node

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/weft-io/weft/api"
	"github.com/weft-io/weft/certs"
)

// HSTS is the Strict-Transport-Security header a node sends over HTTPS:
// browsers then refuse plain HTTP to it for a year.
const HSTS = "max-age=31536000"

// ErrPlainHTTP refuses plain HTTP on an address other than loopback.
var ErrPlainHTTP = errors.New("http: plain HTTP is refused on an address other than loopback: give a certificate (--http-tls-cert, --http-tls-key) or allow it with --http-insecure")

// checkPlain says whether plain HTTP may listen on addr: on a loopback
// address, or when insecure.
func checkPlain(addr string, f api.TLSFiles) error {
	if f.Insecure || IsLoopback(addr) {
		return nil
	}
	return fmt.Errorf("%w (address %s)", ErrPlainHTTP, addr)
}

// IsLoopback reports whether the listen address addr (host:port) is on
// the loopback interface only: 127.0.0.0/8, ::1 or localhost. An empty
// host is every interface.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// certFiles serves a certificate from files, reading them again when
// their size or modification time changes (looked at most once a
// second, on a handshake), so that a renewed certificate is served
// without a restart. A pair that cannot be read or does not match keeps
// the one before, with an error logged.
type certFiles struct {
	certFile, keyFile string
	log               *slog.Logger
	now               func() time.Time

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   string // of the files the cert was read from
	checked time.Time
}

func newCertFiles(certFile, keyFile string, log *slog.Logger) (*certFiles, error) {
	c := &certFiles{certFile: certFile, keyFile: keyFile, log: log, now: time.Now}
	stamp, err := c.stampNow()
	if err != nil {
		return nil, fmt.Errorf("http: tls: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("http: tls: %w", err)
	}
	c.cert, c.stamp, c.checked = &cert, stamp, c.now()
	return c, nil
}

// stampNow describes the files' sizes and modification times.
func (c *certFiles) stampNow() (string, error) {
	var b strings.Builder
	for _, f := range []string{c.certFile, c.keyFile} {
		fi, err := os.Stat(f)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "%d.%d;", fi.Size(), fi.ModTime().UnixNano())
	}
	return b.String(), nil
}

// reload reads the files again if they changed since the last look.
func (c *certFiles) reload() {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if now.Sub(c.checked) < time.Second && !now.Before(c.checked) {
		return
	}
	c.checked = now
	stamp, err := c.stampNow()
	if err != nil || stamp == c.stamp {
		return
	}
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		// Perhaps halfway through being replaced: look again next time.
		c.log.Error("https certificate not reloaded; serving the previous one", "cert", c.certFile, "err", err)
		return
	}
	c.cert, c.stamp = &cert, stamp
	c.log.Info("https certificate reloaded", "cert", c.certFile)
}

// GetCertificate is tls.Config.GetCertificate.
func (c *certFiles) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.reload()
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cert, nil
}

// tlsConfig is the TLS configuration of a node's HTTPS listener.
func (c *certFiles) tlsConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: c.GetCertificate, NextProtos: []string{"h2", "http/1.1"}}
}

// hsts adds HSTS to every answer of h.
func hsts(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Strict-Transport-Security", HSTS)
		h.ServeHTTP(w, r)
	})
}

// IssueHTTPS makes a key and a TLS server certificate for a node's HTTPS
// listener, signed by ca (the fabric CA), for operators without a PKI of
// their own: common name name, hosts as DNS and IP SANs (at least one),
// server authentication only, valid for validity (cut to the CA's). It
// returns both PEM encoded.
func IssueHTTPS(ca *certs.CA, name string, hosts []string, validity time.Duration, now time.Time) (certPEM, keyPEM []byte, err error) {
	if ca == nil || ca.Key == nil || ca.Cert == nil {
		return nil, nil, fmt.Errorf("%w: the fabric CA's key is needed to issue an HTTPS certificate", certs.ErrNoKey)
	}
	if !certs.ValidName(name) {
		return nil, nil, fmt.Errorf("%w: name %q", certs.ErrInvalidName, name)
	}
	if len(hosts) == 0 {
		return nil, nil, fmt.Errorf("%w: an HTTPS certificate needs at least one host", certs.ErrInvalidName)
	}
	if validity <= 0 {
		validity = certs.DefaultValidity
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial.Add(serial, big.NewInt(1)),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-5 * time.Minute),
		NotAfter:              now.Add(validity),
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if tmpl.NotAfter.After(ca.Cert.NotAfter) {
		tmpl.NotAfter = ca.Cert.NotAfter
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" && !strings.ContainsAny(h, " /:@") {
			tmpl.DNSNames = append(tmpl.DNSNames, strings.ToLower(h))
		} else {
			return nil, nil, fmt.Errorf("%w: host %q: want a DNS name or IP address", certs.ErrInvalidName, h)
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("http: issue https certificate: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	var cb bytes.Buffer
	pem.Encode(&cb, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	return cb.Bytes(), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), nil
}
