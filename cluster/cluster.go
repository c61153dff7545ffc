package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"
	"go.uber.org/zap"
)

// Peer is a voting member of the cluster's etcd: a node's name and its
// etcd peer URL.
type Peer struct {
	Name string
	URL  string
}

// ParsePeers parses "name=http://host:port,name=http://host:port".
func ParsePeers(s string) ([]Peer, error) {
	var out []Peer
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		name, u, ok := strings.Cut(p, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("cluster: peer %q: want name=http://host:port", p)
		}
		pu, err := url.Parse(u)
		if err != nil || pu.Host == "" || (pu.Scheme != "http" && pu.Scheme != "https") {
			return nil, fmt.Errorf("cluster: peer %q: want name=http://host:port", p)
		}
		if slices.ContainsFunc(out, func(q Peer) bool { return q.Name == name }) {
			return nil, fmt.Errorf("cluster: peer %s named twice", name)
		}
		out = append(out, Peer{Name: name, URL: u})
	}
	return out, nil
}

// Config configures a cluster member. Name, Cluster, Peers (naming this
// node) and Dir are required; the zero value of every other field works.
type Config struct {
	// Name is this node's name, one of Peers.
	Name string
	// Cluster is the cluster's name: etcd's initial cluster token and the
	// root of the keys.
	Cluster string
	// Peers are the voting members, this node among them.
	Peers []Peer
	// PeerListen is the URL etcd's peer listener binds. Default: this
	// node's URL in Peers.
	PeerListen string
	// Dir is etcd's data directory (the core's <data>/etcd).
	Dir string
	// API and Sync are this node's HTTP API and sync (UDP) addresses, told
	// to the other nodes and, in redirects, to edges.
	API, Sync string
	// TTL is the node's lease. Default 3 s.
	TTL time.Duration
	// Every is how often the lease is renewed and the node's edges
	// checked for a better owner. Default TTL/4.
	Every time.Duration
	// PeerTLS is the member's certificate for its peers' links, required
	// when the peer URLs are https://. The zero value: plain http://.
	PeerTLS PeerTLS
	// Logger receives the member's logs. Nil discards them.
	Logger *slog.Logger
}

// PeerTLS is what the etcd members' peer links use with https:// peer
// URLs: each member serves and dials with its node certificate, and
// takes only peers whose certificate the CA signed with a common name
// among the voting members' names.
type PeerTLS struct {
	// CertFile and KeyFile are the node's certificate (for both server
	// and client authentication) and key, PEM.
	CertFile, KeyFile string
	// CAFile holds the CA certificate that signs the members' (the
	// fabric CA).
	CAFile string
}

// peerTLS returns etcd's TLS settings for peers: none for http://
// peers, the node's certificate for https:// ones.
func peerTLS(cfg Config) (transport.TLSInfo, error) {
	secure := 0
	for _, p := range cfg.Peers {
		if strings.HasPrefix(p.URL, "https://") {
			secure++
		}
	}
	switch {
	case secure == 0:
		return transport.TLSInfo{}, nil
	case secure != len(cfg.Peers):
		return transport.TLSInfo{}, errors.New("cluster: --peers mixes http:// and https:// URLs")
	case cfg.PeerTLS.CertFile == "" || cfg.PeerTLS.KeyFile == "" || cfg.PeerTLS.CAFile == "":
		return transport.TLSInfo{}, errors.New("cluster: https:// peers need the node's certificate, key and CA")
	}
	var names []string
	for _, p := range cfg.Peers {
		names = append(names, p.Name)
	}
	return transport.TLSInfo{CertFile: cfg.PeerTLS.CertFile, KeyFile: cfg.PeerTLS.KeyFile, TrustedCAFile: cfg.PeerTLS.CAFile,
		ClientCertAuth: true, AllowedCNs: names}, nil
}

// Node is a running cluster member.
type Node struct {
	cfg  Config
	etcd *embed.Etcd
	cli  *clientv3.Client
	log  *slog.Logger
	root string

	mu       sync.Mutex
	lease    clientv3.LeaseID
	deadline time.Time // fence: monotonic
	draining bool
	onLost   func()
	onMove   func(edge string, to Member)
}

// ErrFenced is the error of a node whose lease may have expired: it may
// not serve edges until it holds a new one.
var ErrFenced = errors.New("cluster: this node's lease is not current")

