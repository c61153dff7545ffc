package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/big"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/store"
)

// Server is a device gateway: an embedded mochi MQTT broker behind a
// mutual-TLS listener, with Weft's hooks for identity, ACL, limits, the
// publish path to the store, the downlink from /updates/down and the
// session state kept in the store.
type Server struct {
	cfg     Config
	log     *slog.Logger
	metrics *Metrics
	tls     *tls.Config
	reg     *registry
	limits  *limits

	// storeCtx is used for store calls made from mochi's hooks, which get
	// no context; it ends when the server is shut down.
	storeCtx    context.Context
	storeCancel context.CancelFunc

	mu      sync.Mutex
	started bool
	stopped bool
	mqtt    *mqtt.Server
	hook    *hook
	state   *stateHook
	ln      *listener
	down    *downlink
	bg      sync.WaitGroup
	bgStop  context.CancelFunc
	closing atomic.Bool

	// deliver orders the downlink's publishes (held for writing) against
	// the SUBSCRIBEs being handled (held for reading, from before the
	// subscription is added until the retained messages are sent): mochi
	// adds a subscription, answers SUBACK and only then looks up the
	// retained messages, so a message published in between would reach
	// the new subscription twice, live and as retained. Sessions being
	// set up hold it for reading too, from before mochi takes over the
	// old session until the inflight messages are queued again, so that
	// no message lands in the old session or overtakes those.
	deliver sync.RWMutex

	// converged is the last delta convergence sent each device.
	convergeMu sync.Mutex
	converged  map[string]sentDelta
}

// New checks cfg, applies its defaults and returns a server ready to
// Start. It registers the server's Metrics on cfg.Registerer, if set.
func New(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:       cfg,
		log:       cfg.Logger.With("component", "gateway", "gateway", cfg.Name),
		metrics:   newMetrics(),
		reg:       newRegistry(),
		converged: map[string]sentDelta{},
	}
	s.limits = newLimits(&s.cfg)
	var rev certs.Revoker
	if cfg.Revocations != nil {
		rev = cfg.Revocations
	}
	s.tls = certs.ServerConfig(cfg.Certificate, cfg.DeviceCAs, certs.KindDevice, rev)
	// Device certificates are valid or not by the gateway's clock, in the
	// chain verification and in the identity check alike.
	s.tls.Time = cfg.Now
	s.tls.VerifyConnection = certs.VerifyConnection(certs.KindDevice, rev, cfg.Now)
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(s.metrics); err != nil {
			return nil, fmt.Errorf("gateway: register metrics: %w", err)
		}
	}
	return s, nil
}

// Metrics returns the server's counters.
func (s *Server) Metrics() *Metrics { return s.metrics }

// Name is the gateway's name.
func (s *Server) Name() string { return s.cfg.Name }

// Addr returns the address the server listens on once started, nil
// before.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.ln.Addr()
}

// Run starts the server, serves until ctx ends, then shuts it down
// (giving live connections up to 10 seconds).
func (s *Server) Run(ctx context.Context) error {
	if err := s.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return s.Shutdown(sctx)
}

// Start restores the sessions kept in the store, starts listening and
// starts delivering /updates/down. It returns once the listener is open.
// A server is started once.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started || s.stopped {
		return errors.New("gateway: already started")
	}

	if err := s.prepareStore(ctx); err != nil {
		return err
	}
	s.storeCtx, s.storeCancel = context.WithCancel(context.WithoutCancel(ctx))

	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumClients = math.MaxInt64 // the hook enforces MaxConnections with the right reason code
	caps.MaximumPacketSize = uint32(s.cfg.MaxPacketSize)
	caps.TopicAliasMaximum = uint16(s.cfg.TopicAliasMaximum)
	caps.MaximumSessionExpiryInterval = uint32(min(s.cfg.SessionExpiry/time.Second, math.MaxUint32))
	caps.MaximumMessageExpiryInterval = 0 // updates stay retained until replaced
	caps.MaximumClientWritesPending = 256 // a buffer per connection: keep idle connections small
	caps.MaximumInflight = MaxInflight
	caps.SharedSubAvailable = 0
	s.mqtt = mqtt.New(&mqtt.Options{
		Capabilities:           caps,
		Logger:                 slog.New(minLevel{s.cfg.Logger.Handler(), slog.LevelError}).With("component", "mqtt", "gateway", s.cfg.Name),
		SysTopicResendInterval: 60,
	})

	s.hook = &hook{s: s}
	s.state = newStateHook(s)
	// The state hook goes first: its OnDisconnect must see whether the
	// connection is still its device's current one before the weft hook
	// clears that.
	for _, h := range []mqtt.Hook{s.state, s.hook} {
		if err := s.mqtt.AddHook(h, nil); err != nil {
			s.state.w.close()
			return fmt.Errorf("gateway: %w", err)
		}
	}
	s.ln = newListener(s)
	if err := s.mqtt.AddListener(s.ln); err != nil {
		s.state.w.close()
		return fmt.Errorf("gateway: listen %s: %w", s.cfg.Addr, err)
	}
	if err := s.mqtt.Serve(); err != nil {
		s.ln.ln.Close()
		s.state.w.close()
		return fmt.Errorf("gateway: start: %w", err)
	}

	bgCtx, bgStop := context.WithCancel(context.WithoutCancel(ctx))
	s.bgStop = bgStop
	s.down = newDownlink(s)
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		s.down.run(bgCtx)
	}()
	if rev := s.cfg.Revocations; rev != nil {
		rev.OnChange(s.sweep)
		s.bg.Add(1)
		go func() {
			defer s.bg.Done()
			rev.Run(bgCtx)
		}()
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		t := time.NewTicker(30 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-bgCtx.Done():
				return
			case <-t.C:
				s.sweep()
				s.limits.evict(s.cfg.Now())
			}
		}
	}()
	s.started = true
	s.log.Info("gateway listening", "addr", s.ln.ln.Addr().String())
	return nil
}

