package node

import (
	"container/list"
	"context"
	"crypto/tls"
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
	tls  bool
}

// ServeHTTP listens on addr and serves h there, with the timeouts and the
// connection cap of lim (with its defaults; MaxConns at most a quarter of
// the process's open-file limit, so that HTTP cannot take the descriptors
// the gateway needs), until Shutdown. Requests' contexts derive from ctx.
// reg, if not nil, receives weft_http_connections_open and
// weft_http_connections_shed_total. Every request gets an id
// (api.WithRequestLog): the client's X-Request-Id when sane, else a new one,
// echoed in the answer's X-Request-Id header and logged with the request's
// line at debug level.
//
// With lim.TLS's certificate and key it serves HTTPS (TLS 1.2 and up),
// reading the files again when they change, and every answer carries
// HSTS. Without them it serves plain HTTP on a loopback address only,
// unless lim.TLS.Insecure, which it logs as a warning (ErrPlainHTTP).
func ServeHTTP(ctx context.Context, addr string, h http.Handler, lim api.Limits, reg prometheus.Registerer, log *slog.Logger) (*HTTP, error) {
	lim = lim.WithDefaults()
	if files := openFileLimit(); files > 0 && uint64(lim.MaxConns) > files/4 {
		lim.MaxConns = max(int(files/4), 1)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var cf *certFiles
	switch f := lim.TLS; {
	case f.CertFile != "" || f.KeyFile != "":
		if f.CertFile == "" || f.KeyFile == "" {
			return nil, errors.New("http: tls: a certificate needs its key and the key its certificate (--http-tls-cert and --http-tls-key)")
		}
		var err error
		if cf, err = newCertFiles(f.CertFile, f.KeyFile, log.With("component", "http")); err != nil {
			return nil, err
		}
		h = hsts(h)
	default:
		if err := checkPlain(addr, f); err != nil {
			return nil, err
		}
		if !IsLoopback(addr) {
			log.Warn("serving plain HTTP on an address other than loopback: tokens and session cookies cross the network in clear", "addr", addr)
		}
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
	srv := lim.HTTPServer(api.WithRequestLog(h, log.With("component", "http")))
	srv.ConnState = ll.connState
	srv.BaseContext = func(net.Listener) context.Context { return ctx }
	srv.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelDebug)
	var serveLn net.Listener = ll
	if cf != nil {
		srv.TLSConfig = cf.tlsConfig()
		serveLn = tls.NewListener(ll, srv.TLSConfig)
	}
	s := &HTTP{srv: srv, ln: ll, done: make(chan error, 1), tls: cf != nil}
	go func() {
		err := srv.Serve(serveLn)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.done <- err
	}()
	return s, nil
}

// Addr is the address the server listens on.
func (s *HTTP) Addr() net.Addr { return s.ln.Addr() }

// URL is the server's base URL: https://ADDR or http://ADDR.
func (s *HTTP) URL() string {
	if s.tls {
		return "https://" + s.Addr().String()
	}
	return "http://" + s.Addr().String()
}

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
