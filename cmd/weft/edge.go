package main

import (
	"time"

	"github.com/spf13/cobra"
	"github.com/weft-io/weft/api"
	"github.com/weft-io/weft/edge"
	"github.com/weft-io/weft/sync/mirror"
)

// edgeSettings are the edge's settings, one per flag (see settings.go).
type edgeSettings struct {
	Data, Certs, Name, Site, MQTT, HTTP, Log string
	Gateway                                  struct {
		ConnectTimeout          time.Duration
		FirstByteTimeout        time.Duration
		HandshakeTimeout        time.Duration
		MaxPacketSize, ByteRate string
		MaxConnections          int
		MaxPending              int
		MaxPendingPerIP         int
		MessageRate             float64
		ConnectRate             float64
		MaxTopicLength          int
		MaxFilterLength         int
		MaxSubscriptions        int
	}
	Store struct {
		MinFree, MemTable, Cache, IndexCache string
	}
	MemoryLimit        string
	Limits             api.Limits
	Core               string
	Replicate, Mirrors []string
	RateLimit, Backlog string
	Linger             time.Duration
	Audit              struct {
		Retention time.Duration
	}
	Firmware struct {
		Addr   string
		Chunks bool
	}
	Tailnet tailnetSettings
}

// runEdge runs the node weft edge built (tests read the Config).
var runEdge = edge.Run

// edgeMemoryLimit is the edge's soft memory limit unless --memory-limit
// or GOMEMLIMIT says otherwise: about twice the live heap (130 MB)
// measured with 1,000 devices; at 192MiB the collector took over half a
// core (docs/benchmarks.md#edge-footprint-under-load).
const edgeMemoryLimit = 256 << 20

