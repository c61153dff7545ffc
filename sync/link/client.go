package replicate

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
	"github.com/weft-io/weft/sync/wire"
	"golang.org/x/sync/errgroup"
)

// LinkConfig configures an edge's link to its core. Store, Addr and TLS
// (its Certificate and FabricCAs) are required; the zero value of every
// other field works.
type LinkConfig struct {
	// Store is the edge's store.
	Store *store.Store
	// Addr is the core's UDP address, host:port.
	Addr string
	// TLS holds the edge's node certificate and the fabric CA.
	TLS wire.TLSConfig
	// Up are the streams sent to the core. Default DefaultUp().
	Up []string
	// Down are the streams received from the core. Default DefaultDown().
	Down []string
	// Mirrors are volume mirrors over the link: Down mirrors a core volume
	// into the edge's volume of the same name, Up the edge's volume into
	// the core's "<volume>.<edge>".
	Mirrors []MirrorSpec
	// MirrorInterval is how often the edge asks the core for news of the
	// volumes it mirrors down. Default 5 s.
	MirrorInterval time.Duration
	// History answers the core's requests for a device's messages it does
	// not hold; nil refuses them.
	History HistoryFunc
	// RateLimit caps the bytes per second the edge sends; 0: no cap.
	RateLimit int64
	// Window bounds the bytes sent and not yet acknowledged per stream.
	// Default 32 MiB.
	Window int
	// NoCompression turns zstd off.
	NoCompression bool
	// Backoff spaces reconnections. Default 200 ms to 10 s.
	Backoff Backoff
	// QUIC overrides wire.QUICConfig.
	QUIC *quic.Config
	// Monitor receives the link's figures. Default: a new one.
	Monitor *Monitor
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives the link's logs. Nil discards them.
	Logger *slog.Logger
}

// Link is an edge's link to its core.
type Link struct {
	mu    sync.Mutex
	peer  string // the core's name, from its certificate
	cfg   LinkConfig
	self  certs.Identity
	log   *slog.Logger
	limit *sharedLimiter
}

