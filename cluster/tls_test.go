package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weft-io/weft/certs"
)

// TestPeerTLS runs three members whose peer links are TLS with their
// node certificates of the fabric CA: the cluster forms and carries the
// log; the peer port refuses a client without a certificate and one
// whose certificate names no member (an edge's).
func TestPeerTLS(t *testing.T) {
	dir := t.TempDir()
	if err := certs.Init(dir, false); err != nil {
		t.Fatal(err)
	}
	auth, err := certs.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"n1", "n2", "n3"} {
		if err := auth.EnsureNode(certs.CoreNode, name, []string{"127.0.0.1"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := auth.EnsureNode(certs.EdgeNode, "edge-1", []string{"127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(dir, "fabric-ca.crt")
	nodes := startThreeWith(t, "https", func(name string) PeerTLS {
		crt, key := certs.Files(dir, certs.KindNode, name)
		return PeerTLS{CertFile: crt, KeyFile: key, CAFile: ca}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rev, err := nodes[0].Propose(ctx, []byte("over tls"))
	if err != nil {
		t.Fatal(err)
	}
	fctx, fcancel := context.WithCancel(ctx)
	var got string
	nodes[2].Follow(fctx, rev-1, func(_ context.Context, es []Entry) error {
		got = string(es[0].Value)
		fcancel()
		return nil
	})
	if got != "over tls" {
		t.Fatalf("followed %q", got)
	}

	pem, err := os.ReadFile(ca)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	peerURL := nodes[1].cfg.Peers[1].URL + "/members"
	get := func(cert *tls.Certificate) error {
		tc := &tls.Config{RootCAs: pool}
		if cert != nil {
			tc.Certificates = []tls.Certificate{*cert}
		}
		hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
		resp, err := hc.Get(peerURL)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return &statusError{resp.StatusCode}
		}
		return nil
	}
	load := func(name string) *tls.Certificate {
		crt, key := certs.Files(dir, certs.KindNode, name)
		c, err := tls.LoadX509KeyPair(crt, key)
		if err != nil {
			t.Fatal(err)
		}
		return &c
	}
	if err := get(load("n3")); err != nil {
		t.Fatalf("a member's certificate: %v", err)
	}
	if err := get(nil); err == nil {
		t.Error("the peer port answered a client without a certificate")
	}
	if err := get(load("edge-1")); err == nil {
		t.Error("the peer port answered an edge's certificate")
	}
}

type statusError struct{ code int }

func (e *statusError) Error() string { return "status " + http.StatusText(e.code) }

// TestPeerTLSConfig: https peers need the certificate; a mix is refused.
func TestPeerTLSConfig(t *testing.T) {
	https := []Peer{{Name: "a", URL: "https://h:1"}, {Name: "b", URL: "https://h:2"}}
	if _, err := peerTLS(Config{Peers: https}); err == nil {
		t.Error("https peers without a certificate accepted")
	}
	if _, err := peerTLS(Config{Peers: []Peer{{Name: "a", URL: "https://h:1"}, {Name: "b", URL: "http://h:2"}}}); err == nil {
		t.Error("mixed schemes accepted")
	}
	ti, err := peerTLS(Config{Peers: https, PeerTLS: PeerTLS{CertFile: "c", KeyFile: "k", CAFile: "ca"}})
	if err != nil || !ti.ClientCertAuth || strings.Join(ti.AllowedCNs, ",") != "a,b" {
		t.Errorf("peerTLS: %+v, %v", ti, err)
	}
	if ti, err := peerTLS(Config{Peers: []Peer{{Name: "a", URL: "http://h:1"}}}); err != nil || !ti.Empty() {
		t.Errorf("http peers: %+v, %v", ti, err)
	}
}
