package link

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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

// ServerConfig configures a core's side of its edges' links. Store and
// TLS are required; the zero value of every other field works.
type ServerConfig struct {
	// Store is the core's store.
	Store *store.Store
	// TLS holds the core's node certificate and the fabric CA. Its Now
	// defaults to the server's.
	TLS wire.TLSConfig
	// Down are the streams sent to every edge. Default replicate.DefaultDown(). Edges
	// may not send these.
	Down []string
	// Accept, if set, decides whether edges may send the stream at path
	// (an error says why not). By default any stream but those of Down.
	Accept func(path string) error
	// Topics decides whether edge may write topic of the stream at path.
	// Default NodeTopics: the streams each node writes under its own name
	// take only the edge's name as topic.
	Topics func(edge, path, topic string) error
	// Sends, if set, decides whether the core sends topic of the Down
	// stream at path to edge (an error says why not); a topic withheld is
	// asked about again every RecheckWithheld while the link is up.
	// Default: every topic to every edge.
	Sends func(edge, path, topic string) error
	// RecheckWithheld is how long a topic Sends withheld waits before
	// Sends is asked again. Default 30 s.
	RecheckWithheld time.Duration
	// RateLimit caps the bytes per second sent on each link; 0: no cap.
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
	// MirrorsDown are the volumes edges may mirror from the core. Default
	// mirror.DefaultDown() (models, firmware).
	MirrorsDown []string
	// MirrorsUp are the volumes edges may mirror to the core; edge E's
	// copy of volume V lands in the core's volume "V.E". Default none.
	MirrorsUp []string
	// MirrorInterval is how often the core asks an edge for news of the
	// volumes mirrored up. Default 5 s.
	MirrorInterval time.Duration
	// QUIC overrides wire.QUICConfig.
	QUIC *quic.Config
	// Transport, if set, carries the links instead of the host's UDP
	// sockets: Listen's address is then read in its terms. Default: UDP.
	Transport Transport
	// StallTimeout is how long the path to an edge may lose nearly
	// everything the core sends while packets still come from the edge (a
	// path MTU that fell) before the connection is closed with code
	// wire.CodePathStalled; the edge reconnects with small packets, and
	// the core keeps to them with that edge's address for ten minutes.
	// Default DefaultStallTimeout; negative: never.
	StallTimeout time.Duration
	// Monitor receives the links' figures. Default: a new one.
	Monitor *replicate.Monitor
	// Owner, if set, is asked at each edge's hello whether this core
	// serves the edge (a core of a cluster): nil accepts the link; an
	// error refuses it, sent to the edge when it is a *wire.Error (a
	// wire.Redirect names the core to go to), else as a shutdown.
	// Default: every edge is served.
	Owner func(ctx context.Context, edge string) error
	// Fence, if set, is asked before each batch and gap an edge sends is
	// taken in, and before its positions are told: an error refuses them
	// and ends the link (a core of a cluster whose lease may have
	// expired). Default: none.
	Fence func() error
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives the server's logs. Nil discards them.
	Logger *slog.Logger

	// old makes the server speak as a node of before wire.Features and
	// wire.Policy, for tests of a newer edge with an older core.
	old bool
}

// Server is a core's side of its edges' links.
type Server struct {
	cfg  ServerConfig
	self certs.Identity
	log  *slog.Logger

	mu       sync.Mutex
	sessions map[string]*serverConn // by edge name
	seen     map[string]bool
	since    map[string]time.Time // when each edge's last connection ended
	small    smallPaths
	started  time.Time
	progress map[string]*pathProgress // of connections being accepted, by remote address
}

type serverConn struct {
	conn *quic.Conn
	done chan struct{}
}

