package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/weft-io/weft/certs"
)

var requestIDTable = []struct {
	id   string
	kept bool
}{
	{"abc-123", true},
	{"A.b_c-9", true},
	{strings.Repeat("x", 64), true},
	{"0f8fad5b-d9cb-469f-a165-70867728950e", true},
	{"", false},
	{strings.Repeat("x", 65), false},
	{"a b", false},
	{"a\r\nX-Evil: 1", false},
	{"id\"quote", false},
	{"é", false},
	{"a/b", false},
	{"a=b", false},
}

func TestValidRequestID(t *testing.T) {
	for _, c := range requestIDTable {
		if got := ValidRequestID(c.id); got != c.kept {
			t.Errorf("ValidRequestID(%q) = %v, want %v", c.id, got, c.kept)
		}
	}
}

// syncBuffer is a log destination handlers may write from any goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRequestID sends requests with and without sane ids to a node's API
// behind WithRequestID: each answer carries the id kept or made in its
// X-Request-Id header, the problem documents carry the same id, and the
// log line a failed request causes names it.
func TestRequestID(t *testing.T) {
	var logs syncBuffer
	e := newEnv(t, func(c *Config) { c.Logger = slog.New(slog.NewJSONHandler(&logs, nil)) })
	ts := httptest.NewServer(WithRequestID(e.srv.Handler()))
	defer ts.Close()
	tok := e.token(certs.RoleViewer)

	get := func(path, token, id string) (*http.Response, ProblemDetails) {
		t.Helper()
		req, err := http.NewRequestWithContext(context.Background(), "GET", ts.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if id != "" {
			req.Header[RequestIDHeader] = []string{id}
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		var p ProblemDetails
		if resp.StatusCode >= 400 {
			if err := json.Unmarshal(body, &p); err != nil {
				t.Fatalf("GET %s: %d with a body that is no problem document: %v: %s", path, resp.StatusCode, err, body)
			}
		}
		return resp, p
	}

	for _, c := range requestIDTable {
		if strings.ContainsAny(c.id, "\r\n") {
			continue // net/http refuses to send it
		}
		for _, r := range []struct{ path, token string }{
			{"/healthz", ""},
			{"/api/v1/devices", ""},           // 401 from the auth layer
			{"/api/v1/devices/nobody", tok},   // 404 from the error table
			{"/api/v1/no-such-route", tok},    // 404 from the mux
			{"/api/v1/devices?limit=-1", tok}, // 400 from a handler
		} {
			resp, p := get(r.path, r.token, c.id)
			got := resp.Header.Get(RequestIDHeader)
			switch {
			case c.kept && got != c.id:
				t.Errorf("GET %s with id %q: answered with id %q, want it kept", r.path, c.id, got)
			case !c.kept && (got == c.id || !ValidRequestID(got)):
				t.Errorf("GET %s with id %q: answered with id %q, want a new sane one", r.path, c.id, got)
			}
			if resp.StatusCode >= 400 && p.RequestID != got {
				t.Errorf("GET %s: %d problem has request_id %q, header %q", r.path, resp.StatusCode, p.RequestID, got)
			}
		}
	}

	// Two requests without an id get different ones.
	a, _ := get("/healthz", "", "")
	b, _ := get("/healthz", "", "")
	if a.Header.Get(RequestIDHeader) == b.Header.Get(RequestIDHeader) {
		t.Errorf("two requests got the same id %q", a.Header.Get(RequestIDHeader))
	}

	// A server error is logged with the request's id.
	e.st.Close()
	resp, p := get("/api/v1/devices/pump-1", tok, "trace-500")
	if resp.StatusCode < 500 || p.RequestID != "trace-500" {
		t.Fatalf("after the store closed: %d, problem %+v; want a 5xx with request_id trace-500", resp.StatusCode, p)
	}
	found := false
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil || rec["msg"] != "request failed" {
			continue
		}
		found = true
		if rec["request_id"] != "trace-500" {
			t.Errorf("log line %s: request_id %v, want trace-500", line, rec["request_id"])
		}
	}
	if !found {
		t.Errorf("no \"request failed\" line in the log:\n%s", logs.String())
	}
}

// TestRequestIDWrappedTwice: an inner WithRequestID keeps the outer one's
// id, so a node and the API it serves agree.
func TestRequestIDWrappedTwice(t *testing.T) {
	var inner string
	h := WithRequestID(WithRequestID(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inner = RequestIDFrom(r.Context())
	})))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
	if got := w.Header().Get(RequestIDHeader); got == "" || got != inner {
		t.Fatalf("header %q, context %q: want one id", got, inner)
	}
}

func FuzzRequestID(f *testing.F) {
	for _, c := range requestIDTable {
		f.Add(c.id)
	}
	h := WithRequestID(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		RequestLogger(r.Context(), slog.New(slog.DiscardHandler)).Info("seen")
		Problem(w, http.StatusTeapot, "Teapot", "")
	}))
	f.Fuzz(func(t *testing.T, id string) {
		req := httptest.NewRequest("GET", "/", nil)
		req.Header[RequestIDHeader] = []string{id}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		got := w.Header().Get(RequestIDHeader)
		if !ValidRequestID(got) {
			t.Fatalf("id %q answered with %q, not a sane id", id, got)
		}
		if ValidRequestID(id) != (got == id) {
			t.Fatalf("id %q (valid %v) answered with %q", id, ValidRequestID(id), got)
		}
		var p ProblemDetails
		if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil || p.RequestID != got {
			t.Fatalf("problem %s: request_id is not %q (%v)", w.Body.Bytes(), got, err)
		}
	})
}

// TestRequestLog: the request's line names its id, method, path and
// status, and a streaming handler can still flush through the wrapper.
func TestRequestLog(t *testing.T) {
	var logs syncBuffer
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h := WithRequestLog(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stream" {
			if err := http.NewResponseController(w).Flush(); err != nil {
				t.Errorf("flush through the request log: %v", err)
			}
			io.WriteString(w, "data: x\n\n")
			return
		}
		Problem(w, http.StatusNotFound, "Not found", "")
	}), log)
	ts := httptest.NewServer(h)
	defer ts.Close()
	for _, path := range []string{"/stream", "/missing"} {
		req, err := http.NewRequestWithContext(context.Background(), "GET", ts.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set(RequestIDHeader, "log-"+strings.TrimPrefix(path, "/"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	want := map[string]float64{"log-stream": 200, "log-missing": 404}
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		id, _ := rec["request_id"].(string)
		if st, ok := want[id]; !ok || rec["msg"] != "request" || rec["status"] != st || rec["method"] != "GET" {
			t.Errorf("unexpected log line %s", line)
		}
		delete(want, id)
	}
	if len(want) > 0 {
		t.Errorf("no log line for %v:\n%s", want, logs.String())
	}
}
