package gateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/weft-io/weft/certs"
)

// listener is the gateway's mochi listener. It accepts TCP connections,
// runs the TLS handshake itself under the CONNECT deadline (so it can
// count refusals by reason and read the device identity), and hands mochi
// a guarded connection. It runs mochi's per-connection code under a
// recover, so a panic while reading one connection's packets (such as
// mochi's truncated v5 SUBSCRIBE, upstream #501) ends that connection
// only.
type listener struct {
	s  *Server
	ln net.Listener

	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	closed  bool
	pending atomic.Int64
	wg      sync.WaitGroup // connection goroutines
	serving sync.WaitGroup // the accept loop, from Init until it returns
}

const listenerID = "weft-mqtts"

var _ listeners.Listener = (*listener)(nil)

func newListener(s *Server) *listener {
	return &listener{s: s, conns: map[net.Conn]struct{}{}}
}

// ID implements listeners.Listener.
func (l *listener) ID() string { return listenerID }

// Address implements listeners.Listener.
func (l *listener) Address() string {
	if l.ln != nil {
		return l.ln.Addr().String()
	}
	return l.s.cfg.Addr
}

// Protocol implements listeners.Listener.
func (l *listener) Protocol() string { return "mqtts" }

// Init implements listeners.Listener: it opens the TCP socket.
func (l *listener) Init(*slog.Logger) error {
	ln, err := net.Listen("tcp", l.s.cfg.Addr)
	if err != nil {
		return err
	}
	l.ln = ln
	l.serving.Add(1) // mochi runs Serve next, in a goroutine of its own
	return nil
}

// Serve implements listeners.Listener: it accepts connections until
// closed.
func (l *listener) Serve(establish listeners.EstablishFn) {
	defer l.serving.Done()
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				continue // temporary: out of file descriptors and the like
			}
			l.s.log.Error("accept failed", "err", err)
			return
		}
		if !l.track(c) {
			c.Close()
			return
		}
		if l.pending.Add(1) > int64(l.s.cfg.MaxPending) {
			l.pending.Add(-1)
			l.s.metrics.refusals.inc(RefuseMaxPending)
			l.untrack(c)
			c.Close()
			continue
		}
		l.wg.Add(1)
		go l.serveConn(c, establish)
	}
}

func (l *listener) track(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.conns[c] = struct{}{}
	return true
}

func (l *listener) untrack(c net.Conn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
}

// Close implements listeners.Listener: it stops accepting, lets mochi
// disconnect its clients, then closes whatever connection is left (those
// still in the handshake or before their CONNECT).
func (l *listener) Close(closeClients listeners.CloseFn) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	l.mu.Unlock()
	l.ln.Close()
	closeClients(l.ID())
	l.mu.Lock()
	for c := range l.conns {
		c.Close()
	}
	l.mu.Unlock()
}

// closeAll closes every connection at once, whatever it is doing.
func (l *listener) closeAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for c := range l.conns {
		c.Close()
	}
}

// wait waits for the accept loop and every connection goroutine (their
// publish queues drained) to end.
func (l *listener) wait() {
	l.serving.Wait()
	l.wg.Wait()
}

// serveConn runs one connection: handshake, identity, then mochi.
func (l *listener) serveConn(raw net.Conn, establish listeners.EstablishFn) {
	defer l.wg.Done()
	defer l.untrack(raw)
	s := l.s
	sess := &session{s: s}
	pending := true
	release := func() {
		if pending {
			pending = false
			l.pending.Add(-1)
		}
	}
	sess.onConnect = release
	defer release()
	defer func() {
		if sess.queue != nil {
			sess.queue.drain() // its goroutine writes to the store
		}
	}()

	defer func() {
		if r := recover(); r != nil {
			raw.Close()
			s.log.Error("connection goroutine panicked; connection closed", "device", sess.dev.ID, "remote", raw.RemoteAddr().String(), "panic", r, "stack", string(debug.Stack()))
			sess.markClose(DisconnectPanic)
			s.connectionEnded(sess, errPanic)
		}
	}()

	g := l.secure(raw, sess)
	if g == nil {
		return
	}
	err := establish(listenerID, g)
	s.connectionEnded(sess, err)
}

// secure runs the TLS handshake and reads the device's identity; nil means
// the connection was refused and closed. It is a function of its own so
// that its locals do not stay on the stack of the connection's long-lived
// goroutine, which then fits in less memory once mochi reads.
//
//go:noinline
func (l *listener) secure(raw net.Conn, sess *session) *guardConn {
	s := l.s
	deadline := time.Now().Add(s.cfg.ConnectTimeout)
	raw.SetDeadline(deadline)
	tc := tls.Server(raw, s.tls)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		reason := handshakeReason(err)
		s.metrics.refusals.inc(reason)
		s.log.Debug("tls handshake refused", "remote", raw.RemoteAddr().String(), "reason", reason, "err", err)
		raw.Close()
		return nil
	}
	id, err := certs.PeerIdentity(tc.ConnectionState(), certs.KindDevice, s.revoker(), s.cfg.Now())
	if err != nil { // VerifyConnection passed an instant ago; only the clock moved
		s.metrics.refusals.inc(identityReason(err))
		tc.Close()
		return nil
	}
	sess.id = id
	sess.dev = Device{ID: id.ID, Class: id.Class}
	sess.limiter = newLimiter(&s.cfg, s.cfg.Now())
	sess.queue = newPublishQueue(s, sess)
	g := &guardConn{Conn: tc, sess: sess, max: s.cfg.MaxPacketSize, m: s.metrics}
	sess.conn = g
	return g
}

