package node

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/weft-io/weft/api"
)

// HTTP is a node's HTTP server on its listener, with the timeouts and
// the connection cap of api.Limits.
type HTTP struct {
	srv  *http.Server
	ln   *limitListener
	done chan error
}

// ServeHTTP listens on addr and serves h there, with the timeouts and the
// connection cap of lim (with its defaults; MaxConns at most a quarter of
// the process's open-file limit, so that HTTP cannot take the descriptors
// the gateway needs), until Shutdown. Requests' contexts derive from ctx.
// reg, if not nil, receives weft_http_connections_open and
// weft_http_connections_shed_total.
func ServeHTTP(ctx context.Context, addr string, h http.Handler, lim api.Limits, reg prometheus.Registerer, log *slog.Logger) (*HTTP, error) {
	lim = lim.WithDefaults()
	if files := openFileLimit(); files > 0 && uint64(lim.MaxConns) > files/4 {
		lim.MaxConns = max(int(files/4), 1)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("http: %w", err)
	}
	ll := newLimitListener(ln, lim.MaxConns)
	if reg != nil {
		if err := ll.register(reg); err != nil {
			ln.Close()
			return nil, fmt.Errorf("http: %w", err)
		}
	}
	srv := lim.HTTPServer(h)
	srv.ConnState = ll.connState
	srv.BaseContext = func(net.Listener) context.Context { return ctx }
	if log != nil {
		srv.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelDebug)
	}
	s := &HTTP{srv: srv, ln: ll, done: make(chan error, 1)}
	go func() {
		err := srv.Serve(ll)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.done <- err
	}()
	return s, nil
}

// Addr is the address the server listens on.
func (s *HTTP) Addr() net.Addr { return s.ln.Addr() }

// Done receives the server's error (nil after Shutdown) when it stops
// serving; Wait takes it.
func (s *HTTP) Done() chan error { return s.done }

// Shutdown stops the server as http.Server.Shutdown does.
func (s *HTTP) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// limitListener caps the open connections of a listener. Past the cap a
// new connection makes room by closing the connection that has waited
// longest without a request in progress (idle between requests, or opened
// and not yet sending one); with none such it is closed at once. The
// http.Server reports its connections' states with connState.
type limitListener struct {
	net.Listener
	max int

	mu   sync.Mutex
	open int
	idle list.List // of *limitConn without a request in progress, longest waiting first

	shed *prometheus.CounterVec
}

func newLimitListener(ln net.Listener, max int) *limitListener {
	return &limitListener{Listener: ln, max: max, shed: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "weft_http_connections_shed_total",
		Help: "HTTP connections closed because the listener had its most open (api.Limits.MaxConns): idle ones closed to make room, new ones refused.",
	}, []string{"how"})}
}

func (l *limitListener) register(reg prometheus.Registerer) error {
	open := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "weft_http_connections_open",
		Help: "Open HTTP connections.",
	}, func() float64 { return float64(l.Open()) })
	for _, c := range []prometheus.Collector{open, l.shed} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// Open is the number of open connections.
func (l *limitListener) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.mu.Lock()
		var victim *limitConn
		if l.open >= l.max {
			if e := l.idle.Front(); e != nil {
				victim = e.Value.(*limitConn)
			} else {
				l.mu.Unlock()
				c.Close()
				l.shed.WithLabelValues("refused").Inc()
				continue
			}
		}
		l.open++
		l.mu.Unlock()
		if victim != nil {
			victim.Close()
			l.shed.WithLabelValues("idle_closed").Inc()
		}
		return &limitConn{Conn: c, l: l}, nil
	}
}

// connState keeps the list of connections without a request in progress.
func (l *limitListener) connState(c net.Conn, state http.ConnState) {
	lc, ok := c.(*limitConn)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case lc.closed:
	case state == http.StateNew || state == http.StateIdle:
		if lc.elem == nil {
			lc.elem = l.idle.PushBack(lc)
		}
	default: // active, hijacked (the handler's now) or closed
		l.unidle(lc)
	}
}

// unidle takes lc off the idle list. l.mu is held.
func (l *limitListener) unidle(lc *limitConn) {
	if lc.elem != nil {
		l.idle.Remove(lc.elem)
		lc.elem = nil
	}
}

// limitConn is a connection of a limitListener, counted until closed.
type limitConn struct {
	net.Conn
	l      *limitListener
	elem   *list.Element // in l.idle while it has no request in progress
	closed bool          // guarded by l.mu
}

func (c *limitConn) Close() error {
	c.l.mu.Lock()
	first := !c.closed
	if first {
		c.closed = true
		c.l.open--
		c.l.unidle(c)
	}
	c.l.mu.Unlock()
	if !first {
		return nil
	}
	return c.Conn.Close()
}