// NewServer checks cfg and applies its defaults.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Store == nil || cfg.TLS.Certificate == nil || cfg.TLS.FabricCAs == nil {
		return nil, errors.New("link: a server needs a store, a node certificate and the fabric CA")
	}
	if cfg.Down == nil {
		cfg.Down = replicate.DefaultDown()
	}
	if cfg.Topics == nil {
		cfg.Topics = NodeTopics
	}
	if cfg.MirrorsDown == nil {
		cfg.MirrorsDown = mirror.DefaultDown()
	}
	self, err := endDefaults(ends{&cfg.MirrorInterval, &cfg.StallTimeout, &cfg.Now, &cfg.TLS, &cfg.Logger, &cfg.Monitor},
		certs.CoreNode, "a server is a core")
	if err != nil {
		return nil, err
	}
	return &Server{cfg: cfg, self: self, log: cfg.Logger.With("component", "sync"),
		sessions: map[string]*serverConn{}, seen: map[string]bool{}, since: map[string]time.Time{}, started: cfg.Now(),
		progress: map[string]*pathProgress{}}, nil
}

// Monitor returns the links' figures.
func (s *Server) Monitor() *replicate.Monitor { return s.cfg.Monitor }

// NodeTopics is the default topic rule of a core: in the streams whose
// topic is the name of the node that writes them (/uplink/events,
// /shadows/changes, /audit/events, /telemetry/events), an edge may write
// its own name only, so that no edge writes another's topics (or the
// core's). Other streams' topics (device ids, say) are not checked.
func NodeTopics(edge, path, topic string) error {
	switch path {
	case store.UplinkStream, store.ShadowChanges, store.AuditStream, store.EventsStream:
		if topic != edge {
			return fmt.Errorf("edge %s may write only its own topic of %s, not %q", edge, path, topic)
		}
	}
	return nil
}

// Listen listens for edges on the UDP address addr with the server's TLS
// settings, answering the packets of connections from a previous run with
// stateless resets (wire.ResetKey) so that edges reconnect at once after a
// restart. Connections from a host whose path stalled lately keep to
// small packets (wire.SmallPackets).
func (s *Server) Listen(addr string) (*wire.Listener, error) {
	return s.ListenContext(context.Background(), addr)
}

// ListenContext is Listen, with ctx bounding what the server's Transport
// does before it can listen (a tailnet node waits to join its tailnet).
func (s *Server) ListenContext(ctx context.Context, addr string) (*wire.Listener, error) {
	key, err := wire.ResetKey(s.cfg.TLS.Certificate)
	if err != nil {
		return nil, err
	}
	qc := s.cfg.QUIC
	if qc == nil {
		qc = wire.QUICConfig()
	}
	if qc.GetConfigForClient == nil {
		base := qc
		qc = qc.Clone()
		qc.GetConfigForClient = func(info *quic.ClientInfo) (*quic.Config, error) {
			c := base.Clone()
			if s.small.small(info.RemoteAddr, s.cfg.Now()) {
				c = wire.SmallPackets(base)
			}
			if s.cfg.StallTimeout > 0 && c.Tracer == nil {
				p := newPathProgress(time.Now) // QUIC's own clock is the wall clock
				c.Tracer = p.tracer
				s.mu.Lock()
				s.progress[info.RemoteAddr.String()] = p
				s.mu.Unlock()
			}
			return c, nil
		}
	}
	if s.cfg.Transport == nil {
		return wire.Listen(addr, wire.ServerTLS(s.cfg.TLS), qc, key)
	}
	pc, err := s.cfg.Transport.ListenPacket(ctx, addr)
	if err != nil {
		return nil, fmt.Errorf("link: listen %s: %w", addr, err)
	}
	return wire.ListenPacket(pc, wire.ServerTLS(s.cfg.TLS), qc, key)
}

// Serve accepts edges' connections on ln until ctx ends or ln is closed,
// then closes every connection and returns.
func (s *Server) Serve(ctx context.Context, ln *wire.Listener) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		conn, err := ln.Accept(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("link: accept: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.handle(ctx, conn)
			if ctx.Err() != nil {
				err = wire.Errorf(wire.CodeShutdown, "core %s stopping", s.self.Name)
			}
			wire.Close(conn, err)
		}()
	}
}

