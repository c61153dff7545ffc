package api

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/device"
	"github.com/weft-io/weft/firmware"
	"github.com/weft-io/weft/store"
)

// TestDeviceFirmwareMTLS serves releases to devices over HTTPS with their
// certificates as the only credential: a device reads the manifest and
// image of a release of its class (and resumes with a byte range), never
// one of another class nor one whose device list leaves it out, never any
// other route; a client without a device certificate is refused at the
// handshake.
func TestDeviceFirmwareMTLS(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if err := certs.Init(dir, false); err != nil {
		t.Fatal(err)
	}
	auth, err := certs.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := auth.EnsureGateway("edge1", []string{"127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	pair, pool, err := auth.ServingPair(certs.Identity{Kind: certs.KindGateway, Name: "edge1"})
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(store.Config{Dir: t.TempDir(), MinFreeBytes: -1, RetentionInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	signer := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{5}, 32))
	keys := firmware.KeySet{Version: 1, Threshold: 1, Keys: []firmware.Key{firmware.NewKey(signer.Public().(ed25519.PublicKey))}}
	reg := &firmware.Registry{Store: st, Keys: func() (firmware.KeySet, error) { return keys, nil }}
	images := map[string][]byte{}
	publish := func(name, class string, devices ...string) {
		img := bytes.Repeat([]byte(name), store.ChunkSize/len(name)+1000)
		m := firmware.Manifest{Name: name, Version: firmware.MustVersion("1.0.0"), Class: class, Devices: devices,
			SHA256: sha256.Sum256(img), Size: int64(len(img))}
		b, err := firmware.Sign(m, signer)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := reg.Publish(ctx, b, bytes.NewReader(img)); err != nil {
			t.Fatal(err)
		}
		images[name] = img
	}
	publish("thermo-fw", "thermo")
	publish("pump-fw", "pump")
	publish("thermo-other", "thermo", "therm-9")

	ts := httptest.NewUnstartedServer(DeviceFirmware(DeviceFirmwareConfig{Store: st}))
	ts.TLS = certs.ServerConfig(pair, pool, certs.KindDevice, nil)
	// httptest serves its own certificate unless given one.
	ts.TLS.Certificates = []tls.Certificate{*pair.Certificate()}
	ts.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes below
	ts.StartTLS()
	defer ts.Close()

	creds, roots, err := device.Credentials(dir, []string{"therm-1"}, "thermo")
	if err != nil {
		t.Fatal(err)
	}
	client := func(cert *tls.Certificate) *http.Client {
		cfg := &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
	}
	dev := client(&creds[0])
	get := func(c *http.Client, path string, h http.Header) (int, []byte, error) {
		req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL+path, nil)
		for k, v := range h {
			req.Header[k] = v
		}
		resp, err := c.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, b, err
	}

	// The agent's own source fetches it, with its certificate and no token.
	src := &device.HTTPSource{Base: ts.URL, Client: dev}
	m, err := src.Manifest(ctx, "thermo-fw", firmware.MustVersion("1.0.0"))
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := firmware.Parse(m)
	if err != nil || parsed.Name != "thermo-fw" {
		t.Fatalf("manifest %+v, %v", parsed, err)
	}
	var buf bytes.Buffer
	if err := src.Image(ctx, "thermo-fw", firmware.MustVersion("1.0.0"), 0, &buf); err != nil || !bytes.Equal(buf.Bytes(), images["thermo-fw"]) {
		t.Fatalf("image: %d bytes, %v", buf.Len(), err)
	}
	// A resume past the store's first chunk.
	off := int64(store.ChunkSize + 17)
	buf.Reset()
	if err := src.Image(ctx, "thermo-fw", firmware.MustVersion("1.0.0"), off, &buf); err != nil || !bytes.Equal(buf.Bytes(), images["thermo-fw"][off:]) {
		t.Fatalf("resumed image: %d bytes, %v", buf.Len(), err)
	}

	for _, tc := range []struct {
		path string
		want int
	}{
		{"/api/v1/firmware/releases/pump-fw/1.0.0/image", http.StatusNotFound},
		{"/api/v1/firmware/releases/pump-fw/1.0.0/manifest", http.StatusNotFound},
		{"/api/v1/firmware/releases/thermo-other/1.0.0/image", http.StatusNotFound},
		{"/api/v1/firmware/releases/thermo-fw/9.9.9/image", http.StatusNotFound},
		{"/api/v1/firmware/releases/thermo-fw/x/image", http.StatusBadRequest},
		{"/api/v1/firmware/releases", http.StatusNotFound},
		{"/api/v1/firmware/releases/thermo-fw/1.0.0", http.StatusNotFound},
		{"/api/v1/devices/therm-1", http.StatusNotFound},
	} {
		code, body, err := get(dev, tc.path, nil)
		if err != nil || code != tc.want {
			t.Errorf("GET %s: %d %s, %v; want %d", tc.path, code, body, err, tc.want)
		}
	}
	if code, _, _ := get(dev, "/api/v1/firmware/releases/thermo-fw/1.0.0/image", http.Header{"Range": {"bytes=5-9"}}); code != http.StatusPartialContent {
		t.Errorf("ranged GET: %d", code)
	}

	// No certificate, or a bearer token instead: refused at the handshake.
	_, _, err = get(client(nil), "/api/v1/firmware/releases/thermo-fw/1.0.0/manifest", http.Header{"Authorization": {"Bearer x"}})
	var cerr *tls.CertificateVerificationError
	if err == nil || (!errors.As(err, &cerr) && !strings.Contains(err.Error(), "certificate")) {
		t.Fatalf("without a certificate: %v", err)
	}
	// A certificate of another CA: refused too.
	other := t.TempDir()
	if err := certs.Init(other, false); err != nil {
		t.Fatal(err)
	}
	foreign, _, err := device.Credentials(other, []string{"therm-1"}, "thermo")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := get(client(&foreign[0]), "/api/v1/firmware/releases/thermo-fw/1.0.0/manifest", nil); err == nil {
		t.Fatal("a device certificate of another CA was accepted")
	}
}
