package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"
)

// identityNow is the time identity cases are checked at.
var identityNow = time.Now()

type identityCase struct {
	name  string
	cert  *x509.Certificate
	roots *x509.CertPool
	kind  Kind
	want  Identity // Kind is empty when an error is expected
	err   error
}

// identityCases builds the table shared by TestIdentity and
// FuzzDeviceIdentity: certificates issued by an Authority, and bad ones made
// directly with crypto/x509, each with one defect.
func identityCases(t testing.TB) []identityCase {
	a := newAuthority(t)
	devicePool, fabricPool := pool(t, a.DeviceCA), pool(t, a.FabricCA)
	issued := func(iss *Issued, err error) *x509.Certificate {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return mustParseCert(t, iss.CertPEM)
	}
	device := issued(a.IssueDevice("pump-0042", "pump", 0))
	gateway := issued(a.IssueGateway("gw-1", []string{"gw.example", "127.0.0.1"}, 0))
	node := issued(a.IssueNode(EdgeNode, "truck-7", []string{"truck-7.example"}, 0))

	good := "weft://device/pump/p-1"
	bad := func(mod func(*x509.Certificate), uris ...string) *x509.Certificate {
		tmpl := leafTemplate(identityNow, uris...)
		if mod != nil {
			mod(tmpl)
		}
		return sign(t, tmpl, a.DeviceCA)
	}
	malformed := func(uri string) identityCase {
		return identityCase{name: "malformed " + uri, cert: bad(nil, uri), roots: devicePool, kind: KindDevice, err: ErrMalformedIdentity}
	}

	tmpl := leafTemplate(identityNow, good)
	foreign := sign(t, tmpl, otherCA(t))

	return []identityCase{
		{name: "device", cert: device, roots: devicePool, kind: KindDevice,
			want: Identity{Kind: KindDevice, ID: "pump-0042", Class: "pump"}},
		{name: "gateway", cert: gateway, roots: devicePool, kind: KindGateway,
			want: Identity{Kind: KindGateway, Name: "gw-1"}},
		{name: "node", cert: node, roots: fabricPool, kind: KindNode,
			want: Identity{Kind: KindNode, Role: EdgeNode, Name: "truck-7"}},
		{name: "hand-made device", cert: bad(nil, good), roots: devicePool, kind: KindDevice,
			want: Identity{Kind: KindDevice, ID: "p-1", Class: "pump"}},
		{name: "other URI schemes ignored", cert: bad(nil, "https://example.com/x", good, "urn:x:y"), roots: devicePool, kind: KindDevice,
			want: Identity{Kind: KindDevice, ID: "p-1", Class: "pump"}},

		{name: "unknown CA", cert: foreign, roots: devicePool, kind: KindDevice, err: ErrUnknownAuthority},
		{name: "node CA for a device", cert: device, roots: fabricPool, kind: KindDevice, err: ErrUnknownAuthority},
		{name: "expired", cert: bad(func(c *x509.Certificate) {
			c.NotBefore, c.NotAfter = identityNow.Add(-48*time.Hour), identityNow.Add(-24*time.Hour)
		}, good), roots: devicePool, kind: KindDevice, err: ErrExpired},
		{name: "not yet valid", cert: bad(func(c *x509.Certificate) {
			c.NotBefore, c.NotAfter = identityNow.Add(24*time.Hour), identityNow.Add(48*time.Hour)
		}, good), roots: devicePool, kind: KindDevice, err: ErrNotYetValid},
		{name: "two weft SANs", cert: bad(nil, good, "weft://device/pump/p-2"), roots: devicePool, kind: KindDevice, err: ErrMultipleIdentities},
		{name: "two weft SANs, one malformed", cert: bad(nil, good, "weft://device/x"), roots: devicePool, kind: KindDevice, err: ErrMultipleIdentities},
		{name: "no SAN", cert: bad(nil), roots: devicePool, kind: KindDevice, err: ErrNoIdentity},
		{name: "no weft SAN", cert: bad(nil, "https://device/pump/p-1"), roots: devicePool, kind: KindDevice, err: ErrNoIdentity},
		{name: "CA as leaf", cert: bad(func(c *x509.Certificate) {
			c.IsCA = true
			c.KeyUsage |= x509.KeyUsageCertSign
		}, good), roots: devicePool, kind: KindDevice, err: ErrCALeaf},
		{name: "real CA as leaf", cert: a.DeviceCA.Cert, roots: devicePool, kind: KindDevice, err: ErrCALeaf},
		{name: "server auth only", cert: bad(func(c *x509.Certificate) {
			c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		}, good), roots: devicePool, kind: KindDevice, err: ErrExtKeyUsage},
		{name: "no ext key usage", cert: bad(func(c *x509.Certificate) { c.ExtKeyUsage = nil }, good),
			roots: devicePool, kind: KindDevice, err: ErrExtKeyUsage},
		{name: "any ext key usage", cert: bad(func(c *x509.Certificate) {
			c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageAny}
		}, good), roots: devicePool, kind: KindDevice, err: ErrExtKeyUsage},
		{name: "device cert as node", cert: device, roots: fabricPool, kind: KindNode, err: ErrExtKeyUsage},
		{name: "no digital signature", cert: bad(func(c *x509.Certificate) {
			c.KeyUsage = x509.KeyUsageKeyEncipherment
		}, good), roots: devicePool, kind: KindDevice, err: ErrKeyUsage},
		{name: "cert sign on a leaf", cert: bad(func(c *x509.Certificate) {
			c.KeyUsage |= x509.KeyUsageCertSign
		}, good), roots: devicePool, kind: KindDevice, err: ErrKeyUsage},
		{name: "node as device", cert: bad(func(c *x509.Certificate) {
			c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}
		}, "weft://node/edge/truck-7"), roots: devicePool, kind: KindDevice, err: ErrWrongKind},
		{name: "gateway as device", cert: bad(nil, "weft://gateway/gw-1"), roots: devicePool, kind: KindDevice, err: ErrWrongKind},

		malformed("weft://device/pump"),
		malformed("weft://device/pump/"),
		malformed("weft://device//p-1"),
		malformed("weft://device/pump/p-1/x"),
		malformed("weft://device/pump/a+b"),
		malformed("weft://device/pump/a#b"),
		malformed("weft://device/pump/p-1?x=1"),
		malformed("weft://device/pump/p-1#frag"),
		malformed("weft://user@device/pump/p-1"),
		malformed("weft://device/pump/%70-1"),
		malformed("weft://device/pump/.."),
		malformed("weft://device/pump/" + strings.Repeat("x", 129)),
		malformed("weft://thing/pump/p-1"),
		malformed("weft:device/pump/p-1"),
		malformed("weft://node/rig/p-1"),
		malformed("weft://gateway/a/b"),
	}
}

