package link

import (
	"context"
	"net"
)

// Transport carries links' QUIC packets over a network of its own, such
// as a tailnet (package tailnet), instead of the host's UDP sockets. A
// link over a Transport is the same link: the same TLS, handshake and
// streams.
type Transport interface {
	// ListenPacket returns the socket a core listens on for its edges;
	// addr is the address it was given to listen on (host:port), which
	// the transport reads in its own terms.
	ListenPacket(ctx context.Context, addr string) (net.PacketConn, error)
	// DialPacket returns a socket for one connection to the core at addr
	// (host:port, the host a name on the transport's network) and where
	// on that network addr is. The link closes the socket when the
	// connection ends.
	DialPacket(ctx context.Context, addr string) (net.PacketConn, net.Addr, error)
}
