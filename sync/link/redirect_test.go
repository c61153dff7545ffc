package link

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/internal/testenv/wait"
	"github.com/weft-io/weft/store"
	"github.com/weft-io/weft/sync/replicate"
	"github.com/weft-io/weft/sync/wire"
)

// secondCore starts another core server beside f's, with its own store.
func (f *fabric) secondCore(sc ServerConfig) (*Server, *store.Store, string) {
	f.t.Helper()
	st := openStore(f.t, filepath.Join(f.dir, "core2"), "core2")
	f.t.Cleanup(func() { st.Close() })
	sc.Store, sc.TLS = st, nodeTLS(f.t, f.auth, certs.CoreNode, "core2")
	srv, err := NewServer(sc)
	if err != nil {
		f.t.Fatal(err)
	}
	ln, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(ctx, ln); ln.Close(); close(done) }()
	f.t.Cleanup(func() { cancel(); <-done })
	return srv, st, ln.Addr().String()
}

// TestRedirectAndMove: a core that does not serve the edge sends it to
// the one that does; that one, giving the edge up, closes its link with
// a redirect back; the edge resumes at each core from that core's own
// positions, so each holds the edge's records once, at the edge's
// offsets. A core whose fence fails takes nothing in. An edge that knows
// a core that is gone goes on to the next it knows.
func TestRedirectAndMove(t *testing.T) {
	var owner atomic.Value // "core1" or "core2"
	owner.Store("core2")
	var addr1, addr2 string
	var fenced atomic.Bool
	ownerOf := func(self string) func(context.Context, string) error {
		return func(_ context.Context, edge string) error {
			if o := owner.Load().(string); o != self {
				if o == "core1" {
					return wire.Redirect(addr1)
				}
				return wire.Redirect(addr2)
			}
			return nil
		}
	}
	f := newFabric(t, ServerConfig{Owner: ownerOf("core1"), Fence: func() error {
		if fenced.Load() {
			return errors.New("lease lost")
		}
		return nil
	}})
	addr1 = f.addr
	srv2, core2, a2 := f.secondCore(ServerConfig{Owner: ownerOf("core2")})
	addr2 = a2

	appendN(t, f.edge, store.UplinkStream, "edge1", 300, 100, "a")
	// The edge knows a core that is gone first, then core1.
	gone, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	goneAddr := gone.LocalAddr().String()
	gone.Close()
	l, err := NewClient(ClientConfig{Store: f.edge, Addr: goneAddr, Addrs: []string{f.addr}, TLS: nodeTLS(t, f.auth, certs.EdgeNode, "edge1"),
		Up: []string{store.UplinkStream}, Down: []string{}, Backoff: replicate.Backoff{Min: 20 * time.Millisecond, Max: 200 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	lctx, lcancel := context.WithCancel(context.Background())
	ldone := make(chan struct{})
	go func() { l.Run(lctx); close(ldone) }()
	t.Cleanup(func() { lcancel(); <-ldone })
	waitSame(t, f.edge, core2, store.UplinkStream)
	if _, next, _ := f.core.Stream(store.UplinkStream).Bounds(context.Background(), "edge1", 0); next != 0 {
		t.Fatalf("core1, which redirects, holds %d records", next)
	}

	// core2 gives the edge up to core1, which is fenced: it refuses the
	// edge's batches, so nothing lands there.
	fenced.Store(true)
	owner.Store("core1")
	srv2.Drop("edge1", wire.Redirect(addr1))
	appendN(t, f.edge, store.UplinkStream, "edge1", 200, 100, "b")
	wait.ForNil(t, time.Minute, "core1 ending the edge's link on its fence", func() error {
		for _, l := range f.srv.Monitor().Links() {
			if l.Peer == "edge1" && strings.Contains(l.LastError, "lease lost") {
				return nil
			}
		}
		return errors.New("no link ended by the fence yet")
	})
	if _, next, _ := f.core.Stream(store.UplinkStream).Bounds(context.Background(), "edge1", 0); next != 0 {
		t.Fatalf("fenced core1 took in %d records", next)
	}
	fenced.Store(false)
	waitSame(t, f.edge, f.core, store.UplinkStream)
	if _, next, _ := core2.Stream(store.UplinkStream).Bounds(context.Background(), "edge1", 0); next != 300 {
		t.Errorf("core2 holds up to %d after the move, want 300", next)
	}
}
