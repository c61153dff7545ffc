package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// handshakeResult is what each side of one connection saw.
type handshakeResult struct {
	client     tls.ConnectionState
	clientErr  error // from the handshake or the first read
	serverErr  error
	serverSeen tls.ConnectionState
}

// connect runs one TLS connection over loopback TCP: the server completes
// its handshake and writes a byte; the client handshakes and reads it,
// which also processes the session ticket sent after the handshake.
func connect(t *testing.T, server, client *tls.Config) handshakeResult {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	var res handshakeResult
	var wg sync.WaitGroup
	wg.Go(func() {
		c, err := ln.Accept()
		if err != nil {
			res.serverErr = err
			return
		}
		defer c.Close()
		s := tls.Server(c, server)
		if res.serverErr = s.Handshake(); res.serverErr != nil {
			return
		}
		res.serverSeen = s.ConnectionState()
		if _, err := s.Write([]byte{'x'}); err != nil {
			res.serverErr = err
			return
		}
		io.Copy(io.Discard, s) // until the client closes
	})

	c, err := tls.Dial("tcp", ln.Addr().String(), client)
	if err != nil {
		res.clientErr = err
	} else {
		res.client = c.ConnectionState()
		var b [1]byte
		_, res.clientErr = io.ReadFull(c, b[:])
		c.Close()
	}
	wg.Wait()
	return res
}

func TestHandshake(t *testing.T) {
	a := newAuthority(t)
	save := func(iss *Issued, err error) *KeyPair {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		certFile, keyFile, err := a.Save(iss)
		if err != nil {
			t.Fatal(err)
		}
		pair, err := LoadKeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		return pair
	}
	gateway := save(a.IssueGateway("gw-1", []string{"gw.example"}, 0))
	device := save(a.IssueDevice("d1", "pump", 0))
	devicePool := pool(t, a.DeviceCA)
	rev, err := a.Revocations(nil)
	if err != nil {
		t.Fatal(err)
	}

	server := ServerConfig(gateway, devicePool, KindDevice, rev)
	verify := server.VerifyConnection
	var mu sync.Mutex
	var resumed []bool // DidResume of each server-side VerifyConnection call
	server.VerifyConnection = func(cs tls.ConnectionState) error {
		mu.Lock()
		resumed = append(resumed, cs.DidResume)
		mu.Unlock()
		return verify(cs)
	}
	client := ClientConfig(device, devicePool, KindGateway, nil)
	client.ServerName = "gw.example"
	client.MinVersion = tls.VersionTLS13
	client.ClientSessionCache = tls.NewLRUClientSessionCache(4)

	lastResumed := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(resumed) > 0 && resumed[len(resumed)-1]
	}

	// A full handshake, then a resumed one.
	for i, wantResume := range []bool{false, true} {
		res := connect(t, server, client)
		if res.clientErr != nil || res.serverErr != nil {
			t.Fatalf("connection %d: client %v, server %v", i, res.clientErr, res.serverErr)
		}
		if res.client.Version != tls.VersionTLS13 || res.client.DidResume != wantResume || lastResumed() != wantResume {
			t.Fatalf("connection %d: version %x, resumed %v/%v, want %v", i, res.client.Version, res.client.DidResume, lastResumed(), wantResume)
		}
		id, err := PeerIdentity(res.serverSeen, KindDevice, rev, res.serverSeen.PeerCertificates[0].NotBefore)
		if err != nil || id.URI() != "weft://device/pump/d1" {
			t.Errorf("connection %d: server sees %v, %v", i, id, err)
		}
	}

	// Revoke the device: its resumed session is refused, and so is a new one.
	if _, err := a.RevokeDevice("d1"); err != nil {
		t.Fatal(err)
	}
	if _, err := rev.Reload(); err != nil {
		t.Fatal(err)
	}
	res := connect(t, server, client)
	if !errors.Is(res.serverErr, ErrRevoked) || res.clientErr == nil {
		t.Errorf("revoked, resumed: client %v, server %v; want refused", res.clientErr, res.serverErr)
	}
	if !lastResumed() {
		t.Error("revoked device did not try to resume; the resumed path went untested")
	}
	fresh := client.Clone()
	fresh.ClientSessionCache = nil
	res = connect(t, server, fresh)
	if !errors.Is(res.serverErr, ErrRevoked) || res.clientErr == nil || lastResumed() {
		t.Errorf("revoked, full handshake: client %v, server %v", res.clientErr, res.serverErr)
	}

	// A device of another CA is refused by the TLS stack itself.
	otherDir := newAuthority(t)
	iss, err := otherDir.IssueDevice("d9", "pump", 0)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(iss.CertPEM, iss.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	stranger := fresh.Clone()
	stranger.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }
	if res := connect(t, server, stranger); res.serverErr == nil || res.clientErr == nil {
		t.Errorf("device of another CA: client %v, server %v; want refused", res.clientErr, res.serverErr)
	}

	// A device does not accept a server that is not a gateway, even with
	// the right CA, usage and host name.
	tmpl := leafTemplate(time.Now(), "weft://device/pump/d3")
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	tmpl.DNSNames = []string{"gw.example"}
	key, err := newKey()
	if err != nil {
		t.Fatal(err)
	}
	impostor := server.Clone()
	impostor.GetCertificate = nil
	impostor.Certificates = []tls.Certificate{{Certificate: [][]byte{signKey(t, tmpl, a.DeviceCA, key).Raw}, PrivateKey: key}}
	if res := connect(t, impostor, fresh); !errors.Is(res.clientErr, ErrWrongKind) {
		t.Errorf("device as gateway: client %v, want ErrWrongKind", res.clientErr)
	}
}