func TestIdentity(t *testing.T) {
	for _, tc := range identityCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Verify(tc.cert, tc.roots, tc.kind, identityNow)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("Verify: err = %v, want %v", err, tc.err)
				}
				if !strings.HasPrefix(err.Error(), "certs: ") {
					t.Errorf("error %q lacks the package prefix", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if got.Serial.Cmp(tc.cert.SerialNumber) != 0 || !got.NotAfter.Equal(tc.cert.NotAfter) {
				t.Errorf("serial/not after = %v/%v, want %v/%v", got.Serial, got.NotAfter, tc.cert.SerialNumber, tc.cert.NotAfter)
			}
			got.Serial, got.NotAfter = nil, time.Time{}
			if got != tc.want {
				t.Errorf("identity = %+v, want %+v", got, tc.want)
			}

			// The kind's own function agrees, without the chain.
			check := map[Kind]func(*x509.Certificate, time.Time) (Identity, error){
				KindDevice: DeviceIdentity, KindGateway: GatewayIdentity, KindNode: NodeIdentity,
			}[tc.kind]
			if _, err := check(tc.cert, identityNow); err != nil {
				t.Errorf("%sIdentity: %v", tc.kind, err)
			}
		})
	}
}

func TestPeerIdentity(t *testing.T) {
	a := newAuthority(t)
	iss, err := a.IssueDevice("d1", "pump", 0)
	if err != nil {
		t.Fatal(err)
	}
	cert := mustParseCert(t, iss.CertPEM)
	now := time.Now()

	if _, err := PeerIdentity(tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}}, KindDevice, nil, now); !errors.Is(err, ErrUnknownAuthority) {
		t.Errorf("unverified chain: err = %v, want ErrUnknownAuthority", err)
	}
	cs := tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{cert, a.DeviceCA.Cert}}}
	id, err := PeerIdentity(cs, KindDevice, nil, now)
	if err != nil || id.URI() != "weft://device/pump/d1" {
		t.Errorf("PeerIdentity = %v, %v", id, err)
	}
	revoked := revokedSet{FormatSerial(cert.SerialNumber): true}
	if _, err := PeerIdentity(cs, KindDevice, revoked, now); !errors.Is(err, ErrRevoked) {
		t.Errorf("revoked: err = %v, want ErrRevoked", err)
	}
	if err := VerifyConnection(KindDevice, revoked, func() time.Time { return now })(cs); !errors.Is(err, ErrRevoked) {
		t.Errorf("VerifyConnection: err = %v, want ErrRevoked", err)
	}
}

type revokedSet map[string]bool

func (s revokedSet) Revoked(serial *big.Int) bool { return s[FormatSerial(serial)] }

func FuzzDeviceIdentity(f *testing.F) {
	for _, tc := range identityCases(f) {
		f.Add(tc.cert.Raw)
	}
	f.Fuzz(func(t *testing.T, der []byte) {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return
		}
		id, err := DeviceIdentity(cert, identityNow)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "certs: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
			return
		}
		if id.Kind != KindDevice || !ValidName(id.ID) || !ValidName(id.Class) || id.Role != "" || id.Name != "" {
			t.Fatalf("accepted bad identity %+v", id)
		}
		n := 0
		for _, u := range cert.URIs {
			if u.Scheme == "weft" {
				n++
				if u.String() != id.URI() {
					t.Fatalf("identity %s from URI %s", id.URI(), u)
				}
			}
		}
		if n != 1 || cert.IsCA || cert.SerialNumber.Cmp(id.Serial) != 0 {
			t.Fatalf("accepted %d weft URIs, CA %v", n, cert.IsCA)
		}
	})
}
