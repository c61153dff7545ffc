// Package edge is the edge node: it opens the node's store, runs the
// device gateway on it, serves the HTTP API and the web console (package
// console) on one address and, when it has a core, keeps
// its link to the core (package link), with one Prometheus registry
// for all of them. `weft edge` builds a Config and calls Run.
package edge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/weft-io/weft/alarm"
	"github.com/weft-io/weft/anomaly"
	"github.com/weft-io/weft/api"
	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/console"
	"github.com/weft-io/weft/firmware"
	"github.com/weft-io/weft/gateway"
	"github.com/weft-io/weft/internal/node"
	"github.com/weft-io/weft/store"
	"github.com/weft-io/weft/sync/link"
	"github.com/weft-io/weft/sync/mirror"
	"github.com/weft-io/weft/sync/replicate"
	"github.com/weft-io/weft/sync/wire"
)

// Config configures an edge node. DataDir, CertsDir and Name are required.
type Config struct {
	// DataDir holds the node's store.
	DataDir string
	// CertsDir is a certificate directory holding the device CA
	// certificate, the gateway's pair gateways/<Name>.crt and .key, the
	// token public key and, if any, the CRL.
	CertsDir string
	// Name is the edge's name: the store's node name, the gateway's name
	// and the topic of its events.
	Name string
	// Site is where the edge stands (several edges may share one), written
	// into its devices' shadows for tokens scoped by site. Default: Name.
	Site string
	// MQTTAddr is the gateway's TLS listen address. Default 127.0.0.1:8883.
	MQTTAddr string
	// HTTPAddr is the HTTP API's listen address. Default 127.0.0.1:8080.
	HTTPAddr string
	// Store holds store settings; Dir and Name are set from the above.
	// Its zero fields get a small box's figures (SmallStore), not the
	// store's own defaults.
	Store store.Config
	// Gateway holds gateway settings (limits); the store, name, address
	// and certificates are set from the above.
	Gateway gateway.Config
	// Core is the UDP address (host:port) of the core this edge replicates
	// with, using its node certificate nodes/<Name>.crt and .key and the
	// fabric CA from CertsDir; for a core cluster, several addresses
	// separated by commas, tried in turn (a core that does not serve the
	// edge redirects it). Empty: the edge runs alone.
	Core string
	// Replicate are streams sent to the core besides
	// replicate.DefaultUp() (/uplink/events, /shadows/changes,
	// /audit/events), such as /telemetry/by_device.
	Replicate []string
	// Mirrors are volume mirrors over the link, besides those recorded
	// with `weft mirror add` (mirror.Table).
	Mirrors []mirror.Spec
	// Anomaly tunes the anomaly scores of the devices' telemetry (package
	// anomaly); the defaults suit a reading every few minutes.
	Anomaly anomaly.Config
	// Uplink is what of the telemetry goes to the core's /uplink/events
	// besides detections: summaries and the readings around detections.
	Uplink UplinkFilter
	// Scoring bounds what the anomaly scorer spends on each device and on
	// all of them (docs/edge.md); the zero value takes the defaults.
	Scoring ScoreLimits
	// HTTP bounds the HTTP API's connections, timeouts and event streams
	// (docs/api.md#limits); the zero value takes the defaults.
	HTTP api.Limits
	// AuditRetention is how long the audit volume keeps its records
	// (api.Config.AuditRetention). Zero: 400 days, or the TTL the volume
	// was given with weft volume set; negative: for ever.
	AuditRetention time.Duration
	// FirmwareAddr, if set, is the TCP address where the edge serves its
	// devices their firmware over HTTPS (api.DeviceFirmware): the
	// gateway's certificate, the device's certificate the only credential
	// (verified against the device CA, revoked ones refused), releases of
	// the device's class only, with byte ranges.
	FirmwareAddr string
	// FirmwareChunks answers the firmware chunk requests of devices that
	// speak only MQTT (firmware.ChunkServer). It reads every device
	// message for them.
	FirmwareChunks bool
	// BacklogQuota, if positive, is the most bytes the uplink volume
	// keeps: past it, the oldest uplink data is dropped (and counted)
	// rather than new data refused. 0 leaves the volume's policy as it is.
	BacklogQuota int64
	// Link holds the link's other settings (rate limit, backoff, QUIC);
	// the store, address, certificates and streams are set from the above.
	Link link.ClientConfig
	// Logger receives the node's logs. Nil discards them.
	Logger *slog.Logger
}

