package api

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/firmware"
)

// firmwareEnv is an API whose trusted firmware keys are signer's.
func firmwareEnv(t *testing.T, signer ed25519.PrivateKey) *env {
	t.Helper()
	path := filepath.Join(t.TempDir(), "firmware-keys.json")
	set := firmware.KeySet{Version: 1, Threshold: 1, Keys: []firmware.Key{firmware.NewKey(signer.Public().(ed25519.PublicKey))}}
	if err := firmware.WriteKeySet(path, set); err != nil {
		t.Fatal(err)
	}
	return newEnv(t, func(c *Config) { c.FirmwareKeys = path })
}

func publishBody(t *testing.T, manifest, image []byte) (string, *bytes.Buffer) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, p := range []struct {
		name string
		b    []byte
	}{{"manifest", manifest}, {"image", image}} {
		w, err := mw.CreateFormFile(p.name, p.name)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(p.b)
	}
	mw.Close()
	return mw.FormDataContentType(), &buf
}

func (e *env) publish(token string, manifest, image []byte) (*http.Response, []byte) {
	e.t.Helper()
	ct, body := publishBody(e.t, manifest, image)
	req, _ := http.NewRequestWithContext(context.Background(), "POST", e.url+"/api/v1/firmware/releases", body)
	req.Header.Set("Content-Type", ct)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func TestFirmwareReleases(t *testing.T) {
	_, signer, _ := ed25519.GenerateKey(nil)
	_, stranger, _ := ed25519.GenerateKey(nil)
	e := firmwareEnv(t, signer)
	image := bytes.Repeat([]byte("firmware "), 1000)
	m := firmware.Manifest{Name: "sensor-fw", Version: firmware.MustVersion("1.2.0"), Class: "thermo",
		SHA256: sha256.Sum256(image), Size: int64(len(image)), NotAfter: time.Now().Add(time.Hour)}
	signed, err := firmware.Sign(m, signer)
	if err != nil {
		t.Fatal(err)
	}
	admin, viewer := e.token(certs.RoleAdmin), e.token(certs.RoleViewer)

	if resp, _ := e.publish(viewer, signed, image); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("viewer publish: %d", resp.StatusCode)
	}
	resp, body := e.publish(admin, signed, image)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("publish: %d %s", resp.StatusCode, body)
	}

	for _, c := range []struct {
		name     string
		manifest func() []byte
		image    []byte
		reason   firmware.Reason
		status   int
	}{
		{"same version", func() []byte { return signed }, image, firmware.ReasonNotNewer, 422},
		{"unknown key", func() []byte {
			n := m
			n.Version = firmware.MustVersion("1.3.0")
			b, _ := firmware.Sign(n, stranger)
			return b
		}, image, firmware.ReasonUnknownKey, 422},
		{"hash mismatch", func() []byte {
			n := m
			n.Version = firmware.MustVersion("1.3.0")
			b, _ := firmware.Sign(n, signer)
			return b
		},
			bytes.ToUpper(image), firmware.ReasonHashMismatch, 422},
		{"bad signature", func() []byte {
			b := bytes.Clone(signed)
			b[len(b)-1] ^= 1
			return b
		}, image, firmware.ReasonBadSignature, 422},
		{"garbage", func() []byte { return []byte("not a manifest") }, image, firmware.ReasonMalformed, 422},
	} {
		resp, body := e.publish(admin, c.manifest(), c.image)
		var p ProblemDetails
		json.Unmarshal(body, &p)
		if resp.StatusCode != c.status || p.Reason != string(c.reason) || p.Title != "Firmware refused" {
			t.Errorf("%s: %d %s, want %d reason %s", c.name, resp.StatusCode, body, c.status, c.reason)
		}
	}

	resp, body = e.do("GET", "/api/v1/firmware/releases", viewer, "")
	var list FirmwareReleasesResponse
	if err := json.Unmarshal(body, &list); err != nil || resp.StatusCode != 200 || len(list.Releases) != 1 {
		t.Fatalf("list: %d %s", resp.StatusCode, body)
	}
	if r := list.Releases[0]; r.Version != m.Version || r.SHA256 != m.SHA256 || r.ImagePath != "/firmware/sensor-fw/1.2.0/image" {
		t.Fatalf("listed %+v", r)
	}
	if resp, _ := e.do("GET", "/api/v1/firmware/releases/sensor-fw/1.2.0", viewer, ""); resp.StatusCode != 200 {
		t.Fatalf("get: %d", resp.StatusCode)
	}
	if resp, _ := e.do("GET", "/api/v1/firmware/releases/sensor-fw/9.0.0", viewer, ""); resp.StatusCode != 404 {
		t.Fatalf("get missing: %d", resp.StatusCode)
	}
	if resp, _ := e.do("GET", "/api/v1/firmware/releases/sensor-fw/nine", viewer, ""); resp.StatusCode != 400 {
		t.Fatalf("get bad version: %d", resp.StatusCode)
	}
	resp, body = e.do("GET", "/api/v1/firmware/releases/sensor-fw/1.2.0/manifest", viewer, "")
	if resp.StatusCode != 200 || !bytes.Equal(body, signed) {
		t.Fatalf("manifest: %d", resp.StatusCode)
	}

	// Byte ranges: the middle, the tail, and a resume with If-Range.
	get := func(rng, ifRange string) (*http.Response, []byte) {
		req, _ := http.NewRequest("GET", e.url+"/api/v1/firmware/releases/sensor-fw/1.2.0/image", nil)
		req.Header.Set("Authorization", "Bearer "+viewer)
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		if ifRange != "" {
			req.Header.Set("If-Range", ifRange)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	resp, body = get("", "")
	if resp.StatusCode != 200 || !bytes.Equal(body, image) || resp.Header.Get("Accept-Ranges") != "bytes" {
		t.Fatalf("whole image: %d %d bytes", resp.StatusCode, len(body))
	}
	etag := resp.Header.Get("ETag")
	resp, body = get("bytes=100-199", "")
	if resp.StatusCode != 206 || !bytes.Equal(body, image[100:200]) {
		t.Fatalf("range: %d %q", resp.StatusCode, body)
	}
	resp, body = get("bytes=8000-", etag)
	if resp.StatusCode != 206 || !bytes.Equal(body, image[8000:]) {
		t.Fatalf("resume: %d %d bytes", resp.StatusCode, len(body))
	}
	resp, _ = get("bytes=99999-", "")
	if resp.StatusCode != http.StatusRequestedRangeNotSatisfiable {
		t.Fatalf("range past the end: %d", resp.StatusCode)
	}
}

func TestFirmwarePublishWithoutKeys(t *testing.T) {
	e := newEnv(t)
	_, signer, _ := ed25519.GenerateKey(nil)
	image := []byte("img")
	signed, _ := firmware.Sign(firmware.Manifest{Name: "fw", Version: firmware.MustVersion("1.0.0"), Class: "c", SHA256: sha256.Sum256(image), Size: 3}, signer)
	resp, body := e.publish(e.token(certs.RoleAdmin), signed, image)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "Firmware keys not configured") {
		t.Fatalf("publish without keys: %d %s", resp.StatusCode, body)
	}
	if resp, body := e.do("GET", "/api/v1/firmware/releases", e.token(certs.RoleViewer), ""); resp.StatusCode != 200 || !strings.Contains(string(body), `"releases":[]`) {
		t.Fatalf("empty list: %d %s", resp.StatusCode, body)
	}
}

