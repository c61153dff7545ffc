package apiclient

import (
	"context"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var eventTests = []struct {
	name, in string
	want     []Event
}{
	{"one", "id: 4\nevent: message\ndata: {\"a\":1}\n\n", []Event{{ID: "4", Type: "message", Data: []byte(`{"a":1}`)}}},
	{"default type and crlf", "data: x\r\n\r\n", []Event{{Type: "message", Data: []byte("x")}}},
	{"lone cr", "data:y\r\r", []Event{{Type: "message", Data: []byte("y")}}},
	{"lines joined", "data: a\ndata: b\n\n", []Event{{Type: "message", Data: []byte("a\nb")}}},
	{"comment", ": keep-alive\n\n", []Event{{}}},
	{"id carries over", "id: 7\ndata: a\n\ndata: b\n\n", []Event{{ID: "7", Type: "message", Data: []byte("a")}, {ID: "7", Type: "message", Data: []byte("b")}}},
	{"no data no event", "event: x\nid: 2\n\n", nil},
	{"unfinished dropped", "data: a\n\ndata: b\n", []Event{{Type: "message", Data: []byte("a")}}},
	{"unknown field", "retry: 10\nfoo\ndata: z\n\n", []Event{{Type: "message", Data: []byte("z")}}},
	{"trimmed", "event: trimmed\ndata: {\"from\":0,\"low_water_mark\":5}\n\n", []Event{{Type: "trimmed", Data: []byte(`{"from":0,"low_water_mark":5}`)}}},
}

func TestReadEvents(t *testing.T) {
	for _, tt := range eventTests {
		var got []Event
		err := ReadEvents(strings.NewReader(tt.in), func(e Event) error {
			got = append(got, e)
			return nil
		})
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: got %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

func FuzzReadEvents(f *testing.F) {
	for _, tt := range eventTests {
		f.Add([]byte(tt.in))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n := 0
		err := ReadEvents(strings.NewReader(string(b)), func(e Event) error {
			if e.Type != "" && len(e.Data) > len(b) {
				t.Fatalf("event data longer than the input")
			}
			n++
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if n > len(b) {
			t.Fatalf("%d events from %d bytes", n, len(b))
		}
	})
}

var errorTests = []struct {
	name        string
	status      int
	contentType string
	body        string
	want        string
}{
	{"problem", 403, "application/problem+json", `{"type":"x","title":"Forbidden","status":403,"detail":"role viewer may not PATCH","reason":"role"}`, "403 Forbidden: role viewer may not PATCH"},
	{"no detail", 404, "application/problem+json", `{"title":"Not found","status":404}`, "404 Not found"},
	{"line breaks", 400, "application/problem+json", `{"title":"Bad request","detail":"a\nb"}`, "400 Bad request: a b"},
	{"plain text", 502, "text/plain", "bad gateway\nmore", "502 Bad Gateway: bad gateway"},
	{"broken json", 500, "application/problem+json", `{"title":`, `500 Internal Server Error: {"title":`},
	{"odd status", 599, "", "", "599 HTTP error"},
}

func TestParseError(t *testing.T) {
	for _, tt := range errorTests {
		if got := ParseError(tt.status, tt.contentType, []byte(tt.body)).Error(); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}

func FuzzParseError(f *testing.F) {
	for _, tt := range errorTests {
		f.Add(tt.status, tt.contentType, []byte(tt.body))
	}
	f.Fuzz(func(t *testing.T, status int, ct string, body []byte) {
		e := ParseError(status, ct, body)
		if e.Status != status || strings.ContainsAny(e.Error(), "\r\n") {
			t.Fatalf("%+v: %q", e, e.Error())
		}
	})
}

func TestParseFingerprint(t *testing.T) {
	hex := strings.Repeat("ab", 32)
	for _, s := range []string{"sha256:" + hex, "SHA256:" + strings.ToUpper(hex), "sha256:" + strings.TrimSuffix(strings.Repeat("ab:", 32), ":")} {
		if _, err := ParseFingerprint(s); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
	for _, s := range []string{"", hex, "sha1:" + hex, "sha256:" + hex[:62], "sha256:zz" + hex[2:]} {
		if _, err := ParseFingerprint(s); err == nil {
			t.Errorf("%q: accepted", s)
		}
	}
}

// TestTLS trusts an HTTPS server by its CA file or by a pinned
// fingerprint, and refuses it otherwise, naming its fingerprint.
func TestTLS(t *testing.T) {
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(401)
			w.Write([]byte(`{"title":"Missing token","status":401,"detail":"no token"}`))
			return
		}
		w.Write([]byte(`{"ok":true}`))
	}))
	ts.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
	ts.StartTLS()
	defer ts.Close()
	cert := ts.Certificate()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	fp := Fingerprint(cert)
	ctx := context.Background()
	for _, cfg := range []Config{{CAFile: caFile}, {Fingerprint: fp}} {
		cfg.Server, cfg.Token = ts.URL, "tok"
		c, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		var out map[string]any
		if err := c.Get(ctx, "/x", nil, &out); err != nil || out["ok"] != true {
			t.Errorf("%+v: %v %v", cfg, out, err)
		}
	}
	c, _ := New(Config{Server: ts.URL, Token: "tok"})
	if err := c.Get(ctx, "/x", nil, nil); err == nil || !strings.Contains(err.Error(), fp) {
		t.Errorf("untrusted: %v, want the fingerprint %s named", err, fp)
	}
	c, _ = New(Config{Server: ts.URL, Token: "tok", Fingerprint: "sha256:" + strings.Repeat("00", 32)})
	if err := c.Get(ctx, "/x", nil, nil); err == nil || !strings.Contains(err.Error(), "not the pinned") {
		t.Errorf("wrong pin: %v", err)
	}
	c, _ = New(Config{Server: ts.URL, Fingerprint: fp})
	var e *Error
	if err := c.Get(ctx, "/x", nil, nil); !errors.As(err, &e) || e.Error() != "401 Missing token: no token" {
		t.Errorf("no token: %v", err)
	}
}

func TestURL(t *testing.T) {
	c, err := New(Config{Server: "http://h:1/base/"})
	if err != nil {
		t.Fatal(err)
	}
	got := c.URL(Request{Path: "/api/v1/devices/" + "a%2Fb", Query: map[string][]string{"x": {"1 2"}}})
	if want := "http://h:1/base/api/v1/devices/a%2Fb?x=1+2"; got != want {
		t.Errorf("%s, want %s", got, want)
	}
	for _, s := range []string{"", "h:1", "ftp://h", "http://"} {
		if _, err := New(Config{Server: s}); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}