// Node is a running edge node.
type Node struct {
	cfg   Config
	log   *slog.Logger
	store *store.Store
	gw    *gateway.Server
	http  *node.HTTP
	fw    *http.Server // nil without Config.FirmwareAddr
	fwLn  net.Listener
	mon   *replicate.Monitor
	stop  context.CancelFunc
	wg    sync.WaitGroup
}

// Start opens the store, starts the gateway and the HTTP API, and returns
// once both listen. Stop it with Shutdown.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	auth, log, err := node.Load("edge", cfg.DataDir, cfg.CertsDir, cfg.Name, cfg.Logger)
	if err != nil {
		return nil, err
	}
	if cfg.MQTTAddr == "" {
		cfg.MQTTAddr = "127.0.0.1:8883"
	}
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = "127.0.0.1:8080"
	}
	pair, pool, err := auth.ServingPair(certs.Identity{Kind: certs.KindGateway, Name: cfg.Name})
	if err != nil {
		return nil, fmt.Errorf("edge: %w", err)
	}
	rev, err := auth.Revocations(log.With("component", "crl"))
	if err != nil {
		return nil, fmt.Errorf("edge: %w", err)
	}

	st, err := node.OpenStore("edge", SmallStore(cfg.Store), cfg.DataDir, cfg.Name, log)
	if err != nil {
		return nil, err
	}
	// Certificates are judged by the store's time, not the system clock:
	// an edge whose clock reset at power-up still starts and buffers.
	ids := []certs.Identity{{Kind: certs.KindGateway, Name: cfg.Name}}
	if cfg.Core != "" {
		ids = append(ids, certs.Identity{Kind: certs.KindNode, Role: certs.EdgeNode, Name: cfg.Name})
	}
	certFiles := node.CertFiles(auth, ids...)
	if err := node.CheckCertificates(ctx, st, certFiles, log); err != nil {
		st.Close()
		return nil, fmt.Errorf("edge: %w", err)
	}
	if err := limitBacklog(ctx, st, cfg.BacklogQuota); err != nil {
		st.Close()
		return nil, fmt.Errorf("edge: %w", err)
	}
	reg := node.Registry()
	reg.MustRegister(store.NewMetrics(st))
	certWatch := node.NewCertWatch(certFiles, st.Now, log)
	reg.MustRegister(node.ClockMetrics(st), certWatch)

	gc := cfg.Gateway
	gc.Store, gc.Name, gc.Site, gc.Addr = st, cfg.Name, cfg.Site, cfg.MQTTAddr
	gc.Certificate, gc.DeviceCAs, gc.Revocations = pair, pool, rev
	gc.Registerer = reg
	if gc.Now == nil {
		gc.Now = st.Now
	}
	if gc.Logger == nil {
		gc.Logger = log
	}
	gw, err := gateway.New(gc)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("edge: %w", err)
	}
	if err := gw.Start(ctx); err != nil {
		st.Close()
		return nil, fmt.Errorf("edge: %w", err)
	}
	mon := replicate.NewMonitor(cfg.Name, nil)
	reg.MustRegister(mon)
	var client *link.Client
	if cfg.Core != "" {
		if client, err = newLink(cfg, auth, st, mon, log); err != nil {
			gw.Shutdown(context.Background())
			st.Close()
			return nil, err
		}
	}
	apiSrv, err := api.New(api.Config{Store: st, TokenKey: auth.TokenPublicKey, Gatherer: reg, Registerer: reg,
		Links: api.MonitorLinks(mon), DesiredReadOnly: cfg.Core != "", Limits: cfg.HTTP, AuditRetention: cfg.AuditRetention, Logger: log.With("component", "api")})
	if err != nil {
		gw.Shutdown(context.Background())
		st.Close()
		return nil, fmt.Errorf("edge: %w", err)
	}
	apiSrv.Handle("GET /api/v1/links", certs.RoleViewer, mon.Handler())
	// The console, for a crew at the site: its own devices, desired state
	// read-only while linked to a core.
	con, err := console.New(console.Config{API: apiSrv, CertsDir: cfg.CertsDir, Logger: log.With("component", "console")})
	if err != nil {
		gw.Shutdown(context.Background())
		st.Close()
		return nil, fmt.Errorf("edge: %w", err)
	}
	reqCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	// The console's pages, and the API under /api/.
	hs, err := node.ServeHTTP(reqCtx, cfg.HTTPAddr, con, cfg.HTTP, reg, log)
	if err != nil {
		stop()
		gw.Shutdown(context.Background())
		st.Close()
		return nil, fmt.Errorf("edge: %w", err)
	}
	n := &Node{cfg: cfg, log: log, store: st, gw: gw, http: hs, mon: mon, stop: stop}
	if client != nil {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			client.Run(reqCtx)
		}()
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		certWatch.Run(reqCtx, 0)
	}()
	mods := &Models{Store: st, Edge: cfg.Name, KeyFile: ModelKeyFile(cfg.CertsDir), Logger: log.With("component", "models"), routed: true}
	ac := alarm.Config{Store: st, Edge: true, Uplink: cfg.Core != "", CertFiles: certFiles, DataDir: cfg.DataDir, Registerer: reg, Logger: log,
		ModelDrift: mods.Drifts}
	if cfg.Core != "" {
		ac.Links = alarmLinks(mon, st.Now())
	}
	alarms, err := alarm.New(ac)
	if err != nil {
		n.Shutdown(context.Background())
		return nil, fmt.Errorf("edge: %w", err)
	}
	n.wg.Go(func() {
		if err := alarms.Run(reqCtx); err != nil && reqCtx.Err() == nil {
			log.Error("alarms stopped", "err", err)
		}
	})
	if cfg.FirmwareChunks {
		n.wg.Go(func() {
			if err := (&firmware.ChunkServer{Store: st, Logger: log}).Run(reqCtx); err != nil && reqCtx.Err() == nil {
				log.Error("firmware chunks stopped", "err", err)
			}
		})
	}
	if cfg.FirmwareAddr != "" {
		if n.fwLn, err = net.Listen("tcp", cfg.FirmwareAddr); err != nil {
			n.Shutdown(context.Background())
			return nil, fmt.Errorf("edge: firmware listener: %w", err)
		}
		n.fw = &http.Server{
			Handler:           api.DeviceFirmware(api.DeviceFirmwareConfig{Store: st, Revocations: rev, Now: st.Now, Logger: log}),
			TLSConfig:         certs.ServerConfig(pair, pool, certs.KindDevice, rev),
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       time.Minute,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		}
		n.wg.Go(func() { n.fw.ServeTLS(n.fwLn, "", "") })
	}
	reg.MustRegister(mods)
	scores := newScorer(st, cfg.Name, cfg.Anomaly, cfg.Uplink, log.With("component", "anomaly"))
	scores.setLimits(cfg.Scoring)
	scores.models = mods
	reg.MustRegister(scores)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := scores.run(reqCtx); err != nil && reqCtx.Err() == nil {
			log.Error("anomaly scores stopped", "err", err)
		}
	}()
	n.wg.Go(func() {
		if err := mods.Run(reqCtx); err != nil && reqCtx.Err() == nil {
			log.Error("models stopped", "err", err)
		}
	})
	log.Info("edge started", "mqtt", gw.Addr().String(), "http", hs.Addr().String(), "data", cfg.DataDir, "core", cfg.Core)
	return n, nil
}

