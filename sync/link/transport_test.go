package link

import (
	"context"
	"net"
	"sync/atomic"
	"testing"

	"github.com/weft-io/weft/store"
)

// sockets is a Transport over loopback UDP that counts what it is asked
// for and the packets its sockets carry. Its sockets are not *net.UDPConn,
// as a tailnet's are not.
type sockets struct {
	listens, dials, closed, packets atomic.Int64
	dialled                         atomic.Value // the last address dialled
}

type countedConn struct {
	net.PacketConn
	s *sockets
}

func (c *countedConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, a, err := c.PacketConn.ReadFrom(b)
	if err == nil {
		c.s.packets.Add(1)
	}
	return n, a, err
}

func (c *countedConn) Close() error {
	c.s.closed.Add(1)
	return c.PacketConn.Close()
}

func (s *sockets) ListenPacket(ctx context.Context, addr string) (net.PacketConn, error) {
	s.listens.Add(1)
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, err
	}
	return &countedConn{pc, s}, nil
}

func (s *sockets) DialPacket(ctx context.Context, addr string) (net.PacketConn, net.Addr, error) {
	s.dials.Add(1)
	s.dialled.Store(addr)
	ra, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, nil, err
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	return &countedConn{pc, s}, ra, nil
}

// TestTransport: a link over a Transport replicates as over UDP, every
// packet through the transport's sockets, which the link closes when it
// ends.
func TestTransport(t *testing.T) {
	core, edge := &sockets{}, &sockets{}
	f := newFabric(t, ServerConfig{Transport: core})
	appendN(t, f.edge, store.UplinkStream, "edge1", 500, 200, "pre")
	_, stop := f.startLink(ClientConfig{Transport: edge})
	waitSame(t, f.edge, f.core, store.UplinkStream)
	if core.listens.Load() != 1 || core.packets.Load() == 0 || edge.dials.Load() == 0 || edge.packets.Load() == 0 {
		t.Fatalf("core: %d listens, %d packets; edge: %d dials, %d packets",
			core.listens.Load(), core.packets.Load(), edge.dials.Load(), edge.packets.Load())
	}
	if a, _ := edge.dialled.Load().(string); a != f.addr {
		t.Fatalf("dialled %q, want %q", a, f.addr)
	}
	stop()
	waitFor(t, "the edge's sockets closed", func() bool { return edge.closed.Load() == edge.dials.Load() })
}
