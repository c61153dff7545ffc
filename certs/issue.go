package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
)

// DefaultValidity is the validity of a leaf certificate when the caller
// asks for none (zero).
const DefaultValidity = 365 * 24 * time.Hour

// Issued is a freshly issued certificate and, unless it was signed from a
// request, its private key.
type Issued struct {
	Entry   // as recorded in the index
	CertPEM []byte
	KeyPEM  []byte // PKCS #8; nil when signed from a CSR (the device keeps its key)
}

// IssueDevice makes a key pair and a device certificate for device id of
// the given class, signed by the device CA, records it in the index and
// returns it. The certificate allows client authentication and carries the
// URI SAN weft://device/<class>/<id>. A zero validity means
// DefaultValidity; a validity beyond the CA's is cut to the CA's.
func (a *Authority) IssueDevice(id, class string, validity time.Duration) (*Issued, error) {
	return a.issueWithKey(a.DeviceCA, Identity{Kind: KindDevice, ID: id, Class: class}, nil, validity)
}

// IssueGateway makes a key pair and a gateway server certificate, signed
// by the device CA so that devices verify it against the one anchor they
// hold. It carries the URI SAN weft://gateway/<name> and hosts as DNS and
// IP SANs; at least one host is required.
func (a *Authority) IssueGateway(name string, hosts []string, validity time.Duration) (*Issued, error) {
	return a.issueWithKey(a.DeviceCA, Identity{Kind: KindGateway, Name: name}, hosts, validity)
}

// IssueNode makes a key pair and a certificate for an edge or core node,
// signed by the fabric CA. It allows both server and client authentication
// (QUIC links are mutual TLS) and carries the URI SAN
// weft://node/<role>/<name> and hosts as DNS and IP SANs; at least one host
// is required.
func (a *Authority) IssueNode(role, name string, hosts []string, validity time.Duration) (*Issued, error) {
	return a.issueWithKey(a.FabricCA, Identity{Kind: KindNode, Role: role, Name: name}, hosts, validity)
}

// SignCSR signs a device's certificate request, for a factory line where
// the device makes its key and never lets it out. The device id is the
// request's subject common name; the class is the signer's to give. The
// request may also carry the URI SAN weft://device/<class>/<id>, which must
// then name the same class and id; other SANs in it are ignored. Its key
// must be ECDSA P-256 and its signature valid. The result has no KeyPEM.
func (a *Authority) SignCSR(csrPEM []byte, class string, validity time.Duration) (*Issued, error) {
	der, err := decodePEM(csrPEM, "CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCSR, err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCSR, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCSR, err)
	}
	if k, ok := csr.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%w: key must be ECDSA P-256", ErrCSR)
	}
	id := Identity{Kind: KindDevice, ID: csr.Subject.CommonName, Class: class}
	if err := checkIdentity(id); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCSR, err)
	}
	var weft []*url.URL
	for _, u := range csr.URIs {
		if u.Scheme == "weft" {
			weft = append(weft, u)
		}
	}
	switch {
	case len(weft) > 1:
		return nil, fmt.Errorf("%w: %d weft URIs", ErrCSR, len(weft))
	case len(weft) == 1 && weft[0].String() != id.URI():
		return nil, fmt.Errorf("%w: URI %s does not match %s", ErrCSR, weft[0], id.URI())
	}
	return a.issue(a.DeviceCA, id, nil, csr.PublicKey, nil, validity)
}

// Save writes an issued certificate, and its key if any, where Files puts
// them in the directory, and returns the paths written (keyFile is empty
// without a key).
func (a *Authority) Save(iss *Issued) (certFile, keyFile string, err error) {
	name := iss.Name
	if iss.Kind == KindDevice {
		name = iss.ID
	}
	if err := checkName(string(iss.Kind)+" name", name); err != nil {
		return "", "", err
	}
	certFile, keyFile = Files(a.Dir, iss.Kind, name)
	if iss.KeyPEM != nil {
		if err := writeFile(keyFile, iss.KeyPEM, keyMode); err != nil {
			return "", "", fmt.Errorf("certs: save: %w", err)
		}
	} else {
		keyFile = ""
	}
	if err := writeFile(certFile, iss.CertPEM, certMode); err != nil {
		return "", "", fmt.Errorf("certs: save: %w", err)
	}
	return certFile, keyFile, nil
}

func (a *Authority) issueWithKey(ca *CA, id Identity, hosts []string, validity time.Duration) (*Issued, error) {
	if err := checkIdentity(id); err != nil {
		return nil, err
	}
	key, err := newKey()
	if err != nil {
		return nil, fmt.Errorf("certs: issue %s: %w", id.URI(), err)
	}
	return a.issue(ca, id, hosts, key.Public(), key, validity)
}

