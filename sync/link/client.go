package link

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/store"
	"github.com/weft-io/weft/sync/history"
	"github.com/weft-io/weft/sync/mirror"
	"github.com/weft-io/weft/sync/replicate"
	"github.com/weft-io/weft/sync/wire"
	"golang.org/x/sync/errgroup"
)

// ClientConfig configures an edge's link to its core. Store, Addr and TLS
// (its Certificate and FabricCAs) are required; the zero value of every
// other field works.
type ClientConfig struct {
	// Store is the edge's store.
	Store *store.Store
	// Addr is the core's UDP address, host:port.
	Addr string
	// Addrs are the other cores of a cluster, tried in turn after Addr:
	// a link that ends or does not come up goes on at the next address,
	// and a core's redirect (wire.CodeRedirect) is followed at once.
	// Default: none.
	Addrs []string
	// TLS holds the edge's node certificate and the fabric CA. Its Now
	// defaults to the link's.
	TLS wire.TLSConfig
	// Up are the streams sent to the core. Default replicate.DefaultUp().
	Up []string
	// Down are the streams received from the core. Default
	// replicate.DefaultDown().
	Down []string
	// Mirrors are volume mirrors over the link: Down mirrors a core volume
	// into the edge's volume of the same name, Up the edge's volume into
	// the core's "<volume>.<edge>".
	Mirrors []mirror.Spec
	// MirrorInterval is how often the edge asks the core for news of the
	// volumes it mirrors down. Default 5 s.
	MirrorInterval time.Duration
	// History answers the core's requests for a device's messages it does
	// not hold; nil refuses them.
	History history.Func
	// RateLimit caps the bytes per second the edge sends; 0: no cap.
	RateLimit int64
	// Linger is how long small news waits to be batched and compressed
	// with what follows (replicate.Session.Linger): default
	// replicate.DefaultLinger on a rate-limited link, else
	// replicate.UncappedLinger; negative turns it off.
	Linger time.Duration
	// Window bounds the bytes sent and not yet acknowledged per stream.
	// Default 32 MiB.
	Window int
	// NoCompression turns zstd off.
	NoCompression bool
	// Backoff spaces reconnections. Default 200 ms to 10 s.
	Backoff replicate.Backoff
	// QUIC overrides wire.QUICConfig.
	QUIC *quic.Config
	// Transport, if set, carries the link instead of the host's UDP
	// sockets; Addr is then an address on its network. Default: UDP.
	Transport Transport
	// StallTimeout is how long the path may lose nearly everything the
	// edge sends while packets still come from the core (a path MTU that
	// fell: keepalives pass, data does not) before the link is
	// re-established with small packets (wire.SmallPackets) for the next
	// ten minutes. Default DefaultStallTimeout; negative: never.
	StallTimeout time.Duration
	// Monitor receives the link's figures. Default: a new one.
	Monitor *replicate.Monitor
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives the link's logs. Nil discards them.
	Logger *slog.Logger

	// old makes the client speak as a node of before wire.Features and
	// wire.Policy, for tests of a newer core with an older edge.
	old bool
	// backlogEvery overrides replicate.DefaultBacklogEvery, for tests.
	backlogEvery time.Duration
}

// Client is an edge's link to its core.
type Client struct {
	mu    sync.Mutex
	peer  string    // the core's name, from its certificate
	addr  string    // the address dialled now: Addr, one of Addrs, or a redirect's
	small time.Time // until when connections keep to small packets
	cfg   ClientConfig
	self  certs.Identity
	log   *slog.Logger
	limit *replicate.LinkLimiter
	// mirrors is the budget the link's mirrors draw from: the streams'
	// limit when it can be shared.
	mirrors mirror.Budget
}

