package main

import (
	"github.com/spf13/cobra"
	"github.com/weft-io/weft/core"
)

// coreFile is the YAML form of the core's settings (--config).
type coreFile struct {
	Data      string   `yaml:"data"`
	Certs     string   `yaml:"certs"`
	Name      string   `yaml:"name"`
	Listen    string   `yaml:"listen"`
	HTTP      string   `yaml:"http"`
	Log       string   `yaml:"log_level"`
	Down      []string `yaml:"down"`
	RateLimit string   `yaml:"rate_limit"`
	Store     struct {
		MinFree string `yaml:"min_free"`
	} `yaml:"store"`
}

func newCoreCmd() *cobra.Command {
	var f coreFile
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

Settings come from --config (YAML) and flags; flags win. The YAML keys are
data, certs, name, listen, http, log_level, down, rate_limit and
store.min_free.`,
		Example: `  weft certs init --dir C
  weft certs issue node --dir C --role core --name core-1 --host 127.0.0.1
  weft core --data D --certs C --name core-1 --listen 127.0.0.1:7443 --http 127.0.0.1:8081`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var fromFile coreFile
			if ok, err := readConfig(config, &fromFile); err != nil {
				return err
			} else if ok {
				mergeCore(cmd, &f, fromFile)
			}
			cfg := core.Config{DataDir: f.Data, CertsDir: f.Certs, Name: f.Name, Listen: f.Listen, HTTPAddr: f.HTTP}
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
			return core.Run(cmd.Context(), cfg)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&config, "config", "", "YAML file with the settings (flags win)")
	fl.StringVar(&f.Data, "data", "", "data directory of the store (required)")
	fl.StringVar(&f.Certs, "certs", "", "certificate directory (required)")
	fl.StringVar(&f.Name, "name", "", "the core's name (required)")
	fl.StringVar(&f.Listen, "listen", "127.0.0.1:7443", "UDP address of the QUIC sync listener")
	fl.StringVar(&f.HTTP, "http", "127.0.0.1:8081", "HTTP API listen address")
	fl.StringArrayVar(&f.Down, "down", nil, "another stream to send to every edge besides /updates/down (repeatable)")
	fl.StringVar(&f.RateLimit, "rate-limit", "", "bytes per second sent on each link, like 10MiB (default: no cap)")
	fl.StringVar(&f.Log, "log-level", "info", "log level: debug, info, warn, error")
	return cmd
}

// mergeCore fills the settings not given as flags from the file.
func mergeCore(cmd *cobra.Command, f *coreFile, file coreFile) {
	set := unlessFlag(cmd)
	set("data", &f.Data, file.Data)
	set("certs", &f.Certs, file.Certs)
	set("name", &f.Name, file.Name)
	set("listen", &f.Listen, file.Listen)
	set("http", &f.HTTP, file.HTTP)
	set("log-level", &f.Log, file.Log)
	set("rate-limit", &f.RateLimit, file.RateLimit)
	if !cmd.Flags().Changed("down") {
		f.Down = file.Down
	}
	f.Store = file.Store
}
