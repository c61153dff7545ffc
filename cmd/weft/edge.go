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
		MaxPacketSize, ByteRate string
		MaxConnections          int
		MaxPending              int
		MessageRate             float64
	}
	Store struct {
		MinFree string
	}
	Limits             api.Limits
	Core               string
	Replicate, Mirrors []string
	RateLimit, Backlog string
}

func newEdgeCmd() *cobra.Command {
	var f edgeSettings
	var config string
	cmd := &cobra.Command{
		Use:   "edge",
		Short: "Run an edge node: store, device gateway, HTTP API and link to a core",
		Long: `Run an edge node. It opens the store in --data, serves devices over
mutual-TLS MQTT on --mqtt with the gateway certificate certs/gateways/NAME.*,
and serves the HTTP API (bearer tokens from 'weft token create') on --http.
With --core it keeps a QUIC link to that core (UDP host:port) with the node
certificate certs/nodes/NAME.*: it sends /uplink/events, /shadows/changes,
/audit/events and each --replicate stream, and receives /updates/down,
resuming where it stopped after any outage. With --backlog-quota the uplink
volume holds at most that much: when the core is out of reach long enough to
fill it, the oldest uplink data is dropped to make room (counted per stream
in weft ls and as dropped on /api/v1/links) instead of refusing new data.
SIGINT or SIGTERM shut it down cleanly.

Settings come from --config (YAML) and flags; flags win. The YAML keys are
data, certs, name, site, mqtt, http, log_level, core, replicate, mirrors, rate_limit,
backlog_quota, gateway.connect_timeout, gateway.max_packet_size, gateway.max_connections,
gateway.message_rate, gateway.byte_rate and store.min_free.`,
		Example: `  weft certs init --dir C
  weft certs issue gateway --dir C --name truck-7 --host 127.0.0.1
  weft edge --data D --certs C --name truck-7 --mqtt 127.0.0.1:8883 --http 127.0.0.1:8080
  weft certs issue node --dir C --role edge --name truck-7 --host 127.0.0.1
  weft edge --data D --certs C --name truck-7 --core 127.0.0.1:7443 --replicate /telemetry/by_device`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := loadSettings(cmd, config); err != nil {
				return err
			}
			cfg := edge.Config{DataDir: f.Data, CertsDir: f.Certs, Name: f.Name, Site: f.Site, MQTTAddr: f.MQTT, HTTPAddr: f.HTTP,
				Core: f.Core, Replicate: f.Replicate, HTTP: f.Limits}
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
			if err := applySizes(
				sizeSetting{f.Gateway.MaxPacketSize, func(n int64) { g.MaxPacketSize = int(n) }},
				sizeSetting{f.Gateway.ByteRate, func(n int64) { g.ByteRate = float64(n) }},
				sizeSetting{f.Store.MinFree, func(n int64) { cfg.Store.MinFreeBytes = n }},
				sizeSetting{f.RateLimit, func(n int64) { cfg.Link.RateLimit = n }},
				sizeSetting{f.Backlog, func(n int64) { cfg.BacklogQuota = n }},
			); err != nil {
				return err
			}
			return edge.Run(cmd.Context(), cfg)
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
	fl.StringVar(&f.Core, "core", "", "UDP address of the core to replicate with (default: none)")
	fl.StringArrayVar(&f.Replicate, "replicate", nil, "another stream to send to the core, like /telemetry/by_device (repeatable)")
	fl.StringArrayVar(&f.Mirrors, "mirror", nil, "a volume mirror over the link: core:/models (down) or up:/training (repeatable; see weft mirror add)")
	fl.StringVar(&f.RateLimit, "rate-limit", "", "bytes per second sent to the core, like 1MiB (default: no cap)")
	fl.StringVar(&f.Backlog, "backlog-quota", "", "most bytes the uplink volume keeps, dropping its oldest data when full, like 2GiB (default: the volume's own policy)")
	fl.DurationVar(&f.Gateway.ConnectTimeout, "gateway.connect-timeout", 0, "time a device has from TCP connect to CONNECT (default 10s)")
	fl.StringVar(&f.Gateway.MaxPacketSize, "gateway.max-packet-size", "", "largest MQTT packet a device may send, like 256KiB (default 256KiB)")
	fl.IntVar(&f.Gateway.MaxConnections, "gateway.max-connections", 0, "most device sessions connected at once (default 50000)")
	fl.Float64Var(&f.Gateway.MessageRate, "gateway.message-rate", 0, "messages per second a device may publish (default 1000)")
	fl.StringVar(&f.Gateway.ByteRate, "gateway.byte-rate", "", "bytes per second a device may publish, like 1MiB (default 1MiB)")
	fl.IntVar(&f.Gateway.MaxPending, "gateway.max-pending", 0, "most connections in the TLS handshake or waiting for their CONNECT at once (default 1024)")
	httpFlags(fl, &f.Limits)
	fl.StringVar(&f.Store.MinFree, "store.min-free", "", "free space the disk must keep, below which writes are refused, like 1GiB (default: six memtables and 20MiB)")
	return cmd
}
