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
	"runtime"
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
	pend    *pendingTable // guarded by mu
	closed  bool
	done    chan struct{}  // closed by Close
	pending atomic.Int64   // connections holding a pending slot
	wg      sync.WaitGroup // connection goroutines
	serving sync.WaitGroup // the accept loop, from Init until it returns
}

const listenerID = "weft-mqtts"

var _ listeners.Listener = (*listener)(nil)

func newListener(s *Server) *listener {
	return &listener{s: s, conns: map[net.Conn]struct{}{}, done: make(chan struct{}),
		pend: newPendingTable(s.cfg.MaxPending, s.cfg.MaxPendingPerIP)}
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
	lc := net.ListenConfig{Control: deferAccept(l.s.cfg.FirstByteTimeout)}
	ln, err := lc.Listen(context.Background(), "tcp", l.s.cfg.Addr)
	if err != nil {
		return err
	}
	l.ln = ln
	l.serving.Add(1) // mochi runs Serve next, in a goroutine of its own
	return nil
}

// Serve implements listeners.Listener: it accepts connections until
// closed. On a temporary error (out of file descriptors, EMFILE or
// ENFILE, and the like) it waits before accepting again, 5 ms doubling up
// to 1 s, as net/http's Server does, instead of spinning.
func (l *listener) Serve(establish listeners.EstablishFn) {
	defer l.serving.Done()
	// Several accept loops: under a flood of connections refused at once,
	// the accept queue drains faster and a device waits less in it.
	var loops sync.WaitGroup
	for range acceptLoops - 1 {
		loops.Add(1)
		go func() {
			defer loops.Done()
			l.acceptLoop(establish)
		}()
	}
	l.acceptLoop(establish)
	loops.Wait()
}

// acceptLoops is the number of goroutines accepting connections.
var acceptLoops = max(2, min(runtime.GOMAXPROCS(0), 4))

func (l *listener) acceptLoop(establish listeners.EstablishFn) {
	var delay time.Duration
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if !temporary(err) {
				l.s.log.Error("accept failed", "err", err)
				return
			}
			delay = acceptBackoff(delay)
			l.s.metrics.acceptBackoffs.Add(1)
			l.s.log.Warn("accept failed; retrying", "err", err, "delay", delay)
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-l.done:
				t.Stop()
				return
			}
			continue
		}
		delay = 0
		slot, ok := l.admit(c)
		if !ok {
			return // closed
		}
		if slot == nil {
			continue
		}
		l.wg.Add(1)
		go l.serveConn(c, slot, establish)
	}
}

// acceptBackoff is the wait after an accept error that follows one
// waited for d: 5 ms, then twice as long each time, at most 1 s.
func acceptBackoff(d time.Duration) time.Duration {
	if d == 0 {
		return 5 * time.Millisecond
	}
	return min(2*d, time.Second)
}

// temporary reports whether an accept error is worth retrying.
func temporary(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM,
		syscall.ECONNABORTED, syscall.ECONNRESET, syscall.EAGAIN, syscall.EINTR} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// admit tracks c and gives it a pending slot. It returns ok false if
// the listener is closed (c is closed), and a nil slot if c was refused
// (c is closed and counted). A connection evicted to make room for c is
// closed and counted here.
func (l *listener) admit(c net.Conn) (slot *pendingConn, ok bool) {
	key := sourceKey(c.RemoteAddr())
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		c.Close()
		return nil, false
	}
	slot, victim, reason := l.pend.admit(key, c)
	if slot != nil {
		l.conns[c] = struct{}{}
		if victim == nil {
			l.pending.Add(1)
		}
	}
	l.mu.Unlock()
	if victim != nil {
		l.s.metrics.refusals.inc(RefuseMaxPending)
		abort(victim.conn)
	}
	if slot == nil {
		l.s.metrics.refusals.inc(reason)
		abort(c)
	}
	return slot, true
}

// abort closes a connection refused before its handshake with a reset,
// so that a flood of them leaves no socket in TIME_WAIT on the gateway.
func abort(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// releasePending frees a connection's pending slot; it reports false if
// the slot had been taken from it (the connection is closed, and its
// refusal counted).
func (l *listener) releasePending(slot *pendingConn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if slot.evicted {
		return false
	}
	if !slot.done {
		l.pend.release(slot)
		l.pending.Add(-1)
	}
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
	close(l.done)
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
func (l *listener) serveConn(raw net.Conn, slot *pendingConn, establish listeners.EstablishFn) {
	defer l.wg.Done()
	defer l.untrack(raw)
	s := l.s
	sess := &session{s: s}
	sess.onConnect = func() {
		if !l.releasePending(slot) {
			sess.refused.Store(true) // evicted: counted as max_pending
		}
	}
	defer func() { sess.onConnect() }()
	defer func() {
		if sess.queue != nil {
			sess.queue.drain() // its goroutine writes to the store
		}
		if sess.limiter != nil {
			s.limits.release(sess.limiter)
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

	g := l.secure(raw, slot, sess)
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
func (l *listener) secure(raw net.Conn, slot *pendingConn, sess *session) *guardConn {
	s := l.s
	start := time.Now()
	deadline := start.Add(s.cfg.ConnectTimeout)
	fb := &firstByteConn{Conn: raw, next: start.Add(s.cfg.HandshakeTimeout)}
	raw.SetDeadline(start.Add(s.cfg.FirstByteTimeout))
	tc := tls.Server(fb, s.tls)
	ctx, cancel := context.WithDeadline(context.Background(), fb.next)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		reason := handshakeReason(err)
		if reason == RefuseHandshakeTimeout && !fb.got {
			reason = RefuseFirstByteTimeout
		}
		raw.Close()
		if !l.releasePending(slot) { // evicted: counted already
			sess.refused.Store(true)
			return nil
		}
		s.metrics.refusals.inc(reason)
		s.log.Debug("tls handshake refused", "remote", raw.RemoteAddr().String(), "reason", reason, "err", err)
		return nil
	}
	raw.SetDeadline(deadline)
	id, err := certs.PeerIdentity(tc.ConnectionState(), certs.KindDevice, s.revoker(), s.cfg.Now())
	if err != nil { // VerifyConnection passed an instant ago; only the clock moved
		s.metrics.refusals.inc(identityReason(err))
		tc.Close()
		return nil
	}
	sess.id = id
	sess.dev = Device{ID: id.ID, Class: id.Class}
	sess.limiter = s.limits.acquire(id.ID, s.cfg.Now())
	sess.queue = newPublishQueue(s, sess)
	g := &guardConn{Conn: tc, sess: sess, max: s.cfg.MaxPacketSize, m: s.metrics}
	sess.conn = g
	return g
}

// firstByteConn is a connection in its TLS handshake: once its first
// byte has come, it moves the deadline from the first byte's to the
// handshake's.
type firstByteConn struct {
	net.Conn
	next time.Time
	got  bool
}

func (c *firstByteConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && !c.got {
		c.got = true
		c.Conn.SetDeadline(c.next)
	}
	return n, err
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