// NewClient checks cfg and applies its defaults.
func NewClient(cfg ClientConfig) (*Client, error) {
	if cfg.Store == nil || cfg.Addr == "" || cfg.TLS.Certificate == nil || cfg.TLS.FabricCAs == nil {
		return nil, errors.New("link: a link needs a store, the core's address, a node certificate and the fabric CA")
	}
	if cfg.Up == nil {
		cfg.Up = replicate.DefaultUp()
	}
	if cfg.Down == nil {
		cfg.Down = replicate.DefaultDown()
	}
	for _, p := range append(slices.Clone(cfg.Up), cfg.Down...) {
		if _, _, err := store.SplitPath(p); err != nil {
			return nil, fmt.Errorf("link: %q: %w", p, err)
		}
	}
	for _, p := range cfg.Up {
		if slices.Contains(cfg.Down, p) {
			return nil, fmt.Errorf("link: %s cannot be replicated both ways", p)
		}
	}
	self, err := endDefaults(ends{&cfg.MirrorInterval, &cfg.StallTimeout, &cfg.Now, &cfg.TLS, &cfg.Logger, &cfg.Monitor},
		certs.EdgeNode, "a link is dialled by an edge")
	if err != nil {
		return nil, err
	}
	limit := replicate.NewLinkLimiter(cfg.RateLimit, cfg.Now)
	return &Client{cfg: cfg, self: self, log: cfg.Logger.With("component", "sync", "core", cfg.Addr),
		limit: limit, mirrors: mirrorBudget(limit), addr: cfg.Addr}, nil
}

// Monitor returns the link's figures.
func (c *Client) Monitor() *replicate.Monitor { return c.cfg.Monitor }

// peerName is the core's name once a handshake told it, its address
// before.
func (c *Client) peerName() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.peer == "" {
		return c.addr
	}
	return c.peer
}