// revoker returns the CRL as a certs.Revoker, nil if there is none.
func (s *Server) revoker() certs.Revoker {
	if s.cfg.Revocations == nil {
		return nil
	}
	return s.cfg.Revocations
}

var errPanic = errors.New("gateway: connection goroutine panicked")

// connectionEnded counts how a connection ended and, if mochi could not
// finish its own bookkeeping (a panic), does it in its place.
func (s *Server) connectionEnded(sess *session, err error) {
	s.hook.endSubscribe(sess)
	if sess.onConnect != nil {
		sess.onConnect()
	}
	if sess.counted.Swap(false) {
		s.metrics.connections.Add(-1)
	}
	cl := sess.client.Load()
	established := sess.established.Load()
	switch {
	case sess.refused.Load():
		// counted when refused
	case !established:
		s.metrics.refusals.inc(connectReason(err))
		s.log.Debug("connection refused", "device", sess.dev.ID, "err", err)
	default:
		reason := sess.closeReason()
		if reason == "" {
			reason = disconnectReason(err)
		}
		if reason != "" {
			s.metrics.disconnects.inc(reason)
			s.log.Debug("session closed", "device", sess.dev.ID, "reason", reason, "err", err)
		}
	}
	if cl == nil || !established || sess.ended.Load() {
		return
	}
	// mochi did not run its end-of-connection steps (the goroutine
	// panicked): send the Will into the store, tell the hooks, and drop a
	// clean session as mochi would have.
	cl.Stop(err)
	s.hook.storeWill(cl)
	expire := (cl.Properties.ProtocolVersion == 5 && cl.Properties.Props.SessionExpiryInterval == 0) ||
		(cl.Properties.ProtocolVersion < 5 && cl.Properties.Clean)
	s.state.OnDisconnect(cl, err, expire)
	s.hook.OnDisconnect(cl, err, expire)
	if expire && !cl.IsTakenOver() {
		cl.ClearInflights()
		s.mqtt.UnsubscribeClient(cl)
		if cur, ok := s.mqtt.Clients.Get(cl.ID); ok && cur == cl {
			s.mqtt.Clients.Delete(cl.ID)
		}
	}
}

// handshakeReason classifies a failed TLS handshake.
func handshakeReason(err error) string {
	var ne net.Error
	var unknown x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	switch {
	case errors.As(err, &unknown):
		return RefuseUnknownCA
	case errors.As(err, &invalid):
		if invalid.Reason == x509.Expired {
			if strings.Contains(invalid.Detail, "before") {
				return RefuseNotYetValid
			}
			return RefuseExpired
		}
		return RefuseBadCertificate
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return RefuseHandshakeTimeout
	case strings.Contains(err.Error(), "didn't provide a certificate"):
		return RefuseNoCertificate
	}
	if r := identityReason(err); r != RefuseBadCertificate {
		return r
	}
	var cve *tls.CertificateVerificationError
	if errors.As(err, &cve) {
		return RefuseBadCertificate
	}
	return RefuseTLS
}

// identityReason classifies an error of certs.PeerIdentity.
func identityReason(err error) string {
	switch {
	case errors.Is(err, certs.ErrRevoked):
		return RefuseRevoked
	case errors.Is(err, certs.ErrExpired):
		return RefuseExpired
	case errors.Is(err, certs.ErrNotYetValid):
		return RefuseNotYetValid
	case errors.Is(err, certs.ErrMultipleIdentities):
		return RefuseMultipleIdentities
	case errors.Is(err, certs.ErrNoIdentity):
		return RefuseNoIdentity
	case errors.Is(err, certs.ErrMalformedIdentity), errors.Is(err, certs.ErrWrongKind):
		return RefuseBadIdentity
	case errors.Is(err, certs.ErrCALeaf):
		return RefuseCALeaf
	case errors.Is(err, certs.ErrKeyUsage), errors.Is(err, certs.ErrExtKeyUsage):
		return RefuseKeyUsage
	case errors.Is(err, certs.ErrUnknownAuthority):
		return RefuseUnknownCA
	}
	return RefuseBadCertificate
}

// connectReason classifies how a connection ended before its session was
// established (and before the hook refused it with a reason).
func connectReason(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, errPacketTooLarge), errors.Is(err, packets.ErrPacketTooLarge):
		return RefusePacketTooLarge
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return RefuseConnectTimeout
	case errors.Is(err, errPanic):
		return DisconnectPanic
	}
	return RefuseBadConnect
}

// disconnectReason classifies how an established session ended; "" is a
// device closing its own connection.
func disconnectReason(err error) string {
	var ne net.Error
	var code packets.Code
	switch {
	case err == nil, errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed),
		errors.Is(err, packets.ErrSessionTakenOver), errors.Is(err, packets.ErrServerShuttingDown),
		errors.Is(err, packets.CodeDisconnect):
		return ""
	case errors.Is(err, errPacketTooLarge):
		return DisconnectPacketTooLarge
	case errors.Is(err, errPanic):
		return DisconnectPanic
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return DisconnectKeepalive
	case errors.As(err, &code):
		switch code.Code {
		case 0x81:
			return DisconnectMalformed
		case 0x82:
			return DisconnectProtocolViolation
		case 0x87:
			return DisconnectNotAuthorized
		case 0x93:
			return DisconnectReceiveMaximum
		case 0x94:
			return DisconnectTopicAlias
		case 0x95:
			return DisconnectPacketTooLarge
		case 0x00, 0x04:
			return ""
		}
	}
	if strings.Contains(err.Error(), "use of closed network connection") || strings.Contains(err.Error(), "connection reset") {
		return ""
	}
	if strings.Contains(err.Error(), "invalid packet type") {
		return DisconnectMalformed
	}
	return DisconnectOther
}