// accept decides which of an edge's streams are replicated.
func (s *Server) accept(h *wire.Hello) (*wire.Welcome, error) {
	w := &wire.Welcome{Identity: s.self.URI(), Time: s.cfg.Now().UnixNano(), Streams: []wire.StreamSpec{}}
	if !s.cfg.old {
		w.Features = wire.Common(h.Features)
	}
	seen := map[string]bool{}
	for _, sp := range h.Streams {
		reason := ""
		switch {
		case seen[sp.Path]:
			reason = "named twice"
		case sp.Dir == wire.Up && slices.Contains(s.cfg.Down, sp.Path):
			reason = "the core writes this stream: it only goes down"
		case sp.Dir == wire.Up && s.cfg.Accept != nil:
			if err := s.cfg.Accept(sp.Path); err != nil {
				reason = err.Error()
			}
		case sp.Dir == wire.Up:
			if _, _, err := store.SplitPath(sp.Path); err != nil {
				reason = err.Error()
			}
		case sp.Dir == wire.Down && !slices.Contains(s.cfg.Down, sp.Path):
			reason = "the core does not send this stream"
		case sp.Dir != wire.Down:
			reason = "unknown direction"
		}
		seen[sp.Path] = true
		if reason != "" {
			w.Refused = append(w.Refused, wire.Refusal{Path: sp.Path, Reason: reason})
			continue
		}
		w.Streams = append(w.Streams, sp)
	}
	return w, nil
}

// handle runs one edge's connection.
func (s *Server) handle(ctx context.Context, conn *quic.Conn) error {
	s.mu.Lock()
	progress := s.progress[conn.RemoteAddr().String()]
	delete(s.progress, conn.RemoteAddr().String())
	s.mu.Unlock()
	peer, err := wire.Peer(conn, s.cfg.Now())
	if err != nil {
		return wire.Errorf(wire.CodeIdentity, "%v", err)
	}
	if peer.Name == s.self.Name {
		return wire.Errorf(wire.CodeIdentity, "an edge may not have the core's name %s", peer.Name)
	}
	log := s.log.With("edge", peer.Name, "addr", conn.RemoteAddr().String())
	hctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	ctrl, err := conn.AcceptStream(hctx)
	cancel()
	if err != nil {
		return wire.FromQUIC(err)
	}
	ctrl.SetPriority(replicate.Urgency(""), false)
	fc := wire.NewConn(ctrl, ctrl)
	ctrl.SetDeadline(time.Now().Add(handshakeTimeout)) // QUIC's deadlines are on the wall clock
	accept := s.accept
	if s.cfg.Owner != nil {
		accept = func(h *wire.Hello) (*wire.Welcome, error) {
			if err := s.cfg.Owner(ctx, peer.Name); err != nil {
				var we *wire.Error
				if !errors.As(err, &we) {
					we = wire.Errorf(wire.CodeShutdown, "core %s cannot serve edge %s now: %v", s.self.Name, peer.Name, err)
				}
				return nil, we
			}
			return s.accept(h)
		}
	}
	hello, err := wire.ServerHandshake(fc, peer.URI(), accept)
	if err != nil {
		log.Warn("handshake refused", "err", err)
		return err
	}
	ctrl.SetDeadline(time.Time{})
	w, _ := s.accept(hello)
	accepted := map[string]wire.Dir{}
	for _, sp := range w.Streams {
		accepted[sp.Path] = sp.Dir
	}

	// A newer connection of the same edge replaces the older one.
	me := &serverConn{conn: conn, done: make(chan struct{})}
	defer close(me.done)
	s.mu.Lock()
	old := s.sessions[peer.Name]
	s.sessions[peer.Name] = me
	again := s.seen[peer.Name]
	s.seen[peer.Name] = true
	s.mu.Unlock()
	if old != nil {
		wire.Close(old.conn, wire.Errorf(wire.CodeReplaced, "edge %s connected again", peer.Name))
		<-old.done
	}
	defer func() {
		s.mu.Lock()
		if s.sessions[peer.Name] == me {
			delete(s.sessions, peer.Name)
		}
		s.mu.Unlock()
	}()

	stats := s.cfg.Monitor.Link(peer.Name, peer.Role)
	stats.SetRate(s.cfg.RateLimit)
	if again {
		stats.Reconnected()
	}
	stats.UpAt(func() string { return conn.RemoteAddr().String() }, s.cfg.Now())
	log.Info("edge connected", "streams", len(w.Streams))
	limit := replicate.NewLinkLimiter(s.cfg.RateLimit, s.cfg.Now)
	sess := &session{conn: conn, mirrors: mirrorBudget(limit), Session: replicate.Session{Store: s.cfg.Store, Link: stats,
		Limit: limit, Window: s.cfg.Window, Compress: !s.cfg.NoCompression,
		Recheck: s.cfg.RecheckWithheld, Linger: s.cfg.Linger, Features: w.Features, Now: s.cfg.Now, Logger: log}}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(closeOnEnd(ctx, gctx, conn, func() error { return wire.Errorf(wire.CodeShutdown, "core %s stopping", s.self.Name) }))
	sess.control(gctx, g, fc, w.Features)
	if s.cfg.Fence != nil {
		g.Go(func() error { return s.watchFence(gctx) })
	}
	if progress != nil {
		g.Go(func() error {
			return watchPath(gctx, progress, s.cfg.StallTimeout, func() {
				log.Info("edge's address changed; the connection migrated", "new_addr", conn.RemoteAddr().String())
			})
		})
	}
	g.Go(func() error {
		opened := map[string]bool{}
		for {
			qs, err := conn.AcceptStream(gctx)
			if err != nil {
				return wire.FromQUIC(err)
			}
			g.Go(func() error { return s.stream(gctx, sess, qs, accepted, opened) })
		}
	})
	err = g.Wait()
	switch {
	case ctx.Err() != nil:
	case wire.CodeOf(err) == wire.CodePathStalled:
		s.small.mark(conn.RemoteAddr(), s.cfg.Now().Add(smallPacketsFor))
		log.Warn("path stalled; the edge reconnects with small packets", "for", smallPacketsFor, "err", err)
	default:
		log.Info("edge disconnected", "err", err)
	}
	stats.Down(err, s.cfg.Now())
	s.mu.Lock()
	if s.sessions[peer.Name] == me {
		s.since[peer.Name] = s.cfg.Now()
	}
	s.mu.Unlock()
	return err
}

