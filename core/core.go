// Package core is the core node: it opens the node's store, serves its
// edges' sync links over QUIC (package link), folds the shadows its
// edges report into its own /shadows/devices, and serves the same HTTP API
// as the edge, with GET /api/v1/links, and the web console (package
// console) on the same address. `weft core` builds a Config and calls Run.
package core

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"
	"github.com/weft-io/weft/alarm"
	"github.com/weft-io/weft/api"
	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/console"
	"github.com/weft-io/weft/firmware"
	"github.com/weft-io/weft/internal/node"
	"github.com/weft-io/weft/models"
	"github.com/weft-io/weft/shadow"
	"github.com/weft-io/weft/store"
	"github.com/weft-io/weft/sync/link"
	"github.com/weft-io/weft/sync/mirror"
	"github.com/weft-io/weft/sync/replicate"
	"github.com/weft-io/weft/sync/wire"
)

// Config configures a core node. DataDir, CertsDir and Name are required.
type Config struct {
	// DataDir holds the node's store.
	DataDir string
	// CertsDir is a certificate directory holding the fabric CA
	// certificate, the node's pair nodes/<Name>.crt and .key, the token
	// public key and, if any, the CRL (with the device CA that signs it).
	CertsDir string
	// Name is the core's name: the store's node name and the name in its
	// node certificate.
	Name string
	// Listen is the UDP address edges' QUIC links come to. Default
	// 127.0.0.1:7443.
	Listen string
	// HTTPAddr is the HTTP API's listen address. Default 127.0.0.1:8081.
	HTTPAddr string
	// Down are the streams sent to every edge. Default
	// replicate.DefaultDown() (/updates/down).
	Down []string
	// RateLimit caps the bytes per second sent on each link; 0: no cap.
	RateLimit int64
	// Linger is how long small news waits to be batched with what follows
	// (link.ServerConfig.Linger).
	Linger time.Duration
	// MirrorsDown are the volumes edges may mirror from the core. Default
	// models and firmware. MirrorsUp are those edges may mirror to it
	// (edge E's volume V lands in "V.E"); default none.
	MirrorsDown, MirrorsUp []string
	// HTTP bounds the HTTP API's and console's connections, timeouts and
	// event streams (docs/api.md#limits); the zero value takes the
	// defaults.
	HTTP api.Limits
	// AuditRetention is how long the audit volume keeps its records
	// (api.Config.AuditRetention). Zero: 400 days, or the TTL the volume
	// was given with weft volume set; negative: for ever.
	AuditRetention time.Duration
	// Store holds store settings; Dir and Name are set from the above.
	Store store.Config
	// QUIC overrides the links' QUIC settings (tests).
	QUIC *quic.Config
	// Cluster makes the node one of a core cluster (docs/core.md#a-core-cluster).
	// The zero value: a single core node.
	Cluster ClusterConfig
	// Transport, if set, carries the edges' links instead of UDP (a
	// tailnet: package tailnet); Listen is then read in its terms.
	Transport link.Transport
	// Logger receives the node's logs. Nil discards them.
	Logger *slog.Logger
}

// Node is a running core node.
type Node struct {
	cfg   Config
	log   *slog.Logger
	store *store.Store
	sync  *link.Server
	ln    *wire.Listener
	http  *node.HTTP
	stop  context.CancelFunc
	wg    sync.WaitGroup

	console *console.Server
	member  *member // nil: a single node
}

// Console is the node's web console, served on its HTTP address with the
// API.
func (n *Node) Console() *console.Server { return n.console }

