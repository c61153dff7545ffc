package wire

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/weft-io/weft/certs"
)

// ALPN is the TLS application protocol of sync links.
const ALPN = "weft-sync"

// Keepalive and idle timeout of links: a silent peer is given up after
// IdleTimeout, and each side sends something every KeepAlive.
const (
	KeepAlive   = time.Second
	IdleTimeout = 5 * time.Second
)

// MinPacketSize is the size of the packets a link starts with, and never
// goes below: QUIC's minimum (RFC 9000, 14.1). With IPv6's 48 bytes of
// headers it fits a path MTU of 1280 (the IPv6 minimum, common on cellular
// and VPN paths); path MTU discovery then grows packets to what the path
// carries.
const MinPacketSize = 1200

// TLSConfig describes this node's side of a link.
type TLSConfig struct {
	// Certificate is the node's pair (certs/nodes/NAME.*).
	Certificate *certs.KeyPair
	// FabricCAs verify the peer: the fabric CA only.
	FabricCAs *x509.CertPool
	// Revocations, if not nil, refuses revoked peers.
	Revocations certs.Revoker
	// ServerName is the name the server's certificate must carry (client
	// side). Default: the host of the address dialled.
	ServerName string
	// Now is the clock certificates are checked against. Default time.Now.
	Now func() time.Time
}

// ServerTLS returns the TLS configuration of a core: TLS 1.3, a client
// certificate of the fabric CA required, and the client must be an edge.
func ServerTLS(c TLSConfig) *tls.Config {
	tc := certs.ServerConfig(c.Certificate, c.FabricCAs, certs.KindNode, nil)
	tc.MinVersion = tls.VersionTLS13
	tc.NextProtos = []string{ALPN}
	tc.VerifyConnection = RequireRole(certs.EdgeNode, c.Revocations, c.Now)
	tc.Time = c.Now // chain validity by the same clock as the identity check
	return tc
}

// ClientTLS returns the TLS configuration of an edge: TLS 1.3, the server
// verified against the fabric CA only and required to be a core.
func ClientTLS(c TLSConfig) *tls.Config {
	tc := certs.ClientConfig(c.Certificate, c.FabricCAs, certs.KindNode, nil)
	tc.MinVersion = tls.VersionTLS13
	tc.NextProtos = []string{ALPN}
	tc.ServerName = c.ServerName
	tc.VerifyConnection = RequireRole(certs.CoreNode, c.Revocations, c.Now)
	tc.Time = c.Now // chain validity by the same clock as the identity check
	return tc
}

// RequireRole is a tls.Config.VerifyConnection hook: the peer must present a
// valid node certificate of the given role, not revoked by rev (which may
// be nil). It runs on every handshake, resumed ones included.
func RequireRole(role string, rev certs.Revoker, now func() time.Time) func(tls.ConnectionState) error {
	if now == nil {
		now = time.Now
	}
	return func(cs tls.ConnectionState) error {
		id, err := certs.PeerIdentity(cs, certs.KindNode, rev, now())
		if err != nil {
			return err
		}
		if id.Role != role {
			return fmt.Errorf("wire: peer %s is not a %s node", id.URI(), role)
		}
		return nil
	}
}

// QUICConfig returns the QUIC settings of links: 0-RTT off, keepalive and
// idle timeout as above, packets of MinPacketSize until path MTU discovery
// finds more, flow-control windows sized for bulk transfers, and room for
// a control stream plus many replicated streams.
func QUICConfig() *quic.Config {
	return &quic.Config{
		HandshakeIdleTimeout:           5 * time.Second,
		InitialPacketSize:              MinPacketSize,
		MaxIdleTimeout:                 IdleTimeout,
		KeepAlivePeriod:                KeepAlive,
		Allow0RTT:                      false,
		InitialStreamReceiveWindow:     1 << 20,
		MaxStreamReceiveWindow:         16 << 20,
		InitialConnectionReceiveWindow: 2 << 20,
		MaxConnectionReceiveWindow:     64 << 20,
		MaxIncomingStreams:             256,
		MaxIncomingUniStreams:          -1,
	}
}

// SmallPackets returns a copy of qc (QUICConfig if nil) that keeps every
// packet at MinPacketSize: path MTU discovery off. It is for a connection
// over a path whose MTU fell under the packets discovery had found (quic-go
// never lowers them again, so such a path stalls).
func SmallPackets(qc *quic.Config) *quic.Config {
	if qc == nil {
		qc = QUICConfig()
	}
	qc = qc.Clone()
	if qc.InitialPacketSize == 0 || qc.InitialPacketSize > MinPacketSize {
		qc.InitialPacketSize = MinPacketSize
	}
	qc.DisablePathMTUDiscovery = true
	return qc
}