// NewLink checks cfg and applies its defaults.
func NewLink(cfg LinkConfig) (*Link, error) {
	if cfg.Store == nil || cfg.Addr == "" || cfg.TLS.Certificate == nil || cfg.TLS.FabricCAs == nil {
		return nil, errors.New("replicate: a link needs a store, the core's address, a node certificate and the fabric CA")
	}
	if cfg.Up == nil {
		cfg.Up = DefaultUp()
	}
	if cfg.Down == nil {
		cfg.Down = DefaultDown()
	}
	for _, p := range append(slices.Clone(cfg.Up), cfg.Down...) {
		if _, _, err := store.SplitPath(p); err != nil {
			return nil, fmt.Errorf("replicate: %q: %w", p, err)
		}
	}
	for _, p := range cfg.Up {
		if slices.Contains(cfg.Down, p) {
			return nil, fmt.Errorf("replicate: %s cannot be replicated both ways", p)
		}
	}
	if cfg.Window <= 0 {
		cfg.Window = defaultWindow
	}
	if cfg.MirrorInterval <= 0 {
		cfg.MirrorInterval = defaultMirrorInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.TLS.Now == nil {
		cfg.TLS.Now = cfg.Now // certificates are checked on the same clock
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	self, err := selfIdentity(cfg.TLS.Certificate, cfg.Now())
	if err != nil {
		return nil, err
	}
	if self.Role != certs.EdgeNode {
		return nil, fmt.Errorf("replicate: a link is dialled by an edge, the certificate names %s", self.URI())
	}
	if cfg.Monitor == nil {
		cfg.Monitor = NewMonitor(self.Name, cfg.Now)
	}
	return &Link{cfg: cfg, self: self, log: cfg.Logger.With("component", "sync", "core", cfg.Addr),
		limit: &sharedLimiter{lim: NewLimiter(cfg.RateLimit), now: cfg.Now}}, nil
}

// Monitor returns the link's figures.
func (l *Link) Monitor() *Monitor { return l.cfg.Monitor }

// peerName is the core's name once a handshake told it, its address
// before.
func (l *Link) peerName() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.peer == "" {
		return l.cfg.Addr
	}
	return l.peer
}

// Run connects to the core and replicates until ctx ends, reconnecting
// with backoff whenever the connection ends. It returns ctx's error.
func (l *Link) Run(ctx context.Context) error {
	bo := l.cfg.Backoff
	sessions := 0
	var last error
	for ctx.Err() == nil {
		established, err := l.session(ctx, sessions > 0)
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
			l.cfg.Monitor.link(l.peerName(), certs.CoreNode).down(err, l.cfg.Now(), false)
		}
		if err != nil && (last == nil || err.Error() != last.Error() || established) {
			l.log.Warn("link down", "err", err)
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

// session runs one connection. established reports whether the handshake
// went through.
func (l *Link) session(ctx context.Context, again bool) (established bool, err error) {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := wire.Dial(dctx, l.cfg.Addr, wire.ClientTLS(l.cfg.TLS), l.cfg.QUIC)
	cancel()
	if err != nil {
		return false, err
	}
	shutdown := func() error { return wire.Errorf(wire.CodeShutdown, "edge %s stopping", l.self.Name) }
	defer func() {
		cause := err
		if ctx.Err() != nil {
			cause = shutdown()
		}
		wire.Close(conn, cause) // a no-op once the session's group closed it
	}()
	peer, err := wire.Peer(conn, l.cfg.Now())
	if err != nil {
		return false, err
	}
	octx, ocancel := context.WithTimeout(ctx, 10*time.Second)
	ctrl, err := conn.OpenStreamSync(octx)
	ocancel()
	if err != nil {
		return false, wire.FromQUIC(err)
	}
	ctrl.SetPriority(0, false)
	fc := wire.NewConn(ctrl, ctrl)
	hello := &wire.Hello{Identity: l.self.URI(), Time: l.cfg.Now().UnixNano()}
	for _, p := range l.cfg.Up {
		hello.Streams = append(hello.Streams, wire.StreamSpec{Path: p, Dir: wire.Up})
	}
	for _, p := range l.cfg.Down {
		hello.Streams = append(hello.Streams, wire.StreamSpec{Path: p, Dir: wire.Down})
	}
	ctrl.SetDeadline(time.Now().Add(10 * time.Second))
	welcome, err := wire.ClientHandshake(fc, hello, peer.URI())
	if err != nil {
		return false, err
	}
	ctrl.SetDeadline(time.Time{})
	for _, r := range welcome.Refused {
		l.log.Warn("core refuses a stream", "stream", r.Path, "reason", r.Reason)
	}
	l.cfg.Monitor.rename(l.peerName(), peer.Name)
	l.mu.Lock()
	l.peer = peer.Name
	l.mu.Unlock()
	link := l.cfg.Monitor.link(peer.Name, peer.Role)
	link.mu.Lock()
	link.rate = l.cfg.RateLimit
	link.mu.Unlock()
	link.up(conn.RemoteAddr().String(), l.cfg.Now())
	if again {
		link.mu.Lock()
		link.reconnects++
		link.mu.Unlock()
	}
	l.log.Info("link up", "peer", peer.URI(), "streams", len(welcome.Streams))
	defer func() { link.down(err, l.cfg.Now(), false) }()

	s := &session{conn: conn, store: l.cfg.Store, link: link, limit: l.limit, window: l.cfg.Window,
		maxBytes: readMaxBytes, compress: !l.cfg.NoCompression, now: l.cfg.Now, logger: l.log}
	if r := l.cfg.RateLimit; r > 0 {
		s.maxBytes = int(min(readMaxBytes, max(16<<10, r/20)))
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(closeOnEnd(ctx, gctx, conn, shutdown))
	g.Go(func() error { return readControl(gctx, fc) })
	for _, spec := range welcome.Streams {
		g.Go(func() error { return l.stream(gctx, s, spec) })
	}
	for _, spec := range l.cfg.Mirrors {
		g.Go(func() error { return l.mirror(gctx, s, spec) })
	}
	g.Go(func() error { return l.answerHistory(gctx, conn, g) })
	err = g.Wait()
	if ctx.Err() != nil {
		return true, ctx.Err()
	}
	return true, err
}

// stream opens the QUIC stream of one replicated stream and runs it.
func (l *Link) stream(ctx context.Context, s *session, spec wire.StreamSpec) error {
	open := &wire.Open{Path: spec.Path, Dir: spec.Dir}
	if spec.Dir == wire.Up {
		info, err := l.cfg.Store.Stat(ctx, spec.Path)
		if err != nil || info.Kind != store.KindStream {
			l.log.Warn("not replicating a stream this edge does not have", "stream", spec.Path, "err", err)
			<-ctx.Done()
			return nil
		}
		open.Partitions = info.Partitions
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
			l.log.Warn("core refuses a stream", "stream", spec.Path, "err", m)
			dir := dirReceive
			if spec.Dir == wire.Up {
				dir = dirSend
			}
			s.link.stream(dir, spec.Path).setErr(m)
			<-ctx.Done()
			return nil
		}
		return m
	default:
		return wire.Errorf(wire.CodeProtocol, "expected Accept for %s, got %T", spec.Path, m)
	}
	parts := open.Partitions
	if spec.Dir == wire.Down {
		if parts, err = ensureStream(ctx, l.cfg.Store, spec.Path, acc.Partitions); err != nil {
			if wire.CodeOf(err) != wire.CodeStream {
				return err
			}
			// This edge cannot hold the core's stream (its partitions
			// differ): the other streams go on.
			l.log.Warn("cannot receive a stream", "stream", spec.Path, "err", err)
			s.link.stream(dirReceive, spec.Path).setErr(err)
			qs.CancelRead(quic.StreamErrorCode(wire.CodeStream))
			qs.CancelWrite(quic.StreamErrorCode(wire.CodeStream))
			<-ctx.Done()
			return nil
		}
	}
	return s.stream(ctx, qs, fc, spec.Path, spec.Dir == wire.Up, parts, nil)
}