// stream serves one replicated stream the edge opened.
func (s *Server) stream(ctx context.Context, sess *session, qs *quic.Stream, accepted map[string]wire.Dir, opened map[string]bool) error {
	defer qs.CancelRead(0)
	defer qs.CancelWrite(0)
	fc := wire.NewConn(qs, qs)
	qs.SetReadDeadline(time.Now().Add(handshakeTimeout)) // QUIC's deadlines are on the wall clock
	m, err := fc.Recv()
	if err != nil {
		return wire.FromQUIC(err)
	}
	qs.SetReadDeadline(time.Time{})
	if mo, ok := m.(*wire.Mirror); ok {
		return mirror.Serve(ctx, fc, s.cfg.Store, mo, sess.Link.Peer(), s.cfg.MirrorsDown, s.cfg.MirrorsUp, s.cfg.MirrorInterval, sess.mirrors, s.log)
	}
	open, ok := m.(*wire.Open)
	if !ok {
		return wire.Errorf(wire.CodeProtocol, "expected Open, got %T", m)
	}
	refuse := func(err *wire.Error) error {
		fc.Send(err)
		return err
	}
	dir, ok := accepted[open.Path]
	if !ok || dir != open.Dir {
		return refuse(wire.Errorf(wire.CodeStream, "%s (%s) was not agreed in the handshake", open.Path, open.Dir))
	}
	s.mu.Lock()
	dup := opened[open.Path]
	opened[open.Path] = true
	s.mu.Unlock()
	if dup {
		return refuse(wire.Errorf(wire.CodeStream, "%s opened twice", open.Path))
	}
	var parts int
	if open.Dir == wire.Up {
		if open.Partitions <= 0 {
			return refuse(wire.Errorf(wire.CodeProtocol, "%s: no partition count", open.Path))
		}
		pol := open.Policy
		if s.cfg.old {
			pol = nil
		}
		parts, err = replicate.EnsureReplica(ctx, s.cfg.Store, open.Path, open.Partitions, pol)
	} else {
		parts, err = replicate.EnsureReplica(ctx, s.cfg.Store, open.Path, 0, nil)
	}
	if err != nil {
		var we *wire.Error
		if errors.As(err, &we) && we.Code == wire.CodeStream {
			// This stream cannot be replicated (say its partitions differ):
			// the others go on.
			return sess.end(ctx, qs, fc, open.Path, open.Dir == wire.Down, err, true)
		}
		if errors.As(err, &we) {
			return refuse(we)
		}
		return err
	}
	acc := &wire.Accept{}
	if open.Dir == wire.Down {
		acc.Partitions = parts
		if !s.cfg.old {
			acc.Policy = replicate.SourcePolicy(ctx, s.cfg.Store, open.Path)
		}
	}
	if err := fc.Send(acc); err != nil {
		return wire.FromQUIC(err)
	}
	edge := sess.Link.Peer()
	var allow func(string) error
	switch {
	case open.Dir == wire.Up && s.cfg.Fence != nil:
		allow = func(topic string) error {
			if err := s.cfg.Fence(); err != nil {
				return wire.Errorf(wire.CodeShutdown, "core %s: %v", s.self.Name, err)
			}
			return s.cfg.Topics(edge, open.Path, topic)
		}
	case open.Dir == wire.Up:
		allow = func(topic string) error { return s.cfg.Topics(edge, open.Path, topic) }
	case s.cfg.Sends != nil:
		allow = func(topic string) error { return s.cfg.Sends(edge, open.Path, topic) }
	}
	return sess.run(ctx, qs, fc, open.Path, open.Dir == wire.Down, parts, allow)
}