// Listener accepts links. Close closes its socket too.
type Listener struct {
	*quic.Listener
	tr *quic.Transport
	pc net.PacketConn
}

// Close stops accepting and closes the socket and every connection.
func (l *Listener) Close() error {
	err := l.Listener.Close()
	l.tr.Close()
	l.pc.Close() // a Transport does not close a socket it was given
	return err
}

// Listen listens for links on the UDP address addr. A non-nil resetKey
// makes the listener answer packets of connections it does not know (those
// of a previous run of the node, say after a crash) with a stateless
// reset, so that peers notice at once rather than after the idle timeout;
// it must stay the same across restarts (see ResetKey).
func Listen(addr string, tc *tls.Config, qc *quic.Config, resetKey *quic.StatelessResetKey) (*Listener, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("wire: listen %s: %w", addr, err)
	}
	uc, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, fmt.Errorf("wire: listen %s: %w", addr, err)
	}
	return ListenPacket(uc, tc, qc, resetKey)
}

// ListenPacket is Listen on a socket of the caller's, such as one of a
// tailnet's (package tailnet); the listener closes pc when it closes, or
// at once if it cannot listen.
func ListenPacket(pc net.PacketConn, tc *tls.Config, qc *quic.Config, resetKey *quic.StatelessResetKey) (*Listener, error) {
	if qc == nil {
		qc = QUICConfig()
	}
	tr := &quic.Transport{Conn: pc, StatelessResetKey: resetKey}
	ln, err := tr.Listen(tc, qc)
	if err != nil {
		tr.Close()
		pc.Close()
		return nil, fmt.Errorf("wire: listen %s: %w", pc.LocalAddr(), err)
	}
	return &Listener{Listener: ln, tr: tr, pc: pc}, nil
}

// ResetKey derives a stateless reset key from the node's private key: the
// same across restarts, secret as the key is.
func ResetKey(pair *certs.KeyPair) (*quic.StatelessResetKey, error) {
	c := pair.Certificate()
	if c == nil || c.PrivateKey == nil {
		return nil, fmt.Errorf("wire: no private key")
	}
	der, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("wire: reset key: %w", err)
	}
	mac := hmac.New(sha256.New, der)
	mac.Write([]byte("weft sync stateless reset key v1"))
	var k quic.StatelessResetKey
	copy(k[:], mac.Sum(nil))
	return &k, nil
}

// Dial opens a link to the core at addr (host:port, UDP).
func Dial(ctx context.Context, addr string, tc *tls.Config, qc *quic.Config) (*quic.Conn, error) {
	if qc == nil {
		qc = QUICConfig()
	}
	tc, err := serverName(addr, tc)
	if err != nil {
		return nil, err
	}
	c, err := quic.DialAddr(ctx, addr, tc, qc)
	if err != nil {
		return nil, fmt.Errorf("wire: dial %s: %w", addr, err)
	}
	return c, nil
}

// DialPacket is Dial over a socket of the caller's, such as one of a
// tailnet's (package tailnet): addr is the core's address as named (its
// host the name the core's certificate must carry, unless tc sets
// ServerName), raddr where packets go. pc is closed when the connection
// ends, or at once if it cannot be made.
func DialPacket(ctx context.Context, pc net.PacketConn, addr string, raddr net.Addr, tc *tls.Config, qc *quic.Config) (*quic.Conn, error) {
	if qc == nil {
		qc = QUICConfig()
	}
	tc, err := serverName(addr, tc)
	if err != nil {
		pc.Close()
		return nil, err
	}
	c, err := quic.Dial(ctx, pc, raddr, tc, qc)
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("wire: dial %s (%s): %w", addr, raddr, err)
	}
	go func() {
		<-c.Context().Done()
		pc.Close()
	}()
	return c, nil
}

// serverName returns tc, or a copy of it whose ServerName is the host of
// addr if it had none.
func serverName(addr string, tc *tls.Config) (*tls.Config, error) {
	if tc.ServerName != "" {
		return tc, nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("wire: dial %s: %w", addr, err)
	}
	tc = tc.Clone()
	tc.ServerName = host
	return tc, nil
}

// Peer returns the identity of the node at the other end of c, read from
// its verified certificate as of now.
func Peer(c *quic.Conn, now time.Time) (certs.Identity, error) {
	return certs.PeerIdentity(c.ConnectionState().TLS, certs.KindNode, nil, now)
}

// Close closes c with the code of err (CodeNone for nil) and its message.
func Close(c *quic.Conn, err error) {
	if err == nil {
		c.CloseWithError(quic.ApplicationErrorCode(CodeNone), "")
		return
	}
	msg := err.Error()
	if len(msg) > 512 {
		msg = msg[:512]
	}
	c.CloseWithError(quic.ApplicationErrorCode(CodeOf(err)), msg)
}