// Run connects to the core and replicates until ctx ends, reconnecting
// with backoff whenever the connection ends. It returns ctx's error.
func (c *Client) Run(ctx context.Context) error {
	bo := c.cfg.Backoff
	sessions := 0
	var last error
	addrs := append([]string{c.cfg.Addr}, c.cfg.Addrs...)
	at, redirects := 0, 0
	for ctx.Err() == nil {
		established, err := c.session(ctx, sessions > 0)
		if to, ok := wire.RedirectTo(err); ok && redirects <= len(addrs) && ctx.Err() == nil {
			// A core of the cluster sends this edge to the one that
			// serves it: go there at once (a few times in a row at most,
			// in case views disagree for a moment).
			redirects++
			if established {
				sessions++
			}
			c.log.Info("redirected", "to", to, "err", err)
			c.mu.Lock()
			c.addr = to
			c.mu.Unlock()
			continue
		}
		redirects = 0
		if len(addrs) > 1 {
			// The next connection tries the next core: this one is
			// gone, refused or its path failed (a core the edge was
			// redirected to may be next in the list: skip it).
			c.mu.Lock()
			at = (at + 1) % len(addrs)
			if addrs[at] == c.addr {
				at = (at + 1) % len(addrs)
			}
			c.addr = addrs[at]
			c.mu.Unlock()
		}
		if established {
			sessions++
			bo.Reset()
		}
		if ctx.Err() != nil {
			break
		}
		if !established && err != nil {
			// Show why the link does not come up: under the core's name
			// once known, its address before.
			c.cfg.Monitor.Link(c.peerName(), certs.CoreNode).Down(err, c.cfg.Now())
		}
		switch {
		case established && wire.CodeOf(err) == wire.CodePathStalled:
			// Either side saw the path stop carrying data: the next
			// connections keep to packets every path carries.
			c.mu.Lock()
			c.small = c.cfg.Now().Add(smallPacketsFor)
			c.mu.Unlock()
			c.log.Warn("path stalled; reconnecting with small packets", "for", smallPacketsFor, "err", err)
		case err != nil && (last == nil || err.Error() != last.Error() || established):
			c.log.Warn("link down", "err", err)
		}
		last = err
		d := bo.Next(rand.Float64())
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	return ctx.Err()
}

// dial opens a connection to the core, over the transport if there is
// one.
func (c *Client) dial(ctx context.Context, qc *quic.Config) (*quic.Conn, error) {
	tc := wire.ClientTLS(c.cfg.TLS)
	c.mu.Lock()
	addr := c.addr
	c.mu.Unlock()
	if c.cfg.Transport == nil {
		return wire.Dial(ctx, addr, tc, qc)
	}
	pc, raddr, err := c.cfg.Transport.DialPacket(ctx, addr)
	if err != nil {
		return nil, fmt.Errorf("link: dial %s: %w", addr, err)
	}
	return wire.DialPacket(ctx, pc, addr, raddr, tc, qc)
}

// clusterDialTimeout bounds dialling one core of several (ClientConfig.Addrs).
const clusterDialTimeout = 3 * time.Second

// session runs one connection. established reports whether the handshake
// went through.
func (c *Client) session(ctx context.Context, again bool) (established bool, err error) {
	qc := c.cfg.QUIC
	c.mu.Lock()
	small := c.cfg.Now().Before(c.small)
	c.mu.Unlock()
	if small {
		qc = wire.SmallPackets(qc)
	} else if qc == nil {
		qc = wire.QUICConfig()
	} else {
		qc = qc.Clone()
	}
	progress := newPathProgress(time.Now) // QUIC's own clock is the wall clock
	if c.cfg.StallTimeout > 0 && qc.Tracer == nil {
		qc.Tracer = progress.tracer
	}
	dial := handshakeTimeout
	if len(c.cfg.Addrs) > 0 {
		// Other cores wait: a core that is gone costs little.
		dial = clusterDialTimeout
	}
	dctx, cancel := context.WithTimeout(ctx, dial)
	conn, err := c.dial(dctx, qc)
	cancel()
	if err != nil {
		return false, err
	}
	shutdown := func() error { return wire.Errorf(wire.CodeShutdown, "edge %s stopping", c.self.Name) }
	defer func() {
		cause := err
		if ctx.Err() != nil {
			cause = shutdown()
		}
		wire.Close(conn, cause) // a no-op once the session's group closed it
	}()
	peer, err := wire.Peer(conn, c.cfg.Now())
	if err != nil {
		return false, err
	}
	octx, ocancel := context.WithTimeout(ctx, handshakeTimeout)
	ctrl, err := conn.OpenStreamSync(octx)
	ocancel()
	if err != nil {
		return false, wire.FromQUIC(err)
	}
	ctrl.SetPriority(replicate.Urgency(""), false)
	fc := wire.NewConn(ctrl, ctrl)
	hello := &wire.Hello{Identity: c.self.URI(), Time: c.cfg.Now().UnixNano(), Features: wire.Features()}
	if c.cfg.old {
		hello.Features = nil
	}
	for _, p := range c.cfg.Up {
		hello.Streams = append(hello.Streams, wire.StreamSpec{Path: p, Dir: wire.Up})
	}
	for _, p := range c.cfg.Down {
		hello.Streams = append(hello.Streams, wire.StreamSpec{Path: p, Dir: wire.Down})
	}
	ctrl.SetDeadline(time.Now().Add(handshakeTimeout)) // QUIC's deadlines are on the wall clock
	welcome, err := wire.ClientHandshake(fc, hello, peer.URI())
	if err != nil {
		return false, err
	}
	ctrl.SetDeadline(time.Time{})
	if welcome.Time > 0 {
		// The core's time confirms or contradicts a jump of the edge's
		// clock, which holds retention back until one or the other.
		if err := c.cfg.Store.ConfirmTime(ctx, time.Unix(0, welcome.Time)); err != nil {
			c.log.Warn("the core's time not recorded", "err", err)
		}
	}
	for _, r := range welcome.Refused {
		c.log.Warn("core refuses a stream", "stream", r.Path, "reason", r.Reason)
	}
	c.cfg.Monitor.Rename(c.peerName(), peer.Name)
	c.mu.Lock()
	c.peer = peer.Name
	c.mu.Unlock()
	stats := c.cfg.Monitor.Link(peer.Name, peer.Role)
	stats.SetRate(c.cfg.RateLimit)
	stats.UpAt(func() string { return conn.RemoteAddr().String() }, c.cfg.Now())
	if again {
		stats.Reconnected()
	}
	c.log.Info("link up", "peer", peer.URI(), "streams", len(welcome.Streams), "small_packets", small)
	defer func() { stats.Down(err, c.cfg.Now()) }()

	s := &session{conn: conn, Session: replicate.Session{Store: c.cfg.Store, Link: stats, Limit: c.limit, Window: c.cfg.Window,
		Compress: !c.cfg.NoCompression, Linger: c.cfg.Linger, Features: welcome.Features, Now: c.cfg.Now, Logger: c.log},
		backlogEvery: c.cfg.backlogEvery}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(closeOnEnd(ctx, gctx, conn, shutdown))
	s.control(gctx, g, fc, welcome.Features)
	if c.cfg.StallTimeout > 0 {
		g.Go(func() error {
			return watchPath(gctx, progress, c.cfg.StallTimeout, func() {
				c.log.Info("the link's path changed; the connection migrated", "core_addr", conn.RemoteAddr().String())
			})
		})
	}
	for _, spec := range welcome.Streams {
		g.Go(func() error { return c.stream(gctx, s, spec) })
	}
	for _, spec := range c.cfg.Mirrors {
		g.Go(func() error {
			mirror.Keep(gctx, conn, c.cfg.Store, spec, c.cfg.MirrorInterval, c.mirrors, c.log)
			return nil
		})
	}
	g.Go(func() error { return c.answerHistory(gctx, conn, g) })
	err = g.Wait()
	if ctx.Err() != nil {
		return true, ctx.Err()
	}
	return true, err
}

// stream opens the QUIC stream of one replicated stream and runs it.
func (c *Client) stream(ctx context.Context, s *session, spec wire.StreamSpec) error {
	open := &wire.Open{Path: spec.Path, Dir: spec.Dir}
	if spec.Dir == wire.Up {
		info, err := c.cfg.Store.Stat(ctx, spec.Path)
		if err != nil || info.Kind != store.KindStream {
			c.log.Warn("not replicating a stream this edge does not have", "stream", spec.Path, "err", err)
			<-ctx.Done()
			return nil
		}
		open.Partitions = info.Partitions
		if !c.cfg.old {
			open.Policy = replicate.SourcePolicy(ctx, c.cfg.Store, spec.Path)
		}
	}
	qs, err := s.conn.OpenStreamSync(ctx)
	if err != nil {
		return wire.FromQUIC(err)
	}
	defer qs.CancelRead(0)
	defer qs.CancelWrite(0)
	fc := wire.NewConn(qs, qs)
	if err := fc.Send(open); err != nil {
		return wire.FromQUIC(err)
	}
	m, err := fc.Recv()
	if err != nil {
		return wire.FromQUIC(err)
	}
	var acc *wire.Accept
	switch m := m.(type) {
	case *wire.Accept:
		acc = m
	case *wire.Error:
		m.Remote = true
		if m.Code == wire.CodeStream {
			// The core cannot take this stream; the others go on.
			return s.end(ctx, qs, fc, spec.Path, spec.Dir == wire.Up, m, false)
		}
		return m
	default:
		return wire.Errorf(wire.CodeProtocol, "expected Accept for %s, got %T", spec.Path, m)
	}
	parts := open.Partitions
	if spec.Dir == wire.Down {
		if parts, err = replicate.EnsureReplica(ctx, c.cfg.Store, spec.Path, acc.Partitions, acc.Policy); err != nil {
			// This edge cannot hold the core's stream (its partitions
			// differ): the other streams go on.
			return s.end(ctx, qs, fc, spec.Path, false, err, false)
		}
	}
	return s.run(ctx, qs, fc, spec.Path, spec.Dir == wire.Up, parts, nil)
}

// answerHistory serves the streams a core opens on the link: history
// requests, each answered from the edge's store in a goroutine of g.
func (c *Client) answerHistory(ctx context.Context, conn *quic.Conn, g *errgroup.Group) error {
	for {
		qs, err := conn.AcceptStream(ctx)
		if err != nil {
			return wire.FromQUIC(err)
		}
		g.Go(func() error {
			history.Answer(ctx, qs, c.cfg.History, c.self.Name)
			return nil
		})
	}
}

// ends are the settings both ends of a link share, by address, for
// endDefaults.
type ends struct {
	mirrorInterval, stallTimeout *time.Duration
	now                          *func() time.Time
	tls                          *wire.TLSConfig
	logger                       **slog.Logger
	monitor                      **replicate.Monitor
}

// endDefaults applies the defaults both ends share and checks that the
// node's own certificate has role (what says who should hold it).
func endDefaults(e ends, role, what string) (certs.Identity, error) {
	if *e.mirrorInterval <= 0 {
		*e.mirrorInterval = mirror.DefaultInterval
	}
	if *e.stallTimeout == 0 {
		*e.stallTimeout = DefaultStallTimeout
	}
	if *e.now == nil {
		*e.now = time.Now
	}
	if e.tls.Now == nil {
		e.tls.Now = *e.now // certificates are checked on the same clock
	}
	if *e.logger == nil {
		*e.logger = slog.New(slog.DiscardHandler)
	}
	self, err := selfIdentity(e.tls.Certificate, (*e.now)())
	if err != nil {
		return certs.Identity{}, err
	}
	if self.Role != role {
		return certs.Identity{}, fmt.Errorf("link: %s, the certificate names %s", what, self.URI())
	}
	if *e.monitor == nil {
		*e.monitor = replicate.NewMonitor(self.Name, *e.now)
	}
	return self, nil
}
