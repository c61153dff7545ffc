package cluster

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weft-io/weft/internal/testenv/wait"
)

// freePort returns a loopback TCP port free at the time of the call.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startThree starts a cluster of three members in this process.
func startThree(t testing.TB) []*Node { return startThreeWith(t, "http", nil) }

// startThreeWith starts three members with peer URLs of scheme, each
// with the PeerTLS tls returns for its name (nil: none).
func startThreeWith(t testing.TB, scheme string, tls func(name string) PeerTLS) []*Node {
	t.Helper()
	var peers []Peer
	for _, name := range []string{"n1", "n2", "n3"} {
		peers = append(peers, Peer{Name: name, URL: fmt.Sprintf("%s://127.0.0.1:%d", scheme, freePort(t))})
	}
	nodes := make([]*Node, 3)
	errs := make([]error, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i, p := range peers {
		wg.Go(func() {
			cfg := Config{Name: p.Name, Cluster: "test", Peers: peers, Dir: t.TempDir(), API: p.Name + ":8081", Sync: p.Name + ":7443"}
			if tls != nil {
				cfg.PeerTLS = tls(p.Name)
			}
			nodes[i], errs[i] = Start(ctx, cfg)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("%s: %v", peers[i].Name, err)
		}
		t.Cleanup(nodes[i].Close)
	}
	return nodes
}

// TestClusterOwnership runs three etcd members in process: an edge's
// hello is claimed by its preferred node and redirected there by the
// others; a node whose lease is lost drops its edges and an edge claimed
// by another stays single-owned; GET /api/v1/cluster's view lists them.
func TestClusterOwnership(t *testing.T) {
	nodes := startThree(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	up, err := nodes[0].Up(ctx)
	if err != nil || len(up) != 3 {
		t.Fatalf("up: %v %v", up, err)
	}
	byName := map[string]*Node{}
	for _, n := range nodes {
		byName[n.Name()] = n
	}
	pref := Preferred("edge-a", up)
	for _, n := range nodes {
		if n.Name() == pref {
			continue
		}
		d, err := n.Hello(ctx, "edge-a")
		if err != nil || d.Verdict != Redirect || d.To.Name != pref || d.To.Sync != pref+":7443" {
			t.Fatalf("%s: hello of an unowned edge: %+v %v, want a redirect to %s", n.Name(), d, err, pref)
		}
	}
	owner := byName[pref]
	if d, err := owner.Hello(ctx, "edge-a"); err != nil || d.Verdict != Serve {
		t.Fatalf("preferred node: %+v %v", d, err)
	}
	if d, err := owner.Hello(ctx, "edge-a"); err != nil || d.Verdict != Serve {
		t.Fatalf("owner again: %+v %v", d, err)
	}
	// An owner's key left under a lease it no longer renews (a restart)
	// is attached to its current lease when the edge comes back.
	stale, err := owner.cli.Grant(ctx, 30)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := owner.cli.Put(ctx, owner.root+"edges/edge-a", pref, clientv3.WithLease(stale.ID)); err != nil {
		t.Fatal(err)
	}
	if d, err := owner.Hello(ctx, "edge-a"); err != nil || d.Verdict != Serve {
		t.Fatalf("owner with a stale lease on the key: %+v %v", d, err)
	}
	if r, err := owner.cli.Get(ctx, owner.root+"edges/edge-a"); err != nil || len(r.Kvs) != 1 || clientv3.LeaseID(r.Kvs[0].Lease) != owner.lease {
		t.Fatalf("edge key after the hello: %v %v, want the owner's lease %x", r, err, owner.lease)
	}
	var other *Node
	for _, n := range nodes {
		if n != owner {
			other = n
			break
		}
	}
	if d, err := other.Hello(ctx, "edge-a"); err != nil || d.Verdict != Redirect || d.To.Name != pref {
		t.Fatalf("other node, edge owned: %+v %v", d, err)
	}
	ns, err := other.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range ns {
		want := []string{}
		if s.Name == pref {
			want = []string{"edge-a"}
		}
		if s.State != "up" || s.Address != s.Name+":8081" || !slices.Equal(s.Edges, want) {
			t.Errorf("node %+v, want up with edges %v", s, want)
		}
	}

	// The owner loses its lease (as after a pause longer than the TTL):
	// it drops its edges, and its key goes with the lease.
	lost := make(chan struct{}, 1)
	owner.OnLost(func() { lost <- struct{}{} })
	owner.mu.Lock()
	id := owner.lease
	owner.mu.Unlock()
	if _, err := other.cli.Revoke(ctx, id); err != nil {
		t.Fatal(err)
	}
	// The others take the edge: its preferred node among the two.
	var rest []Member
	for _, n := range nodes {
		if n != owner {
			rest = append(rest, n.self())
		}
	}
	next := byName[Preferred("edge-a", rest)]
	if d, err := next.Hello(ctx, "edge-a"); err != nil || d.Verdict != Serve {
		t.Fatalf("%s, preferred once the owner is gone: %+v %v", next.Name(), d, err)
	}
	rctx, rcancel := context.WithCancel(ctx)
	defer rcancel()
	go owner.Run(rctx)
	select {
	case <-lost:
	case <-ctx.Done():
		t.Fatal("the owner did not notice its lease was gone")
	}
	wait.For(t, 30*time.Second, "the owner to register again", owner.Valid)
	// Back, the old owner does not serve the edge another node holds: it
	// sends it there, and it wants it back only through that node's
	// rebalance (not run here).
	if d, err := owner.Hello(ctx, "edge-a"); err != nil || d.Verdict != Redirect || d.To.Name != next.Name() {
		t.Fatalf("old owner back: %+v %v, want a redirect to %s", d, err, next.Name())
	}
	owners, _ := other.Owners(ctx)
	if len(owners) != 1 || owners["edge-a"] != next.Name() {
		t.Errorf("owners %v", owners)
	}
	// The holder's rebalance gives it back to its preferred node.
	moved := make(chan string, 1)
	next.OnMove(func(edge string, to Member) { moved <- edge + "->" + to.Name })
	if err := next.rebalance(ctx); err != nil {
		t.Fatal(err)
	}
	if got := <-moved; got != "edge-a->"+pref {
		t.Errorf("moved %s", got)
	}
	if d, err := owner.Hello(ctx, "edge-a"); err != nil || d.Verdict != Serve {
		t.Fatalf("preferred node after the move: %+v %v", d, err)
	}
}
