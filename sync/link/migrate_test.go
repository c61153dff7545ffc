package link

import (
	"bytes"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/weft-io/weft/store"
)

// rebinder is a UDP relay between an edge and its core that can change
// the port it sends to the core from, as a NAT that rebinds does, or a
// box whose address changes: the core sees the same QUIC connection come
// from a new address.
type rebinder struct {
	t     *testing.T
	front *net.UDPConn // the edge dials this
	core  *net.UDPAddr

	mu   sync.Mutex
	back *net.UDPConn // the socket the core sees now
	edge *net.UDPAddr
	all  []*net.UDPConn
}

func newRebinder(t *testing.T, core string) *rebinder {
	t.Helper()
	front, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	caddr, err := net.ResolveUDPAddr("udp", core)
	if err != nil {
		t.Fatal(err)
	}
	r := &rebinder{t: t, front: front, core: caddr}
	r.rebind()
	t.Cleanup(func() {
		front.Close()
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, c := range r.all {
			c.Close()
		}
	})
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, from, err := front.ReadFromUDP(buf)
			if err != nil {
				return
			}
			r.mu.Lock()
			r.edge = from
			back := r.back
			r.mu.Unlock()
			back.WriteToUDP(buf[:n], r.core)
		}
	}()
	return r
}

// rebind sends what follows from a new port, and returns the address the
// core now sees.
func (r *rebinder) rebind() string {
	back, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		r.t.Fatal(err)
	}
	r.mu.Lock()
	r.back = back
	r.all = append(r.all, back)
	r.mu.Unlock()
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := back.Read(buf)
			if err != nil {
				return
			}
			r.mu.Lock()
			edge := r.edge
			r.mu.Unlock()
			if edge != nil {
				r.front.WriteToUDP(buf[:n], edge)
			}
		}
	}()
	return back.LocalAddr().String()
}

// TestAddressAfterMigration: when the edge's packets start coming from
// another address on a live link, QUIC migrates the connection (no
// reconnect) and the core shows the edge's new address; and an edge that
// reconnects from another address is shown there too.
func TestAddressAfterMigration(t *testing.T) {
	var logs lockedBuffer
	f := newFabric(t, ServerConfig{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	r := newRebinder(t, f.addr)
	first := func() string { r.mu.Lock(); defer r.mu.Unlock(); return r.back.LocalAddr().String() }()
	f.addr = r.front.LocalAddr().String() // the edge dials the relay
	_, stop := f.startLink(ClientConfig{})
	addr := func() (string, int64) {
		for _, l := range f.srv.Monitor().Links() {
			if l.Peer == "edge1" {
				return l.Addr, l.Reconnects
			}
		}
		return "", 0
	}
	appendN(t, f.edge, store.UplinkStream, "edge1", 100, 100, "before")
	waitSame(t, f.edge, f.core, store.UplinkStream)
	if a, _ := addr(); a != first {
		t.Fatalf("core shows the edge at %s, want %s", a, first)
	}
	second := r.rebind()
	appendN(t, f.edge, store.UplinkStream, "edge1", 100, 100, "after")
	waitSame(t, f.edge, f.core, store.UplinkStream)
	waitFor(t, "the core showing the edge's new address", func() bool {
		appendN(t, f.edge, store.UplinkStream, "edge1", 1, 10, "poke")
		a, _ := addr()
		return a == second
	})
	if _, n := addr(); n != 0 {
		t.Fatalf("%d reconnects: the connection did not migrate", n)
	}
	waitFor(t, "the core logging the migration", func() bool {
		return strings.Contains(logs.String(), "connection migrated") && strings.Contains(logs.String(), "new_addr="+second)
	})
	// A reconnect from a third address.
	stop()
	third := r.rebind()
	f.startLink(ClientConfig{})
	appendN(t, f.edge, store.UplinkStream, "edge1", 10, 100, "again")
	waitSame(t, f.edge, f.core, store.UplinkStream)
	waitFor(t, "the core showing the address of the new connection", func() bool {
		a, n := addr()
		return a == third && n == 1
	})
}

// lockedBuffer is a bytes.Buffer a logger and a test share.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
