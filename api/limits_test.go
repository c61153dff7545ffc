package api

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/internal/testenv/wait"
	"github.com/weft-io/weft/store"
)

// openTail opens a tail of /telemetry/events topic edge1 with a viewer
// token of subject sub, returning the response (closed at the test's end).
func (e *env) openTail(ctx context.Context, url, sub string) *http.Response {
	e.t.Helper()
	tok, err := certs.IssueToken(e.priv, certs.TokenClaims{Subject: sub, Role: certs.RoleViewer}, time.Hour)
	if err != nil {
		e.t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(ctx, "GET", url+"/api/v1/streams/telemetry/events/tail?topic=edge1", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestStreamCaps(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Limits = Limits{MaxStreams: 3, MaxStreamsPerToken: 2} })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := e.st.Stream(store.EventsStream).Append(ctx, "edge1", store.Message{Value: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	refused := func(resp *http.Response, limit string) {
		t.Helper()
		b, _ := io.ReadAll(resp.Body)
		p := problem(t, resp, b, http.StatusTooManyRequests)
		if p.Title != "Too many streams" || !strings.HasPrefix(p.Detail, limit+":") || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("refused stream: %+v, Retry-After %q; want the %s limit", p, resp.Header.Get("Retry-After"), limit)
		}
	}
	sctx, closeFirst := context.WithCancel(ctx)
	for i, sub := range []string{"alice", "alice"} {
		c := ctx
		if i == 0 {
			c = sctx
		}
		if resp := e.openTail(c, e.url, sub); resp.StatusCode != http.StatusOK {
			t.Fatalf("stream %d of alice: %d", i, resp.StatusCode)
		}
	}
	refused(e.openTail(ctx, e.url, "alice"), "per token")
	if resp := e.openTail(ctx, e.url, "bob"); resp.StatusCode != http.StatusOK {
		t.Fatalf("stream of bob: %d", resp.StatusCode)
	}
	refused(e.openTail(ctx, e.url, "carol"), "total")

	// A stream that ends gives its slot back.
	closeFirst()
	wait.For(t, 0, "the slot of a closed stream given back", func() bool {
		resp := e.openTail(ctx, e.url, "alice")
		if resp.StatusCode == http.StatusOK {
			return true
		}
		resp.Body.Close()
		return false
	})
}

// TestStreamOutlivesTimeouts serves the API with read and write timeouts
// far shorter than a stream: the stream keeps sending past them, and
// ends at its own age limit.
func TestStreamOutlivesTimeouts(t *testing.T) {
	lim := Limits{ReadTimeout: 50 * time.Millisecond, WriteTimeout: 50 * time.Millisecond, StreamMaxAge: 600 * time.Millisecond}
	e := newEnv(t, func(c *Config) { c.Limits = lim })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := lim.HTTPServer(e.srv.Handler())
	go hs.Serve(ln)
	defer hs.Close()
	url := "http://" + ln.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	st := e.st.Stream(store.EventsStream)
	if _, err := st.Append(ctx, "edge1", store.Message{Value: []byte("0")}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	resp := e.openTail(ctx, url, "alice")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("tail: %d", resp.StatusCode)
	}
	events := readEvents(resp.Body)
	sent, got := 0, 0
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for time.Since(start) < 4*lim.WriteTimeout {
		if _, err := st.Append(ctx, "edge1", store.Message{Value: []byte("x")}); err != nil {
			t.Fatal(err)
		}
		sent++
		for got < sent {
			select {
			case _, ok := <-events:
				if !ok {
					t.Fatalf("the stream ended after %d events, %v after it started", got, time.Since(start))
				}
				got++
			case <-ctx.Done():
				t.Fatal("timed out waiting for an event")
			}
		}
		<-tick.C
	}
	for range events { // drained until the stream reaches its age limit
	}
	if ctx.Err() != nil {
		t.Fatal("the stream did not end at its age limit")
	}
}

// A plain request that stalls its body is cut off by the read timeout.
func TestReadTimeout(t *testing.T) {
	lim := Limits{ReadTimeout: 100 * time.Millisecond}
	e := newEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := lim.HTTPServer(e.srv.Handler())
	go hs.Serve(ln)
	defer hs.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	tok := e.token(certs.RoleAdmin)
	// Headers announce a body that never comes.
	if _, err := io.WriteString(c, "POST /api/v1/streams/telemetry/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+tok+
		"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	var ne net.Error
	switch {
	case err == nil:
		resp.Body.Close()
		if resp.StatusCode < 400 {
			t.Fatalf("a stalled body got %d", resp.StatusCode)
		}
	case errors.As(err, &ne) && ne.Timeout():
		t.Fatal("the server kept the connection of a stalled body open")
	}
}