func newEdgeCmd() *cobra.Command {
	var f edgeSettings
	var config string
	cmd := &cobra.Command{
		Use:   "edge",
		Short: "Run an edge node: store, device gateway, HTTP API, web console and link to a core",
		Long: `Run an edge node. It opens the store in --data, serves devices over
mutual-TLS MQTT on --mqtt with the gateway certificate certs/gateways/NAME.*,
and serves the HTTP API (bearer tokens from 'weft token create') and the
web console for its own devices on --http.
With --core it keeps a QUIC link to that core (UDP host:port) with the node
certificate certs/nodes/NAME.*: it sends /uplink/events, /shadows/changes,
/audit/events and each --replicate stream, and receives /updates/down,
resuming where it stopped after any outage. For a core cluster, --core
takes several addresses separated by commas: the edge tries them in turn,
and a core that does not serve it sends it to the one that does.
With --backlog-quota the uplink
volume holds at most that much: when the core is out of reach long enough to
fill it, the oldest uplink data is dropped to make room (counted per stream
in weft ls and as dropped on /api/v1/links) instead of refusing new data.
SIGINT or SIGTERM shut it down cleanly.

Settings come from --config (YAML) and flags; flags win. The YAML keys are
data, certs, name, site, mqtt, http, log_level, core, replicate, mirrors, rate_limit, linger,
backlog_quota, gateway.connect_timeout, gateway.first_byte_timeout,
gateway.handshake_timeout, gateway.max_packet_size, gateway.max_connections,
gateway.max_pending, gateway.max_pending_per_ip, gateway.message_rate,
gateway.byte_rate, gateway.connect_rate, gateway.max_topic_length,
gateway.max_filter_length, gateway.max_subscriptions, store.min_free,
store.memtable, store.cache, store.index_cache, memory_limit,
audit.retention, firmware.addr, firmware.chunks, tailnet,
tailnet.authkey_file, tailnet.control_url, http_tls_cert, http_tls_key,
http_insecure and the http.* limits.

With --tailnet HOSTNAME the link to the core runs over a tailnet: the edge
joins it as HOSTNAME (state in DATA/tailnet, auth key from
--tailnet.authkey-file or $WEFT_TAILNET_AUTHKEY) and --core is the core's
tailnet name and port, like weft-core:7443 (its certificate must carry that
name). The edge needs no open port and may sit behind NAT.

Devices fetch firmware from the edge over HTTPS on --firmware.addr (the
gateway's certificate; their own certificate is the only credential) or,
with --firmware.chunks, in MQTT chunks.

The audit volume keeps its records for --audit.retention: 400 days by
default, or the TTL weft volume set gave it; a negative value keeps them
for ever.

Memory is bounded for a small box: the store's memtables (--store.memtable,
three of them), its block cache (--store.cache) and index cache
(--store.index-cache) default to 16, 16 and 8 MiB, and the Go runtime's
soft memory limit (--memory-limit) to 256MiB; GOMEMLIMIT in the
environment wins over --memory-limit.

The API and console are served over HTTPS with --http-tls-cert and
--http-tls-key (the files are read again when they change; answers carry
HSTS and the session cookie is Secure). Plain HTTP is refused on any
address but loopback unless --http-insecure.`,
		Example: `  weft certs init --dir C
  weft certs issue gateway --dir C --name truck-7 --host 127.0.0.1
  weft edge --data D --certs C --name truck-7 --mqtt 127.0.0.1:8883 --http 127.0.0.1:8080
  weft certs issue node --dir C --role edge --name truck-7 --host 127.0.0.1
  weft edge --data D --certs C --name truck-7 --core 127.0.0.1:7443 --replicate /telemetry/by_device
  weft edge --data D --certs C --name truck-7 --core weft-core:7443 \
    --tailnet truck-7 --tailnet.authkey-file /etc/weft/tailnet.key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := loadSettings(cmd, config); err != nil {
				return err
			}
			cfg := edge.Config{DataDir: f.Data, CertsDir: f.Certs, Name: f.Name, Site: f.Site, MQTTAddr: f.MQTT, HTTPAddr: f.HTTP,
				Core: f.Core, Replicate: f.Replicate, HTTP: f.Limits, AuditRetention: f.Audit.Retention,
				FirmwareAddr: f.Firmware.Addr, FirmwareChunks: f.Firmware.Chunks}
			for _, m := range f.Mirrors {
				spec, err := mirror.ParseSpec(m)
				if err != nil {
					return err
				}
				cfg.Mirrors = append(cfg.Mirrors, spec)
			}
			var err error
			if cfg.Logger, err = logger(cmd, f.Log); err != nil {
				return err
			}
			g := &cfg.Gateway
			g.ConnectTimeout, g.MaxConnections, g.MaxPending, g.MessageRate = f.Gateway.ConnectTimeout, f.Gateway.MaxConnections, f.Gateway.MaxPending, f.Gateway.MessageRate
			g.FirstByteTimeout, g.HandshakeTimeout, g.MaxPendingPerIP = f.Gateway.FirstByteTimeout, f.Gateway.HandshakeTimeout, f.Gateway.MaxPendingPerIP
			g.ConnectRate, g.MaxTopicLength, g.MaxFilterLength, g.MaxSubscriptions = f.Gateway.ConnectRate, f.Gateway.MaxTopicLength, f.Gateway.MaxFilterLength, f.Gateway.MaxSubscriptions
			if err := applySizes(
				sizeSetting{f.Gateway.MaxPacketSize, func(n int64) { g.MaxPacketSize = int(n) }},
				sizeSetting{f.Gateway.ByteRate, func(n int64) { g.ByteRate = float64(n) }},
				sizeSetting{f.Store.MinFree, func(n int64) { cfg.Store.MinFreeBytes = n }},
				sizeSetting{f.Store.MemTable, func(n int64) { cfg.Store.MemTableSize = n }},
				sizeSetting{f.Store.Cache, func(n int64) { cfg.Store.BlockCacheSize = n }},
				sizeSetting{f.Store.IndexCache, func(n int64) { cfg.Store.IndexCacheSize = n }},
				sizeSetting{f.RateLimit, func(n int64) { cfg.Link.RateLimit = n }},
				sizeSetting{f.Backlog, func(n int64) { cfg.BacklogQuota = n }},
			); err != nil {
				return err
			}
			if err := memoryLimit(f.MemoryLimit, edgeMemoryLimit, cfg.Logger); err != nil {
				return err
			}
			cfg.Link.Linger = f.Linger
			tn, err := f.Tailnet.node(f.Data, cfg.Logger)
			if err != nil {
				return err
			}
			if tn != nil {
				defer tn.Close()
				cfg.Link.Transport = tn
			}
			return runEdge(cmd.Context(), cfg)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&config, "config", "", "YAML file with the settings (the environment and flags win)")
	fl.StringVar(&f.Data, "data", "", "data directory of the store (required)")
	fl.StringVar(&f.Certs, "certs", "", "certificate directory (required)")
	fl.StringVar(&f.Name, "name", "", "the edge's name (required)")
	fl.StringVar(&f.Site, "site", "", "the site the edge stands at, shared by the edges of one place, for tokens scoped by site (default: the edge's name)")
	fl.StringVar(&f.MQTT, "mqtt", "127.0.0.1:8883", "MQTT over TLS listen address")
	fl.StringVar(&f.HTTP, "http", "127.0.0.1:8080", "HTTP API listen address")
	fl.StringVar(&f.Log, "log-level", "info", "log level: debug, info, warn, error")
	logFormatFlag(fl)
	fl.StringVar(&f.Core, "core", "", "UDP address of the core to replicate with, or of a cluster's cores separated by commas; with --tailnet, tailnet names and ports (default: none)")
	fl.StringArrayVar(&f.Replicate, "replicate", nil, "another stream to send to the core, like /telemetry/by_device (repeatable)")
	fl.StringArrayVar(&f.Mirrors, "mirror", nil, "a volume mirror over the link: core:/models (down) or up:/training (repeatable; see weft mirror add)")
	fl.StringVar(&f.RateLimit, "rate-limit", "", "bytes per second sent to the core, like 1MiB (default: no cap)")
	fl.DurationVar(&f.Linger, "linger", 0, "how long small records wait to be batched and compressed with what follows (default 200ms on a rate-limited link, else 50ms; negative: off)")
	fl.StringVar(&f.Backlog, "backlog-quota", "", "most bytes the uplink volume keeps, dropping its oldest data when full, like 2GiB (default: the volume's own policy)")
	fl.DurationVar(&f.Gateway.ConnectTimeout, "gateway.connect-timeout", 0, "time a device has from TCP connect to CONNECT (default 10s)")
	fl.StringVar(&f.Gateway.MaxPacketSize, "gateway.max-packet-size", "", "largest MQTT packet a device may send, like 256KiB (default 256KiB)")
	fl.IntVar(&f.Gateway.MaxConnections, "gateway.max-connections", 0, "most device sessions connected at once (default 50000)")
	fl.Float64Var(&f.Gateway.MessageRate, "gateway.message-rate", 0, "messages per second a device may publish (default 1000)")
	fl.StringVar(&f.Gateway.ByteRate, "gateway.byte-rate", "", "bytes per second a device may publish, like 1MiB (default 1MiB)")
	fl.IntVar(&f.Gateway.MaxPending, "gateway.max-pending", 0, "most connections in the TLS handshake or waiting for their CONNECT at once (default 1024)")
	fl.IntVar(&f.Gateway.MaxPendingPerIP, "gateway.max-pending-per-ip", 0, "most connections before their CONNECT from one source address, an IPv6 /64 (default 64)")
	fl.DurationVar(&f.Gateway.FirstByteTimeout, "gateway.first-byte-timeout", 0, "time a new connection has to send its first byte (default 3s)")
	fl.DurationVar(&f.Gateway.HandshakeTimeout, "gateway.handshake-timeout", 0, "time a new connection has to finish its TLS handshake (default 5s)")
	fl.Float64Var(&f.Gateway.ConnectRate, "gateway.connect-rate", 0, "connects per second a device may make, in bursts of 10; negative for no limit (default 1)")
	fl.IntVar(&f.Gateway.MaxTopicLength, "gateway.max-topic-length", 0, "longest topic a device may publish to, in bytes; negative for no limit (default 256)")
	fl.IntVar(&f.Gateway.MaxFilterLength, "gateway.max-filter-length", 0, "longest topic filter a device may subscribe to, in bytes; negative for no limit (default 256)")
	fl.IntVar(&f.Gateway.MaxSubscriptions, "gateway.max-subscriptions", 0, "most subscriptions a device's session may hold; negative for no limit (default 100)")
	httpFlags(fl, &f.Limits)
	fl.StringVar(&f.Firmware.Addr, "firmware.addr", "", "HTTPS address where devices fetch their firmware with their certificates (default: not served)")
	fl.BoolVar(&f.Firmware.Chunks, "firmware.chunks", false, "answer the firmware chunk requests of devices that speak only MQTT")
	fl.DurationVar(&f.Audit.Retention, "audit.retention", 0, "how long the audit volume keeps its records, like 2160h (default 400 days, or the TTL weft volume set gave it; negative: for ever)")
	tailnetFlags(fl, &f.Tailnet)
	fl.StringVar(&f.Store.MinFree, "store.min-free", "", "free space the disk must keep, below which writes are refused, like 1GiB (default: six memtables and 20MiB)")
	fl.StringVar(&f.Store.MemTable, "store.memtable", "", "size of each of the store's three memtables, like 64MiB (default 16MiB)")
	fl.StringVar(&f.Store.Cache, "store.cache", "", "the store's cache of data blocks, like 64MiB (default 16MiB)")
	fl.StringVar(&f.Store.IndexCache, "store.index-cache", "", "the store's cache of table indexes and bloom filters, like 32MiB (default 8MiB)")
	memoryLimitFlag(fl, &f.MemoryLimit, "256MiB")
	return cmd
}