// newLink builds the edge's link to its core.
func newLink(cfg Config, auth *certs.Authority, st *store.Store, mon *replicate.Monitor, log *slog.Logger) (*link.Client, error) {
	pair, pool, err := auth.ServingPair(certs.Identity{Kind: certs.KindNode, Role: certs.EdgeNode, Name: cfg.Name})
	if err != nil {
		return nil, fmt.Errorf("edge: link to the core: %w", err)
	}
	lc := cfg.Link
	lc.Store, lc.Monitor = st, mon
	for _, a := range strings.Split(cfg.Core, ",") {
		if a = strings.TrimSpace(a); a == "" {
			continue
		}
		if lc.Addr == "" {
			lc.Addr = a
		} else {
			lc.Addrs = append(lc.Addrs, a)
		}
	}
	if lc.Now == nil {
		lc.Now = st.Now
	}
	lc.History = func(ctx context.Context, device string, from, to time.Time, limit int) ([]store.Message, bool, error) {
		info, err := st.Stat(ctx, store.ByDeviceStream)
		if err != nil {
			return nil, false, err
		}
		return api.ReadRange(ctx, st.Stream(store.ByDeviceStream), info.Partitions, device, api.RangeQuery{From: from, To: to, Limit: limit}, nil)
	}
	lc.TLS = wire.TLSConfig{Certificate: pair, FabricCAs: pool}
	if auth.DeviceCA != nil {
		rev, err := auth.Revocations(log.With("component", "crl"))
		if err != nil {
			return nil, fmt.Errorf("edge: %w", err)
		}
		lc.TLS.Revocations = rev
	}
	recorded, err := mirror.List(context.Background(), st)
	if err != nil {
		return nil, fmt.Errorf("edge: %w", err)
	}
	for _, spec := range append(recorded, cfg.Mirrors...) {
		if !slices.Contains(lc.Mirrors, spec) {
			lc.Mirrors = append(lc.Mirrors, spec)
		}
	}
	lc.Up = replicate.DefaultUp()
	for _, p := range cfg.Replicate {
		if !slices.Contains(lc.Up, p) {
			lc.Up = append(lc.Up, p)
		}
	}
	if lc.Logger == nil {
		lc.Logger = log
	}
	client, err := link.NewClient(lc)
	if err != nil {
		return nil, fmt.Errorf("edge: %w", err)
	}
	return client, nil
}

