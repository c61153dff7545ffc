package main

import (
	"github.com/spf13/cobra"
	"github.com/weft-io/weft/up"
)

func newUpCmd() *cobra.Command {
	var cfg up.Config
	var level, config string
	var coreNodes, edges int
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run the whole fabric on this machine: core, edge, gateway and a simulated fleet",
		Long: `Run, in one process on loopback, a core node, an edge node with its device
gateway linked to the core over QUIC, and a simulated fleet of devices over
mutual-TLS MQTT. Certificates are made under the data directory on first
start and an admin API token is written to <data>/admin.token; the console
URL, the API and MQTT addresses are printed. Ctrl-C stops it; starting again
on the same directory resumes with the same data.

Every simulated device runs the firmware agent. A DEMO firmware signing key
is made on first start in <data>/firmware-demo-key (apart from the nodes
and the certificates, as an offline key would be); the core trusts it
(<data>/certs/firmware-keys.json) and the devices pin it. Its path and the
commands to sign, publish and roll out a release are printed. With
--firmware-fail RATE that fraction of the devices (the same ones each run)
fails the health check of a new image and rolls back, so that a rollout
is seen to halt.

With --core-nodes N (2 or more) or --edges M, it runs instead a core
cluster of N nodes (default 3) and M edges (default 4), each node its own
weft process on loopback, the simulated devices spread over the edges
(without the firmware agent): kill -9 a core's pid to see its edges move
to the others (GET /api/v1/cluster on any core shows who serves which
edge), start it again to see edges return to it. --core-nodes 1 runs one
core node with the edges. The nodes take free ports (--http and --mqtt do
not apply); their addresses and pids are printed.`,
		Example: `  weft up
  weft up --data ./weft-data --devices 1000 --http 127.0.0.1:8080 --mqtt 127.0.0.1:8883
  weft up --firmware-fail 0.3
  weft up --data ./weft-cluster --core-nodes 3 --edges 4`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := loadSettings(cmd, config); err != nil {
				return err
			}
			var err error
			if cfg.Logger, err = logger(cmd, level); err != nil {
				return err
			}
			cfg.Out = cmd.OutOrStdout()
			if coreNodes > 0 || edges > 0 {
				return up.RunCluster(cmd.Context(), up.ClusterConfig{DataDir: cfg.DataDir, CoreNodes: coreNodes, Edges: edges,
					Devices: cfg.Devices, Interval: cfg.Interval, LogLevel: level, Out: cfg.Out, Logger: cfg.Logger})
			}
			return up.Run(cmd.Context(), cfg)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&config, "config", "", "YAML file with the settings by flag name (WEFT_<FLAG> variables and flags win)")
	fl.StringVar(&cfg.DataDir, "data", "./weft-data", "data directory: certificates, the nodes' stores, admin.token")
	fl.IntVar(&cfg.Devices, "devices", 50, "simulated devices")
	fl.StringVar(&cfg.HTTPAddr, "http", "127.0.0.1:8080", "console and API address of the core")
	fl.StringVar(&cfg.MQTTAddr, "mqtt", "127.0.0.1:8883", "MQTT address of the edge's gateway")
	fl.Float64Var(&cfg.FirmwareFail, "firmware-fail", 0, "fraction (0..1) of simulated devices whose new firmware fails its health check")
	fl.IntVar(&coreNodes, "core-nodes", 0, "run a core cluster of this many nodes, each node and edge its own process (default: one core and one edge in this process)")
	fl.IntVar(&edges, "edges", 0, "with --core-nodes, the number of edges (default 4)")
	fl.StringVar(&level, "log-level", "warn", "log level: debug, info, warn, error")
	logFormatFlag(fl)
	return cmd
}
