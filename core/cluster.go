package core

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weft-io/weft/api"
	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/cluster"
	"github.com/weft-io/weft/shadow"
	"github.com/weft-io/weft/sync/link"
	"github.com/weft-io/weft/sync/wire"
)

// ClusterConfig makes the core a node of a core cluster. The zero value
// (no Name) is a single core node.
type ClusterConfig struct {
	// Name is the cluster's name (--cluster-name): etcd's initial
	// cluster token and the root of the cluster's keys.
	Name string
	// Peers are the cluster's voting nodes with their etcd peer URLs
	// (--peers name=http://host:port,...), this node among them.
	Peers []cluster.Peer
	// PeerListen is the URL etcd's peer listener binds (--peer-listen).
	// Default: this node's URL in Peers.
	PeerListen string
	// TTL is the node's lease: how long after its last renewal a node
	// that stopped answering loses its edges. Default 3 s.
	TTL time.Duration
}

// member is the core's part in a cluster: the link server's Owner and
// Fence before and after the cluster member starts, and its view for
// GET /api/v1/cluster.
type member struct {
	cfg  ClusterConfig
	node atomic.Pointer[cluster.Node]
	// certsDir holds the node's certificate, for https:// peers.
	certsDir string
	// down carries the node's core-owned writes through the cluster's
	// log, and applies the log to the node's /updates/down.
	down *clusterDown
}

// errJoining refuses links and answers until the node has joined.
var errJoining = errors.New("core: joining the cluster")

// hooks sets the link server's Owner and Fence of a cluster's node.
func (m *member) hooks(sc *link.ServerConfig) {
	if m == nil {
		return
	}
	sc.Owner = func(ctx context.Context, edge string) error {
		n := m.node.Load()
		if n == nil {
			return errJoining
		}
		d, err := n.Hello(ctx, edge)
		if err != nil {
			return err
		}
		switch d.Verdict {
		case cluster.Serve:
			return nil
		case cluster.Redirect:
			return wire.Redirect(d.To.Sync)
		}
		return errors.New("no core of the cluster takes the edge now")
	}
	sc.Fence = func() error {
		n := m.node.Load()
		if n == nil {
			return errJoining
		}
		return n.Fence()
	}
}

// start joins the cluster (waiting for its quorum), then keeps the
// node's lease and its edges' assignment in wg until ctx ends.
func (m *member) start(ctx, runCtx context.Context, dataDir, name, syncAddr, httpAddr string, srv *link.Server, wg *sync.WaitGroup, log *slog.Logger) error {
	// https:// peers link with the node's certificate of the fabric CA.
	crt, key := certs.Files(m.certsDir, certs.KindNode, name)
	n, err := cluster.Start(ctx, cluster.Config{Name: name, Cluster: m.cfg.Name, Peers: m.cfg.Peers, PeerListen: m.cfg.PeerListen,
		Dir: filepath.Join(dataDir, "etcd"), API: httpAddr, Sync: syncAddr, TTL: m.cfg.TTL, Logger: log,
		PeerTLS: cluster.PeerTLS{CertFile: crt, KeyFile: key, CAFile: filepath.Join(m.certsDir, "fabric-ca.crt")}})
	if err != nil {
		return err
	}
	n.OnLost(func() { srv.DropAll(wire.Errorf(wire.CodeShutdown, "core %s lost its lease", name)) })
	n.OnMove(func(edge string, to cluster.Member) { srv.Drop(edge, wire.Redirect(to.Sync)) })
	m.node.Store(n)
	if m.down != nil {
		wg.Go(func() { m.down.run(runCtx, n) })
		wg.Go(func() {
			if err := shadow.RunOutbox(runCtx, m.down.st, 0); err != nil {
				log.Error("outbox stopped", "err", err)
			}
		})
	}
	wg.Go(func() {
		if err := n.Run(runCtx); err != nil {
			log.Error("cluster member stopped", "err", err)
		}
	})
	return nil
}

// drain gives the node's edges to the others before it stops: they are
// redirected at once, within ctx.
func (m *member) drain(ctx context.Context, log *slog.Logger) {
	if m == nil {
		return
	}
	if n := m.node.Load(); n != nil {
		if err := n.SetDraining(ctx, true); err != nil {
			log.Warn("drain", "err", err)
		}
	}
}

// close stops the node's etcd member.
func (m *member) close() {
	if m == nil {
		return
	}
	if n := m.node.Load(); n != nil {
		n.Close()
	}
}

// nodes lists the cluster's nodes, for the console.
func (m *member) nodes(ctx context.Context) ([]cluster.NodeState, error) {
	n := m.node.Load()
	if n == nil {
		return nil, errJoining
	}
	return n.Nodes(ctx)
}

// clusterView is the body of GET /api/v1/cluster.
type clusterView struct {
	Nodes []cluster.NodeState `json:"nodes"`
}

// clusterHandler serves GET /api/v1/cluster: the cluster's nodes, each
// up or down with its API address and the edges it owns; a single core
// node lists itself with the edges linked to it.
func clusterHandler(m *member, name string, httpAddr func() string, srv *link.Server) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var v clusterView
		if m == nil {
			v.Nodes = []cluster.NodeState{{Name: name, Address: httpAddr(), State: "up", Edges: srv.Edges()}}
		} else {
			n := m.node.Load()
			if n == nil {
				api.Problem(w, http.StatusServiceUnavailable, "Joining the cluster", errJoining.Error())
				return
			}
			nodes, err := n.Nodes(r.Context())
			if err != nil {
				api.Problem(w, http.StatusServiceUnavailable, "Cluster unavailable", err.Error())
				return
			}
			v.Nodes = nodes
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(v)
	})
}