// Start opens the store, starts the sync server, the shadow follower and
// the HTTP API, and returns once the QUIC and HTTP listeners are open.
// Stop it with Shutdown.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	auth, log, err := node.Load("core", cfg.DataDir, cfg.CertsDir, cfg.Name, cfg.Logger)
	if err != nil {
		return nil, err
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:7443"
	}
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = "127.0.0.1:8081"
	}
	pair, pool, err := auth.ServingPair(certs.Identity{Kind: certs.KindNode, Role: certs.CoreNode, Name: cfg.Name})
	if err != nil {
		return nil, fmt.Errorf("core: %w", err)
	}
	tc := wire.TLSConfig{Certificate: pair, FabricCAs: pool}
	if auth.DeviceCA != nil {
		rev, err := auth.Revocations(log.With("component", "crl"))
		if err != nil {
			return nil, fmt.Errorf("core: %w", err)
		}
		tc.Revocations = rev
	}

	st, err := node.OpenStore("core", cfg.Store, cfg.DataDir, cfg.Name, log)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*Node, error) {
		shadow.SetDown(st, nil)
		st.Close()
		return nil, err
	}
	certFiles := node.CertFiles(auth, certs.Identity{Kind: certs.KindNode, Role: certs.CoreNode, Name: cfg.Name})
	if err := node.CheckCertificates(ctx, st, certFiles, log); err != nil {
		return fail(fmt.Errorf("core: %w", err))
	}
	reg := node.Registry()
	reg.MustRegister(store.NewMetrics(st))
	certWatch := node.NewCertWatch(certFiles, st.Now, log)
	reg.MustRegister(node.ClockMetrics(st), certWatch)
	mon := replicate.NewMonitor(cfg.Name, nil)
	reg.MustRegister(mon)
	mirrorSent := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weft_mirror_sent_bytes_total",
		Help: "Bytes of volume mirror entries the core sent each edge (keys, values, 16 bytes per entry)."}, []string{"volume", "edge"})
	reg.MustRegister(mirrorSent)
	tc.Now = st.Now
	var cm *member
	if cfg.Cluster.Name != "" {
		cm = &member{cfg: cfg.Cluster, certsDir: cfg.CertsDir}
		// Every core-owned write goes through the cluster's log from the
		// first request on (refused until the node has joined).
		cm.down = newClusterDown(st, cfg.Name, cm, log)
		if err := shadow.EnsureOutbox(ctx, st); err != nil {
			return fail(fmt.Errorf("core: %w", err))
		}
		shadow.SetDown(st, cm.down)
	}
	sc := link.ServerConfig{Store: st, TLS: tc, Down: cfg.Down, RateLimit: cfg.RateLimit, Linger: cfg.Linger, Now: st.Now,
		MirrorsDown: cfg.MirrorsDown, MirrorsUp: cfg.MirrorsUp, Sends: deviceUpdates(st),
		QUIC: cfg.QUIC, Transport: cfg.Transport, Monitor: mon, Logger: log}
	cm.hooks(&sc)
	srv, err := link.NewServer(sc)
	if err != nil {
		return fail(fmt.Errorf("core: %w", err))
	}
	// The core issues tokens (POST /api/v1/tokens) when its certificate
	// directory holds token.key.
	apiSrv, err := api.New(api.Config{Store: st, TokenKey: auth.TokenPublicKey, TokenSigner: auth.TokenKey, Gatherer: reg, Registerer: reg,
		Links: api.MonitorLinks(mon), RemoteHistory: edgeHistory{srv}, Limits: cfg.HTTP, AuditRetention: cfg.AuditRetention,
		FirmwareKeys: filepath.Join(cfg.CertsDir, "firmware-keys.json"), Logger: log.With("component", "api")})
	if err != nil {
		return fail(fmt.Errorf("core: %w", err))
	}
	apiSrv.Handle("GET /api/v1/links", certs.RoleViewer, mon.Handler())
	var httpAddr atomic.Value // the HTTP listener's address, once open
	httpAddr.Store(cfg.HTTPAddr)
	apiSrv.Handle("GET /api/v1/cluster", certs.RoleViewer, clusterHandler(cm, cfg.Name, func() string { return httpAddr.Load().(string) }, srv))
	alarms, err := alarm.New(alarm.Config{Store: st, Links: alarmLinks(mon), CertFiles: certFiles, DataDir: cfg.DataDir,
		Rollouts: api.RolloutsTable, Registerer: reg, Logger: log})
	if err != nil {
		return fail(fmt.Errorf("core: %w", err))
	}
	cc := console.Config{API: apiSrv, CertsDir: cfg.CertsDir, Logger: log.With("component", "console")}
	if cm != nil {
		cc.Cluster = cm.nodes
		// The console's device and edge lists are gathered as the API's.
		cc.Lists = cm.forward(apiSrv.Handler(), st, log.With("component", "cluster"))
	}
	con, err := console.New(cc)
	if err != nil {
		return fail(fmt.Errorf("core: %w", err))
	}
	watcher, err := shadow.NewWatcher(shadow.WatcherConfig{Store: st, Logger: log.With("component", "shadows")})
	if err != nil {
		return fail(fmt.Errorf("core: %w", err))
	}
	ln, err := srv.ListenContext(ctx, cfg.Listen)
	if err != nil {
		return fail(fmt.Errorf("core: %w", err))
	}
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	// The console's pages, and the API under /api/.
	var handler http.Handler = con
	if cm != nil {
		// Reads of a device's data are answered by its edge's owner.
		handler = cm.forward(con, st, log.With("component", "cluster"))
	}
	hs, err := node.ServeHTTP(runCtx, cfg.HTTPAddr, handler, cfg.HTTP, reg, log)
	if err != nil {
		stop()
		ln.Close()
		return fail(fmt.Errorf("core: %w", err))
	}
	httpAddr.Store(hs.Addr().String())
	n := &Node{cfg: cfg, log: log, store: st, sync: srv, ln: ln, http: hs, stop: stop, console: con, member: cm}
	if cm != nil {
		// The cluster learns the addresses the listeners got.
		if err := cm.start(ctx, runCtx, cfg.DataDir, cfg.Name, ln.Addr().String(), hs.Addr().String(), srv, &n.wg, log); err != nil {
			stop()
			hs.Shutdown(context.WithoutCancel(ctx))
			ln.Close()
			n.wg.Wait()
			return fail(fmt.Errorf("core: %w", err))
		}
	}
	n.wg.Go(func() {
		if err := apiSrv.RunRollouts(runCtx); err != nil && runCtx.Err() == nil {
			log.Error("rollout runner stopped", "err", err)
		}
	})
	n.wg.Go(func() {
		if err := alarms.Run(runCtx); err != nil && runCtx.Err() == nil {
			log.Error("alarms stopped", "err", err)
		}
	})
	n.wg.Add(4)
	go func() {
		defer n.wg.Done()
		certWatch.Run(runCtx, 0)
	}()
	// The mirrors down: a release's image, and a model version's files,
	// go only to the edges with a device of its class (firmware.Delivery,
	// models.Delivery), and the bytes sent each edge are counted.
	places := &firmware.Places{}
	delivery := &firmware.Delivery{Store: st, Targeting: firmware.Targeting{EdgeClasses: places.EdgeClasses, Fresh: time.Second, Now: st.Now}}
	modelDelivery := &models.Delivery{Store: st, Targeting: firmware.Targeting{EdgeClasses: places.EdgeClasses, Fresh: time.Second, Now: st.Now}}
	n.wg.Go(func() {
		if err := followPlaces(runCtx, st, places, log.With("component", "firmware")); err != nil && runCtx.Err() == nil {
			log.Error("device places stopped", "err", err)
		}
	})
	policy := mirror.Policy{
		Filter: func(vol, edge string) mirror.Filter {
			switch vol {
			case firmware.Volume:
				return func(ctx context.Context, obj string) (bool, error) { return delivery.Keep(ctx, edge, obj) }
			case models.Volume:
				return func(ctx context.Context, obj string) (bool, error) { return modelDelivery.Keep(ctx, edge, obj) }
			}
			return nil
		},
		Sent: func(vol, edge string, n int) { mirrorSent.WithLabelValues(vol, edge).Add(float64(n)) },
	}
	go func() {
		defer n.wg.Done()
		if err := srv.Serve(mirror.WithPolicy(runCtx, policy), ln); err != nil {
			log.Error("sync server stopped", "err", err)
		}
	}()
	go func() {
		defer n.wg.Done()
		f := &follower{store: st, self: cfg.Name, log: log.With("component", "shadows")}
		if err := f.run(runCtx); err != nil && runCtx.Err() == nil {
			log.Error("shadow follower stopped", "err", err)
		}
	}()
	go func() {
		defer n.wg.Done()
		if err := watcher.Run(runCtx); err != nil && runCtx.Err() == nil {
			log.Error("shadow watcher stopped", "err", err)
		}
	}()
	log.Info("core started", "sync", ln.Addr().String(), "http", hs.Addr().String(), "data", cfg.DataDir)
	return n, nil
}