// TestHandlerLogRequestID: a handler's own log line (here the warning of
// a firmware publish refused for want of trusted keys) carries the
// request's id, as the request log and "request failed" lines do.
func TestHandlerLogRequestID(t *testing.T) {
	var logs syncBuffer
	e := newEnv(t, func(c *Config) { c.Logger = slog.New(slog.NewJSONHandler(&logs, nil)) })
	ts := httptest.NewServer(WithRequestID(e.srv.Handler()))
	defer ts.Close()
	_, signer, _ := ed25519.GenerateKey(nil)
	image := []byte("img")
	signed, _ := firmware.Sign(firmware.Manifest{Name: "fw", Version: firmware.MustVersion("1.0.0"), Class: "c", SHA256: sha256.Sum256(image), Size: 3}, signer)
	ct, body := publishBody(t, signed, image)
	req, _ := http.NewRequestWithContext(context.Background(), "POST", ts.URL+"/api/v1/firmware/releases", body)
	req.Header.Set("Content-Type", ct)
	req.Header.Set("Authorization", "Bearer "+e.token(certs.RoleAdmin))
	req.Header.Set(RequestIDHeader, "trace-fw-1")
	resp, b := doReq(t, req)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("publish without keys: %d %s", resp.StatusCode, b)
	}
	found := false
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil || rec["msg"] != "firmware publish without trusted keys" {
			continue
		}
		found = true
		if rec["request_id"] != "trace-fw-1" {
			t.Errorf("log line %s: request_id %v, want trace-fw-1", line, rec["request_id"])
		}
	}
	if !found {
		t.Errorf("no \"firmware publish without trusted keys\" line in the log:\n%s", logs.String())
	}
}