// Start starts the embedded etcd member and returns once the cluster has
// a quorum (the other peers may be starting too) and the node has
// registered under its lease. Close stops it.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	if cfg.Name == "" || cfg.Cluster == "" || cfg.Dir == "" {
		return nil, errors.New("cluster: a member needs a name, a cluster name and a directory")
	}
	i := slices.IndexFunc(cfg.Peers, func(p Peer) bool { return p.Name == cfg.Name })
	if i < 0 {
		return nil, fmt.Errorf("cluster: --peers does not name this node (%s)", cfg.Name)
	}
	if cfg.TTL <= 0 {
		cfg.TTL = 3 * time.Second
	}
	if cfg.TTL < 2*time.Second {
		cfg.TTL = 2 * time.Second // etcd's least lease with its default election timeout
	}
	if cfg.Every <= 0 {
		cfg.Every = cfg.TTL / 4
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	self, err := url.Parse(cfg.Peers[i].URL)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	listen := self
	if cfg.PeerListen != "" {
		if listen, err = url.Parse(cfg.PeerListen); err != nil {
			return nil, fmt.Errorf("cluster: --peer-listen: %w", err)
		}
	}
	ec := embed.NewConfig()
	ec.Name = cfg.Name
	ec.Dir = cfg.Dir
	ec.ListenPeerUrls = []url.URL{*listen}
	ec.AdvertisePeerUrls = []url.URL{*self}
	// No client listener: the node talks to its member in process
	// (v3client), and the other nodes through their own members.
	ec.ListenClientUrls, ec.AdvertiseClientUrls = nil, nil
	ec.ListenClientHttpUrls = nil
	var ic []string
	for _, p := range cfg.Peers {
		ic = append(ic, p.Name+"="+p.URL)
	}
	ec.InitialCluster = strings.Join(ic, ",")
	ec.InitialClusterToken = cfg.Cluster
	ec.ClusterState = embed.ClusterStateFlagNew
	if _, err := os.Stat(filepath.Join(cfg.Dir, "member")); err == nil {
		ec.ClusterState = embed.ClusterStateFlagExisting
	}
	if ec.PeerTLSInfo, err = peerTLS(cfg); err != nil {
		return nil, err
	}
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	ec.Logger = "zap"
	ec.LogLevel = "error"
	ec.Metrics = "basic"
	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("cluster: start etcd: %w", err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("cluster: etcd: %w", err)
	case <-ctx.Done():
		e.Close()
		return nil, fmt.Errorf("cluster: waiting for the cluster's quorum: %w", ctx.Err())
	}
	n := &Node{cfg: cfg, etcd: e, cli: v3client.New(e.Server), log: cfg.Logger.With("component", "cluster"),
		root: "/weft/" + cfg.Cluster + "/"}
	if err := n.register(ctx); err != nil {
		n.Close()
		return nil, err
	}
	n.log.Info("cluster member up", "cluster", cfg.Cluster, "peers", len(cfg.Peers))
	return n, nil
}

// Close leaves the cluster at once (the lease expires on its own) and
// stops the etcd member.
func (n *Node) Close() {
	n.cli.Close()
	n.etcd.Close()
}

// OnLost sets what runs when the node's lease may have expired: the
// caller drops every edge it serves.
func (n *Node) OnLost(f func()) { n.mu.Lock(); n.onLost = f; n.mu.Unlock() }

// OnMove sets what runs when the node gives an edge up to another: the
// caller closes the edge's link with a redirect to to.
func (n *Node) OnMove(f func(edge string, to Member)) { n.mu.Lock(); n.onMove = f; n.mu.Unlock() }

// Name is the node's name.
func (n *Node) Name() string { return n.cfg.Name }

// Valid reports whether the node's lease is certainly current: its last
// keepalive plus the TTL, less a margin, is still ahead.
func (n *Node) Valid() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.lease != 0 && time.Now().Before(n.deadline)
}

// Fence returns ErrFenced unless Valid.
func (n *Node) Fence() error {
	if !n.Valid() {
		return ErrFenced
	}
	return nil
}

func (n *Node) margin() time.Duration { return n.cfg.TTL / 4 }

func (n *Node) self() Member {
	n.mu.Lock()
	defer n.mu.Unlock()
	return Member{Name: n.cfg.Name, API: n.cfg.API, Sync: n.cfg.Sync, Draining: n.draining}
}