// Run starts the node and serves until ctx ends, then shuts it down.
func Run(ctx context.Context, cfg Config) error {
	n, err := Start(ctx, cfg)
	if err != nil {
		return err
	}
	node.NotifyReady(ctx, n.log)
	return node.Wait(ctx, n.http.Done(), n.Shutdown)
}

// Store is the node's store.
func (n *Node) Store() *store.Store { return n.store }

// SyncAddr is the UDP address edges' links come to.
func (n *Node) SyncAddr() net.Addr { return n.ln.Addr() }

// HTTPAddr is the address the HTTP API listens on.
func (n *Node) HTTPAddr() net.Addr { return n.http.Addr() }

// Links returns the figures of the node's links to its edges.
func (n *Node) Links() []replicate.LinkStatus { return n.sync.Monitor().Links() }

// Shutdown stops the HTTP API, closes the edges' links, then closes the
// store.
func (n *Node) Shutdown(ctx context.Context) error {
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	n.member.drain(dctx, n.log)
	cancel()
	n.stop()
	herr := n.http.Shutdown(ctx)
	n.ln.Close()
	n.wg.Wait()
	n.member.close()
	shadow.SetDown(n.store, nil)
	serr := n.store.Close()
	n.log.Info("core stopped")
	return errors.Join(herr, serr)
}

