package node

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/weft-io/weft/api"
	"github.com/weft-io/weft/internal/testenv/wait"
)

func serve(t *testing.T, lim api.Limits, h http.Handler) *HTTP {
	t.Helper()
	s, err := ServeHTTP(context.Background(), "127.0.0.1:0", h, lim, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return s
}

func healthz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
}

// client is a raw keep-alive connection.
type client struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, s *HTTP) *client {
	t.Helper()
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second)) // bounds the test, never reached when it passes
	return &client{t: t, c: c, r: bufio.NewReader(c)}
}

// get sends GET path and reads the response; an error if the server
// closed the connection.
func (c *client) get(path string) error {
	if _, err := io.WriteString(c.c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		return err
	}
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return err
}

// closedByServer reports whether the server closed the connection (and
// fails the test if the read timed out instead).
func (c *client) closedByServer() bool {
	c.t.Helper()
	_, err := c.r.ReadByte()
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.t.Fatal("the server kept the connection open")
	}
	return err != nil
}

// TestIdleConnectionsMakeRoom: past the cap, each new connection closes
// the one idle the longest, so that keep-alive connections left open by a
// stranger cannot keep anyone else out.
func TestIdleConnectionsMakeRoom(t *testing.T) {
	const max = 4
	s := serve(t, api.Limits{MaxConns: max}, healthz())
	var idle []*client
	for i := range 4 * max {
		c := dial(t, s)
		if err := c.get("/healthz"); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		idle = append(idle, c)
		// The server marks a connection idle just after its response:
		// wait for it, so that the connections are idle in their order.
		waitFor(t, "the connections idle", func() bool { return s.ln.idleLen() == min(i+1, max) })
	}
	for i, c := range idle[:len(idle)-max] {
		if !c.closedByServer() {
			t.Fatalf("idle connection %d still open", i)
		}
	}
	if n := s.ln.Open(); n > max {
		t.Fatalf("%d connections open, cap %d", n, max)
	}
	for _, c := range idle[len(idle)-max:] { // the most recent stay
		if err := c.get("/healthz"); err != nil {
			t.Fatalf("a recent connection: %v", err)
		}
	}
}

// TestBusyConnectionsRefuse: with every connection in a request, a new
// one is closed at once.
func TestBusyConnectionsRefuse(t *testing.T) {
	const max = 2
	release, started := make(chan struct{}), make(chan struct{}, max)
	s := serve(t, api.Limits{MaxConns: max}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-release
	}))
	busy := make(chan error, max)
	for range max {
		c := dial(t, s)
		go func() { busy <- c.get("/") }()
		<-started
	}
	c := dial(t, s)
	if !c.closedByServer() {
		t.Fatal("a connection past the cap was served")
	}
	close(release)
	for range max {
		if err := <-busy; err != nil {
			t.Fatal(err)
		}
	}
	// Room again once a request is over.
	if err := dial(t, s).get("/"); err != nil {
		t.Fatal(err)
	}
}

// TestIdleTimeout: a keep-alive connection with no next request is
// closed.
func TestIdleTimeout(t *testing.T) {
	s := serve(t, api.Limits{IdleTimeout: 50 * time.Millisecond}, healthz())
	c := dial(t, s)
	if err := c.get("/healthz"); err != nil {
		t.Fatal(err)
	}
	if !c.closedByServer() {
		t.Fatal("idle connection still open")
	}
	// A connection that never sends a request is closed too.
	s2 := serve(t, api.Limits{ReadHeaderTimeout: 50 * time.Millisecond}, healthz())
	if !dial(t, s2).closedByServer() {
		t.Fatal("silent connection still open")
	}
}

// waitFor polls cond with a deadline (wait.For).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	wait.For(t, 10*time.Second, what, cond)
}

func (l *limitListener) idleLen() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.idle.Len()
}

func TestRaiseFileLimit(t *testing.T) {
	soft, hard, err := raiseFileLimit()
	if runtime.GOOS != "linux" {
		return
	}
	if err == nil && soft != hard {
		t.Fatalf("soft limit %d, hard %d", soft, hard)
	}
	if openFileLimit() != soft {
		t.Fatalf("open-file limit %d, raised to %d", openFileLimit(), soft)
	}
}