// register takes a new lease and puts the node's keys under it.
func (n *Node) register(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*n.cfg.TTL)
	defer cancel()
	t0 := time.Now()
	g, err := n.cli.Grant(ctx, int64(n.cfg.TTL/time.Second))
	if err != nil {
		return fmt.Errorf("cluster: lease: %w", err)
	}
	b, _ := json.Marshal(n.self())
	if _, err := n.cli.Txn(ctx).Then(
		clientv3.OpPut(n.root+"nodes/"+n.cfg.Name, string(b), clientv3.WithLease(g.ID)),
		clientv3.OpPut(n.root+"addrs/"+n.cfg.Name, string(b)),
	).Commit(); err != nil {
		return fmt.Errorf("cluster: register: %w", err)
	}
	n.mu.Lock()
	n.lease = g.ID
	n.deadline = t0.Add(time.Duration(g.TTL)*time.Second - n.margin())
	n.mu.Unlock()
	return nil
}

// Run renews the lease, and moves the node's edges to the nodes they
// belong on, until ctx ends. When the lease may have expired it drops
// every edge (OnLost) and registers again.
func (n *Node) Run(ctx context.Context) error {
	t := time.NewTicker(n.cfg.Every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if err := n.renew(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			n.lost(ctx, err)
			continue
		}
		if err := n.rebalance(ctx); err != nil && ctx.Err() == nil {
			n.log.Warn("rebalance", "err", err)
		}
	}
}

// renew sends one keepalive and moves the fence.
func (n *Node) renew(ctx context.Context) error {
	n.mu.Lock()
	id, deadline := n.lease, n.deadline
	n.mu.Unlock()
	if id == 0 || !time.Now().Before(deadline) {
		return ErrFenced
	}
	t0 := time.Now()
	cctx, cancel := context.WithDeadline(ctx, deadline)
	r, err := n.cli.KeepAliveOnce(cctx, id)
	cancel()
	if err != nil {
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return ErrFenced
		}
		if time.Now().Before(deadline) {
			return nil // try again next tick
		}
		return err
	}
	n.mu.Lock()
	if n.lease == id {
		n.deadline = t0.Add(time.Duration(r.TTL)*time.Second - n.margin())
	}
	n.mu.Unlock()
	return nil
}

// lost drops every edge and takes a new lease.
func (n *Node) lost(ctx context.Context, err error) {
	n.mu.Lock()
	old := n.lease
	n.lease = 0
	f := n.onLost
	n.mu.Unlock()
	if old != 0 {
		n.log.Warn("lease lost: dropping every edge", "err", err)
		if f != nil {
			f()
		}
		rctx, cancel := context.WithTimeout(ctx, n.cfg.TTL)
		n.cli.Revoke(rctx, old) // its edges' keys go with it, if it still exists
		cancel()
	}
	if err := n.register(ctx); err != nil {
		n.log.Warn("lease", "err", err)
		return
	}
	n.log.Info("lease renewed after a loss")
}

// Up returns the members whose lease is live.
func (n *Node) Up(ctx context.Context) ([]Member, error) {
	return n.members(ctx, "nodes/")
}

func (n *Node) members(ctx context.Context, dir string) ([]Member, error) {
	r, err := n.cli.Get(ctx, n.root+dir, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	var out []Member
	for _, kv := range r.Kvs {
		var m Member
		if json.Unmarshal(kv.Value, &m) == nil && m.Name != "" {
			out = append(out, m)
		}
	}
	return out, nil
}

// Owners returns each owned edge's owner.
func (n *Node) Owners(ctx context.Context) (map[string]string, error) {
	r, err := n.cli.Get(ctx, n.root+"edges/", clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	out := map[string]string{}
	for _, kv := range r.Kvs {
		out[strings.TrimPrefix(string(kv.Key), n.root+"edges/")] = string(kv.Value)
	}
	return out, nil
}

// Hello decides what the node answers edge's hello, claiming the edge
// when it is unowned and belongs here. A Serve decision means the edge
// is this node's in etcd under the node's current lease.
func (n *Node) Hello(ctx context.Context, edge string) (Decision, error) {
	if !n.Valid() {
		return Decision{Verdict: Refuse}, ErrFenced
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.TTL)
	defer cancel()
	up, err := n.Up(ctx)
	if err != nil {
		return Decision{Verdict: Refuse}, err
	}
	key := n.root + "edges/" + edge
	r, err := n.cli.Get(ctx, key)
	if err != nil {
		return Decision{Verdict: Refuse}, fmt.Errorf("cluster: %w", err)
	}
	owner := ""
	if len(r.Kvs) > 0 {
		owner = string(r.Kvs[0].Value)
	}
	d := Decide(n.cfg.Name, edge, owner, up)
	n.mu.Lock()
	lease := n.lease
	n.mu.Unlock()
	if d.Verdict == Serve {
		// The key may be this node's from before a restart, attached to
		// a lease it no longer renews: attach it to the current one, or
		// it would expire under a link this node serves.
		tr, err := n.cli.Txn(ctx).If(clientv3.Compare(clientv3.Value(key), "=", n.cfg.Name)).
			Then(clientv3.OpPut(key, n.cfg.Name, clientv3.WithLease(lease))).Commit()
		if err != nil {
			return Decision{Verdict: Refuse}, fmt.Errorf("cluster: keep %s: %w", edge, err)
		}
		if !tr.Succeeded {
			return Decision{Verdict: Refuse}, nil
		}
		return d, nil
	}
	if d.Verdict != Claim {
		return d, nil
	}
	tr, err := n.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, n.cfg.Name, clientv3.WithLease(lease))).
		Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		return Decision{Verdict: Refuse}, fmt.Errorf("cluster: claim %s: %w", edge, err)
	}
	if tr.Succeeded {
		n.log.Info("edge claimed", "edge", edge)
		return Decision{Verdict: Serve}, nil
	}
	owner = ""
	if kvs := tr.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
		owner = string(kvs[0].Value)
	}
	if owner == "" {
		return Decision{Verdict: Refuse}, nil
	}
	d = Decide(n.cfg.Name, edge, owner, up)
	return d, nil
}