// edgeHistory fetches a device's history from its edge over the link, for
// devices whose messages the core does not hold.
type edgeHistory struct{ srv *link.Server }

func (h edgeHistory) History(ctx context.Context, edge, device string, q api.RangeQuery) ([]store.Message, bool, error) {
	return h.srv.History(ctx, edge, device, q.From, q.To, q.Limit)
}

// alarmLinks reports the edges' links, as mon sees them, to the alarm
// engine.
func alarmLinks(mon *replicate.Monitor) func() []alarm.Link {
	return func() []alarm.Link {
		var out []alarm.Link
		for _, l := range mon.Links() {
			out = append(out, alarm.Link{Peer: l.Peer, Up: l.Connected, Since: l.Since})
		}
		return out
	}
}

// placesGroup is the consumer group under which the core follows its
// own shadows' changes into the places of its devices.
const placesGroup = "core-device-places"

// followPlaces keeps in places the edge and class of every device the
// core's shadows hold, for firmware.Delivery: one scan of the shadows at
// start, then every change of the core's shadows table (its own topic of
// /shadows/changes, each change with the whole document). After a
// restart the changes since the group's cursor come again after the scan:
// each carries the whole document, in order, so the places end as the
// shadows are.
func followPlaces(ctx context.Context, st *store.Store, places *firmware.Places, log *slog.Logger) error {
	scan := func(ctx context.Context) error {
		t := st.Table(store.ShadowsTable)
		after := ""
		for {
			docs, next, err := t.Scan(ctx, "", after, 1000)
			if errors.Is(err, store.ErrNotFound) {
				return nil
			}
			if err != nil {
				return err
			}
			for _, d := range docs {
				edge, class := placeOf(d.Value)
				places.Set(d.Key, edge, class)
			}
			if next == "" {
				return nil
			}
			after = next
		}
	}
	if err := scan(ctx); err != nil {
		return err
	}
	self := st.Name()
	c, err := st.Stream(store.ShadowChanges).Consumer(store.ConsumerConfig{
		Group: placesGroup, Start: store.StartNewest, Fresh: scan,
		Skip: func(topic string) bool { return topic != self }, Logger: log})
	if err != nil {
		return err
	}
	return c.Run(ctx, func(_ context.Context, b store.Batch) (func(*store.Tx) error, error) {
		for _, m := range b.Messages {
			var ch placeChange
			if json.Unmarshal(m.Value, &ch) != nil || ch.Key == "" {
				continue
			}
			if ch.Op == "delete" {
				places.Delete(ch.Key)
				continue
			}
			edge, class := ch.Doc.place()
			places.Set(ch.Key, edge, class)
		}
		return nil, nil
	})
}

// placeChange is what followPlaces reads of a store.Change of a shadow.
type placeChange struct {
	Key string   `json:"key"`
	Op  string   `json:"op"`
	Doc placeDoc `json:"doc"`
}

// placeDoc is what followPlaces reads of a shadow document: its edge and
// class only, so the rest is skipped, not decoded.
type placeDoc struct {
	Edge  json.RawMessage `json:"edge"`
	Class json.RawMessage `json:"class"`
}

// place returns the edge and class, empty when absent or not strings.
func (d placeDoc) place() (edge, class string) {
	json.Unmarshal(d.Edge, &edge)
	json.Unmarshal(d.Class, &class)
	return edge, class
}

// placeOf reads a shadow document's edge and class.
func placeOf(doc []byte) (edge, class string) {
	var d placeDoc
	if json.Unmarshal(doc, &d) != nil {
		return "", ""
	}
	return d.place()
}