// prepareStore creates the session state volume and table if missing.
func (s *Server) prepareStore(ctx context.Context) error {
	st := s.cfg.Store
	if err := st.CreateVolume(ctx, StateVolume, store.VolumeOptions{}); err != nil && !errors.Is(err, store.ErrExists) {
		return fmt.Errorf("gateway: create volume %s: %w", StateVolume, err)
	}
	if err := st.CreateTable(ctx, StateTable(s.cfg.Name), store.TableOptions{}); err != nil && !errors.Is(err, store.ErrExists) {
		return fmt.Errorf("gateway: create table %s: %w", StateTable(s.cfg.Name), err)
	}
	return nil
}

// Shutdown stops accepting connections and delivering updates, closes
// every connection (v5 devices get DISCONNECT 0x8B server shutting down),
// and makes the session state durable. Persistent sessions stay in the
// store for the next start.
//
// It returns once every goroutine the server started has ended: the
// downlink, the revocation and expiry sweeps, mochi's housekeeping, the
// accept loop, each connection's reading, writing and publish queue, and
// the session state writer. The store can be closed then. If ctx ends
// first, Shutdown stops waiting on the store (its calls in flight fail,
// what they had not written is lost) and closes the connections left at
// once, waits for those goroutines to end all the same, and returns
// ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.started || s.stopped {
		s.mu.Unlock()
		return nil
	}
	s.stopped = true
	s.mu.Unlock()
	s.closing.Store(true)

	done := make(chan struct{})
	go func() {
		defer close(done)
		s.bgStop()
		s.bg.Wait()
		s.mqtt.Close() // waits for its event loop, closes the listener and clients, then stops the hooks
		s.ln.wait()
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
		s.log.Warn("gateway shutdown forced", "err", err)
		s.storeCancel()
		s.ln.closeAll()
		<-done
	}
	s.storeCancel()
	s.log.Info("gateway stopped")
	return err
}

// sweep closes the sessions of devices whose certificate has been
// revoked or has expired. It runs when the CRL changes and every 30
// seconds.
func (s *Server) sweep() {
	if s.closing.Load() {
		return
	}
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("session sweep panicked", "panic", r, "stack", string(debug.Stack()))
		}
	}()
	now := s.cfg.Now()
	for _, cl := range s.mqtt.Clients.GetAll() {
		sess := sessionOf(cl)
		if sess == nil || cl.Closed() {
			continue
		}
		revoked := s.cfg.Revocations.Revoked(sess.id.Serial)
		if !revoked && !now.After(sess.id.NotAfter) {
			continue
		}
		s.log.Info("closing session of revoked or expired certificate", "device", sess.dev.ID, "revoked", revoked)
		s.hook.disconnect(cl, sess, codeRevoked, DisconnectRevoked)
	}
}

// deviceOf returns who cl is: the identity of its connection, or for a
// session kept while its device is away, the identity it last connected
// with. With checkRevoked, a revoked device is nobody.
func (s *Server) deviceOf(cl *mqtt.Client, checkRevoked bool) (Device, *big.Int, bool) {
	if sess := sessionOf(cl); sess != nil {
		return sess.dev, sess.id.Serial, true
	}
	dev, serial, ok := s.reg.lookup(cl.ID)
	if !ok {
		return Device{}, nil, false
	}
	if checkRevoked && serial != nil && s.cfg.Revocations.Revoked(serial) {
		return Device{}, nil, false
	}
	return dev, serial, true
}

// minLevel is a slog handler passing on only records at or above a level
// (mochi logs every refused packet at warning level; the gateway counts
// and logs those itself).
type minLevel struct {
	slog.Handler
	level slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.level && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(a []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(a), h.level}
}

func (h minLevel) WithGroup(n string) slog.Handler {
	return minLevel{h.Handler.WithGroup(n), h.level}
}
