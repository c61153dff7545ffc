package main

import (
	"errors"
	"time"

	"github.com/spf13/cobra"
	"github.com/weft-io/weft/api"
	"github.com/weft-io/weft/cluster"
	"github.com/weft-io/weft/core"
)

// coreSettings are the core's settings, one per flag (see settings.go).
type coreSettings struct {
	Data, Certs, Name, Listen, HTTP, Log string
	Down                                 []string
	RateLimit                            string
	Linger                               time.Duration
	Store                                struct {
		MinFree string
	}
	Limits   api.Limits
	MirrorUp []string
	Audit    struct {
		Retention time.Duration
	}
	Tailnet                        tailnetSettings
	ClusterName, Peers, PeerListen string
}

// runCore runs the node weft core built (tests read the Config).
var runCore = core.Run

func newCoreCmd() *cobra.Command {
	var f coreSettings
	var config string
	cmd := &cobra.Command{
		Use:   "core",
		Short: "Run a core node: store, sync server for edges, HTTP API and web console",
		Long: `Run a core node. It opens the store in --data, accepts its edges' sync
links over QUIC on the UDP address --listen with the node certificate
certs/nodes/NAME.* (mutual TLS 1.3 with the fabric CA; only edge nodes are
accepted), and serves the HTTP API on --http, including GET /api/v1/links.
Edges replicate /uplink/events, /shadows/changes, /audit/events and what
they add with --replicate; the core sends /updates/down (and what --down
names) to every edge. SIGINT or SIGTERM shut it down cleanly.

Every flag is a setting. A YAML file (--config) gives settings by flag
name (underscores for dashes allowed; nested maps join with dots, so
store: {min_free: 1GiB} is --store.min-free); WEFT_<FLAG> environment
variables (WEFT_LOG_LEVEL, WEFT_RATE_LIMIT) override the file and flags
override both. 'weft config print core' shows the result.

The API and console are served over HTTPS with --http-tls-cert and
--http-tls-key (the files are read again when they change; answers carry
HSTS and the session cookie is Secure). Plain HTTP is refused on any
address but loopback unless --http-insecure (behind a proxy that
terminates TLS), which is logged as a warning.

The audit volume keeps its records for --audit.retention (audit:
{retention: 2160h} in the file): 400 days by default, or the TTL weft
volume set gave it; a negative value keeps them for ever.

With --tailnet HOSTNAME the core joins a tailnet as HOSTNAME (state in
DATA/tailnet, auth key from --tailnet.authkey-file or
$WEFT_TAILNET_AUTHKEY) and takes its edges' links there, on its tailnet
address at the port of --listen, instead of on UDP: edges behind NAT
reach it with no open port. Its node certificate must carry HOSTNAME
(--host HOSTNAME), the name edges dial.

A core cluster (docs/scale.md): --cluster-name N and --peers
name=http://host:port,... (the etcd peer URLs of the cluster's 3 or 5
nodes, this one among them, named by --name) make the node a member of
cluster N, with an embedded etcd in DATA/etcd listening on its peer URL
(or --peer-listen). Each edge is served by one node, chosen by hashing
over the nodes up; a node that does not serve an edge redirects it, a
node that stops (or is killed) has its edges taken by the others, and a
node that joins takes its share. GET /api/v1/cluster lists the nodes.
The --listen and --http addresses are told to the other nodes and to
edges: give addresses they reach. With https:// peer URLs (all of them)
the etcd members link over TLS with their node certificates of the
fabric CA (nodes/NAME.crt, fabric-ca.crt) and take only peers whose
certificate names one of --peers. Desired state, commands, rollout
announcements, tokens and alarm settings are held by a majority of the
cluster before they are answered, and every node applies them in the
same order to its /updates/down.`,
		Example: `  weft certs init --dir C
  weft certs issue node --dir C --role core --name core-1 --host 127.0.0.1
  weft core --data D --certs C --name core-1 --listen 127.0.0.1:7443 --http 127.0.0.1:8081
  weft certs issue server --dir C --name core-1 --host core-1.example.com
  weft core --data D --certs C --name core-1 --http 0.0.0.0:8443 \
    --http-tls-cert C/servers/core-1.crt --http-tls-key C/servers/core-1.key
  weft core --data D1 --certs C --name core-1 --listen 10.0.0.1:7443 --http 10.0.0.1:8081 \
    --cluster-name prod --peers core-1=http://10.0.0.1:2380,core-2=http://10.0.0.2:2380,core-3=http://10.0.0.3:2380`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := loadSettings(cmd, config); err != nil {
				return err
			}
			cfg := core.Config{DataDir: f.Data, CertsDir: f.Certs, Name: f.Name, Listen: f.Listen, HTTPAddr: f.HTTP, HTTP: f.Limits, MirrorsUp: f.MirrorUp, Linger: f.Linger,
				AuditRetention: f.Audit.Retention}
			if f.ClusterName != "" || f.Peers != "" {
				if f.ClusterName == "" || f.Peers == "" {
					return errors.New("core: --cluster-name and --peers go together")
				}
				peers, err := cluster.ParsePeers(f.Peers)
				if err != nil {
					return err
				}
				cfg.Cluster = core.ClusterConfig{Name: f.ClusterName, Peers: peers, PeerListen: f.PeerListen}
			}
			if len(f.Down) > 0 {
				cfg.Down = append([]string{"/updates/down"}, f.Down...)
			}
			var err error
			if cfg.Logger, err = logger(cmd, f.Log); err != nil {
				return err
			}
			if err := applySizes(
				sizeSetting{f.RateLimit, func(n int64) { cfg.RateLimit = n }},
				sizeSetting{f.Store.MinFree, func(n int64) { cfg.Store.MinFreeBytes = n }},
			); err != nil {
				return err
			}
			tn, err := f.Tailnet.node(f.Data, cfg.Logger)
			if err != nil {
				return err
			}
			if tn != nil {
				defer tn.Close()
				cfg.Transport = tn
			}
			return runCore(cmd.Context(), cfg)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&config, "config", "", "YAML file with the settings (the environment and flags win)")
	fl.StringVar(&f.Data, "data", "", "data directory of the store (required)")
	fl.StringVar(&f.Certs, "certs", "", "certificate directory (required)")
	fl.StringVar(&f.Name, "name", "", "the core's name (required)")
	fl.StringVar(&f.Listen, "listen", "127.0.0.1:7443", "UDP address of the QUIC sync listener")
	fl.StringVar(&f.HTTP, "http", "127.0.0.1:8081", "HTTP API listen address")
	fl.StringArrayVar(&f.Down, "down", nil, "another stream to send to every edge besides /updates/down (repeatable)")
	fl.StringVar(&f.RateLimit, "rate-limit", "", "bytes per second sent on each link, like 10MiB (default: no cap)")
	fl.DurationVar(&f.Linger, "linger", 0, "how long small records wait to be batched and compressed with what follows (default 200ms on a rate-limited link, else 50ms; negative: off)")
	fl.StringVar(&f.Log, "log-level", "info", "log level: debug, info, warn, error")
	logFormatFlag(fl)
	fl.StringArrayVar(&f.MirrorUp, "mirror-up", nil, "a volume edges may mirror up to the core, landing in VOLUME.EDGE (repeatable; the edge adds --mirror up:/VOLUME)")
	httpFlags(fl, &f.Limits)
	fl.DurationVar(&f.Audit.Retention, "audit.retention", 0, "how long the audit volume keeps its records, like 2160h (default 400 days, or the TTL weft volume set gave it; negative: for ever)")
	fl.StringVar(&f.ClusterName, "cluster-name", "", "the core cluster this node is a member of (with --peers; default: a single core node)")
	fl.StringVar(&f.Peers, "peers", "", "the cluster's voting nodes and their etcd peer URLs, this node among them: core-1=http://10.0.0.1:2380,core-2=... (https:// for TLS with the node certificates)")
	fl.StringVar(&f.PeerListen, "peer-listen", "", "URL the embedded etcd's peer listener binds (default: this node's URL in --peers)")
	tailnetFlags(fl, &f.Tailnet)
	fl.StringVar(&f.Store.MinFree, "store.min-free", "", "free space the disk must keep, below which writes are refused, like 1GiB (default: six memtables and 20MiB)")
	return cmd
}