// fenceEvery is how often a link checks the server's Fence between
// batches, so that a link with nothing to apply ends too.
const fenceEvery = 100 * time.Millisecond

// watchFence ends a link once the server's Fence fails.
func (s *Server) watchFence(ctx context.Context) error {
	t := time.NewTicker(fenceEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := s.cfg.Fence(); err != nil {
				return wire.Errorf(wire.CodeShutdown, "core %s: %v", s.self.Name, err)
			}
		}
	}
}

// Drop closes edge's link, if it has one, with err (a wire.Redirect
// sends the edge to another core).
func (s *Server) Drop(edge string, err error) {
	s.mu.Lock()
	sc := s.sessions[edge]
	s.mu.Unlock()
	if sc != nil {
		wire.Close(sc.conn, err)
	}
}

// DropAll closes every edge's link with err.
func (s *Server) DropAll(err error) {
	s.mu.Lock()
	var conns []*quic.Conn
	for _, sc := range s.sessions {
		conns = append(conns, sc.conn)
	}
	s.mu.Unlock()
	for _, c := range conns {
		wire.Close(c, err)
	}
}

// Edges returns the names of the edges linked now.
func (s *Server) Edges() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.sessions))
	for e := range s.sessions {
		out = append(out, e)
	}
	slices.Sort(out)
	return out
}

// History asks the connected edge for a device's messages the core does
// not hold, over the edge's link.
func (s *Server) History(ctx context.Context, edge, device string, from, to time.Time, limit int) ([]store.Message, bool, error) {
	s.mu.Lock()
	sc, since := s.sessions[edge], s.since[edge]
	s.mu.Unlock()
	if sc == nil {
		return nil, false, &NotConnectedError{Edge: edge, Since: since, started: s.started}
	}
	msgs, more, err := history.Fetch(ctx, sc.conn, device, from, to, limit)
	if err != nil && sc.conn.Context().Err() != nil && ctx.Err() == nil {
		// The link went down during the request.
		return nil, false, &NotConnectedError{Edge: edge, Since: s.cfg.Now(), started: s.started, cause: err}
	}
	return msgs, more, err
}

// NotConnectedError is the error of a request to an edge whose link is
// down. Since is when its last connection ended, zero if it has not
// connected since this server started.
type NotConnectedError struct {
	Edge    string
	Since   time.Time
	started time.Time
	cause   error
}

func (e *NotConnectedError) Error() string {
	if e.Since.IsZero() {
		return fmt.Sprintf("link: edge %s is not connected (not since this core started at %s)", e.Edge, e.started.UTC().Format(time.RFC3339))
	}
	return fmt.Sprintf("link: edge %s is not connected (since %s)", e.Edge, e.Since.UTC().Format(time.RFC3339))
}

func (e *NotConnectedError) Unwrap() error { return e.cause }

// DisconnectedSince returns when the edge's link went down (zero: not
// up since the server started); an API answers such an error with 503.
func (e *NotConnectedError) DisconnectedSince() time.Time { return e.Since }