// rebalance gives up the node's edges that belong on another node up.
func (n *Node) rebalance(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.TTL)
	defer cancel()
	up, err := n.Up(ctx)
	if err != nil {
		return err
	}
	owners, err := n.Owners(ctx)
	if err != nil {
		return err
	}
	var mine []string
	for e, o := range owners {
		if o == n.cfg.Name {
			mine = append(mine, e)
		}
	}
	sort.Strings(mine)
	for edge, to := range Moves(n.cfg.Name, mine, up) {
		key := n.root + "edges/" + edge
		tr, err := n.cli.Txn(ctx).If(clientv3.Compare(clientv3.Value(key), "=", n.cfg.Name)).Then(clientv3.OpDelete(key)).Commit()
		if err != nil {
			return fmt.Errorf("cluster: release %s: %w", edge, err)
		}
		if !tr.Succeeded {
			continue
		}
		n.log.Info("edge moves", "edge", edge, "to", to.Name)
		n.mu.Lock()
		f := n.onMove
		n.mu.Unlock()
		if f != nil {
			f(edge, to)
		}
	}
	return nil
}

// SetDraining marks the node draining (it takes no edge and gives its
// edges up to the others) or not.
func (n *Node) SetDraining(ctx context.Context, draining bool) error {
	n.mu.Lock()
	n.draining = draining
	lease := n.lease
	n.mu.Unlock()
	b, _ := json.Marshal(n.self())
	if _, err := n.cli.Put(ctx, n.root+"nodes/"+n.cfg.Name, string(b), clientv3.WithLease(lease)); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	return n.rebalance(ctx)
}

// NodeState is one node as GET /api/v1/cluster shows it.
type NodeState struct {
	Name    string   `json:"name"`
	Address string   `json:"address"`
	State   string   `json:"state"`
	Edges   []string `json:"edges"`
}

// Nodes lists the voting members and any other registered node, each up
// (its lease live) or down, with the edges it owns.
func (n *Node) Nodes(ctx context.Context) ([]NodeState, error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.TTL)
	defer cancel()
	up, err := n.Up(ctx)
	if err != nil {
		return nil, err
	}
	known, err := n.members(ctx, "addrs/")
	if err != nil {
		return nil, err
	}
	owners, err := n.Owners(ctx)
	if err != nil {
		return nil, err
	}
	byName := map[string]*NodeState{}
	var names []string
	add := func(name string) *NodeState {
		if s, ok := byName[name]; ok {
			return s
		}
		s := &NodeState{Name: name, State: "down", Edges: []string{}}
		byName[name] = s
		names = append(names, name)
		return s
	}
	for _, p := range n.cfg.Peers {
		add(p.Name)
	}
	for _, m := range known {
		add(m.Name).Address = m.API
	}
	for _, m := range up {
		s := add(m.Name)
		s.Address, s.State = m.API, "up"
	}
	for e, o := range owners {
		s := add(o)
		s.Edges = append(s.Edges, e)
	}
	sort.Strings(names)
	out := make([]NodeState, 0, len(names))
	for _, name := range names {
		s := byName[name]
		sort.Strings(s.Edges)
		out = append(out, *s)
	}
	return out, nil
}