func TestNodeHandshake(t *testing.T) {
	a := newAuthority(t)
	save := func(iss *Issued, err error) *KeyPair {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		certFile, keyFile, err := a.Save(iss)
		if err != nil {
			t.Fatal(err)
		}
		pair, err := LoadKeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		return pair
	}
	core := save(a.IssueNode(CoreNode, "core-1", []string{"127.0.0.1"}, 0))
	edge := save(a.IssueNode(EdgeNode, "truck-7", []string{"truck-7.example"}, 0))
	fabric := pool(t, a.FabricCA)
	rev, err := a.Revocations(nil)
	if err != nil {
		t.Fatal(err)
	}

	server := ServerConfig(core, fabric, KindNode, rev)
	client := ClientConfig(edge, fabric, KindNode, rev)
	client.ServerName = "127.0.0.1"
	res := connect(t, server, client)
	if res.clientErr != nil || res.serverErr != nil {
		t.Fatalf("client %v, server %v", res.clientErr, res.serverErr)
	}
	if res.client.Version != tls.VersionTLS13 {
		t.Errorf("version %x, want TLS 1.3", res.client.Version)
	}

	// A device certificate does not open a fabric link, even if the server
	// trusted the device CA.
	both := pool(t, a.FabricCA)
	both.AddCert(a.DeviceCA.Cert)
	server.ClientCAs = both
	dev := save(a.IssueDevice("d1", "pump", 0))
	client.GetClientCertificate = dev.GetClientCertificate
	if res := connect(t, server, client); !errors.Is(res.serverErr, ErrExtKeyUsage) {
		t.Errorf("device on a fabric link: server %v, want ErrExtKeyUsage", res.serverErr)
	}
}

func TestKeyPairReload(t *testing.T) {
	a := newAuthority(t)
	first, err := a.IssueDevice("d1", "pump", 0)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := a.Save(first)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := LoadKeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	serial := func() string {
		c, err := pair.GetCertificate(nil)
		if err != nil {
			t.Fatal(err)
		}
		return FormatSerial(c.Leaf.SerialNumber)
	}
	if serial() != first.Serial {
		t.Fatal("wrong certificate served")
	}

	// A renewed certificate is served once the files are looked at again.
	second, err := a.IssueDevice("d1", "pump", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.Save(second); err != nil {
		t.Fatal(err)
	}
	pair.mu.Lock()
	pair.checked = time.Time{} // as if a second had passed
	pair.mu.Unlock()
	if serial() != second.Serial {
		t.Error("renewed certificate not picked up")
	}

	// A certificate without its key is not: the previous pair stays.
	third, err := a.IssueDevice("d1", "pump", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeFile(certFile, third.CertPEM, certMode); err != nil {
		t.Fatal(err)
	}
	pair.mu.Lock()
	pair.checked = time.Time{}
	pair.mu.Unlock()
	if serial() != second.Serial {
		t.Error("a mismatched pair replaced the working one")
	}

	if _, err := LoadKeyPair(certFile, keyFile); err == nil {
		t.Error("LoadKeyPair accepted a mismatched pair")
	}
}

func TestPool(t *testing.T) {
	a := newAuthority(t)
	iss, err := a.IssueDevice("d1", "pump", 0)
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{
		"empty":  nil,
		"a leaf": iss.CertPEM,
		"junk":   []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
	} {
		if _, err := Pool(data); err == nil {
			t.Errorf("Pool(%s) accepted", name)
		}
	}
	p, err := Pool(append(append([]byte{}, a.DeviceCA.PEM...), a.FabricCA.PEM...))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(mustParseCert(t, iss.CertPEM), p, KindDevice, time.Now()); err != nil {
		t.Error(err)
	}
}