// Links returns the figures of the edge's link to its core.
func (n *Node) Links() []replicate.LinkStatus { return n.mon.Links() }

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

// Gateway is the node's device gateway.
func (n *Node) Gateway() *gateway.Server { return n.gw }

// MQTTAddr is the address the gateway listens on.
func (n *Node) MQTTAddr() net.Addr { return n.gw.Addr() }

// HTTPAddr is the address the HTTP API listens on.
func (n *Node) HTTPAddr() net.Addr { return n.http.Addr() }

// FirmwareAddr is the address of the devices' firmware listener
// (Config.FirmwareAddr); nil when there is none.
func (n *Node) FirmwareAddr() net.Addr {
	if n.fwLn == nil {
		return nil
	}
	return n.fwLn.Addr()
}

// Shutdown stops the HTTP API, the gateway and the link to the core, then
// closes the store.
func (n *Node) Shutdown(ctx context.Context) error {
	n.stop() // ends blocking reads and the link to the core
	herr := n.http.Shutdown(ctx)
	if n.fw != nil {
		herr = errors.Join(herr, n.fw.Shutdown(ctx))
	}
	gerr := n.gw.Shutdown(ctx)
	n.wg.Wait()
	serr := n.store.Close()
	n.log.Info("edge stopped")
	return errors.Join(herr, gerr, serr)
}

// limitBacklog gives the uplink volume a quota past which it drops its
// oldest data, unless it has that policy already.
func limitBacklog(ctx context.Context, st *store.Store, quota int64) error {
	if quota <= 0 {
		return nil
	}
	vol, _, _ := store.SplitPath(store.UplinkStream)
	drop := true
	_, err := st.ChangeVolume(ctx, vol, store.VolumeChange{Quota: &quota, DropOldest: &drop})
	return err
}

// alarmLinks reports the link to the core, as mon sees it, to the alarm
// engine: down since start while it never came up.
func alarmLinks(mon *replicate.Monitor, start time.Time) func() []alarm.Link {
	return func() []alarm.Link {
		var out []alarm.Link
		for _, l := range mon.Links() {
			out = append(out, alarm.Link{Peer: l.Peer, Up: l.Connected, Since: l.Since})
		}
		if len(out) == 0 {
			out = append(out, alarm.Link{Peer: "core", Since: start})
		}
		return out
	}
}

// SmallStore returns c with each zero memory setting given an edge's
// figure: a small box's memory bounds Badger's memtables, caches and
// compactions, where the store's defaults suit a core (docs/edge.md#memory).
func SmallStore(c store.Config) store.Config {
	set := func(p *int64, v int64) {
		if *p == 0 {
			*p = v
		}
	}
	seti := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	set(&c.MemTableSize, 16<<20)
	set(&c.BlockCacheSize, 16<<20)
	set(&c.IndexCacheSize, 8<<20)
	seti(&c.NumMemtables, 3)
	seti(&c.NumCompactors, 2)
	seti(&c.NumLevelZeroTables, 4)
	seti(&c.NumLevelZeroTablesStall, 12)
	return c
}