// issue signs a leaf for id with ca and records it. key, if not nil, is
// the private key of pub, returned PEM encoded.
func (a *Authority) issue(ca *CA, id Identity, hosts []string, pub crypto.PublicKey, key crypto.PrivateKey, validity time.Duration) (*Issued, error) {
	iss, err := a.sign(ca, id, hosts, pub, key, validity)
	if err != nil {
		return nil, err
	}
	if err := a.record(iss.Entry); err != nil {
		return nil, err
	}
	return iss, nil
}

// IssueDevices is IssueDevice for many devices of one class, with one
// index update for all of them: for fleets, simulators and benchmarks.
func (a *Authority) IssueDevices(ids []string, class string, validity time.Duration) ([]*Issued, error) {
	out := make([]*Issued, 0, len(ids))
	entries := make([]Entry, 0, len(ids))
	for _, id := range ids {
		ident := Identity{Kind: KindDevice, ID: id, Class: class}
		if err := checkIdentity(ident); err != nil {
			return nil, err
		}
		key, err := newKey()
		if err != nil {
			return nil, fmt.Errorf("certs: issue %s: %w", ident.URI(), err)
		}
		iss, err := a.sign(a.DeviceCA, ident, nil, key.Public(), key, validity)
		if err != nil {
			return nil, err
		}
		out = append(out, iss)
		entries = append(entries, iss.Entry)
	}
	if err := a.record(entries...); err != nil {
		return nil, err
	}
	return out, nil
}

// sign signs a leaf for id with ca without recording it.
func (a *Authority) sign(ca *CA, id Identity, hosts []string, pub crypto.PublicKey, key crypto.PrivateKey, validity time.Duration) (*Issued, error) {
	if err := checkIdentity(id); err != nil {
		return nil, err
	}
	fail := func(err error) (*Issued, error) {
		return nil, fmt.Errorf("certs: issue %s: %w", id.URI(), err)
	}
	if ca == nil || ca.Key == nil {
		which := "device CA"
		if id.Kind == KindNode {
			which = "fabric CA"
		}
		return nil, fmt.Errorf("%w: %s key needed to issue %s", ErrNoKey, which, id.URI())
	}
	if validity < 0 {
		return fail(fmt.Errorf("negative validity %s", validity))
	}
	if validity == 0 {
		validity = DefaultValidity
	}
	u, err := url.Parse(id.URI())
	if err != nil {
		return fail(err)
	}
	serial, err := newSerial()
	if err != nil {
		return fail(err)
	}
	now := a.now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(validity),
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           extKeyUsages(id.Kind),
		URIs:                  []*url.URL{u},
	}
	if tmpl.NotAfter.After(ca.Cert.NotAfter) {
		tmpl.NotAfter = ca.Cert.NotAfter
	}
	switch id.Kind {
	case KindDevice:
		tmpl.Subject = pkix.Name{CommonName: id.ID, OrganizationalUnit: []string{id.Class}}
	default:
		tmpl.Subject = pkix.Name{CommonName: id.Name}
		if len(hosts) == 0 {
			return nil, fmt.Errorf("%w: a %s needs at least one host", ErrInvalidName, id.Kind)
		}
		for _, h := range hosts {
			if ip := net.ParseIP(h); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			} else if validHost(h) {
				tmpl.DNSNames = append(tmpl.DNSNames, strings.ToLower(h))
			} else {
				return nil, fmt.Errorf("%w: host %q: want a DNS name or IP address", ErrInvalidName, h)
			}
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return fail(err)
	}
	iss := &Issued{
		Entry: Entry{
			Serial:    FormatSerial(serial),
			Kind:      id.Kind,
			ID:        id.ID,
			Class:     id.Class,
			Role:      id.Role,
			Name:      id.Name,
			Hosts:     hosts,
			NotBefore: tmpl.NotBefore.UTC().Truncate(time.Second),
			NotAfter:  tmpl.NotAfter.UTC().Truncate(time.Second),
		},
		CertPEM: certPEM(der),
	}
	if key != nil {
		if iss.KeyPEM, err = keyPEM(key); err != nil {
			return fail(err)
		}
	}
	return iss, nil
}

// validHost reports whether h is a DNS name a certificate may carry:
// dot-separated labels of letters, digits and hyphens, optionally starting
// with a "*." wildcard.
func validHost(h string) bool {
	h = strings.TrimPrefix(h, "*.")
	if h == "" || len(h) > 253 {
		return false
	}
	for label := range strings.SplitSeq(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}
