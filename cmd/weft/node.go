package main

import (
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/weft-io/weft/api"
	"github.com/weft-io/weft/sync/tailnet"
)

// What weft edge, weft core and weft up share besides their settings
// (settings.go): a log level, sizes given as text.

// logger returns a logger to the command's standard error at level
// ("debug", "info", "warn", "error"), in the format of the command's
// --log-format flag if it has one: "text" (the default, key=value lines)
// or "json" (one JSON object a line, for journald, Loki and the like).
func logger(cmd *cobra.Command, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: l}
	format := "text"
	if f := cmd.Flags().Lookup("log-format"); f != nil {
		format = f.Value.String()
	}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(cmd.ErrOrStderr(), opts)), nil
	}
	return nil, fmt.Errorf("--log-format: %q is neither json nor text", format)
}

// logFormatFlag adds --log-format, which logger reads.
func logFormatFlag(fl *pflag.FlagSet) {
	fl.String("log-format", "text", "log format: text (key=value) or json (one object a line)")
}

// sizeSetting is a size given as text ("1MiB"), and where it goes; an
// empty text leaves it alone.
type sizeSetting struct {
	text string
	dst  func(int64)
}

func applySizes(settings ...sizeSetting) error {
	for _, sz := range settings {
		if sz.text == "" {
			continue
		}
		n, err := parseSize(sz.text)
		if err != nil {
			return err
		}
		sz.dst(n)
	}
	return nil
}

// setMemoryLimit is debug.SetMemoryLimit (tests put their own here).
var setMemoryLimit = debug.SetMemoryLimit

// memoryLimitFlag adds --memory-limit, which memoryLimit reads.
func memoryLimitFlag(fl *pflag.FlagSet, dst *string, def string) {
	fl.StringVar(dst, "memory-limit", "", "soft limit on the Go runtime's memory, like 256MiB, above which it collects garbage harder; 0 for none; GOMEMLIMIT in the environment wins (default "+def+")")
}

// memoryLimit sets the Go runtime's soft memory limit (runtime/debug) to
// text, a size ("0": no limit), or to def when text is empty. GOMEMLIMIT
// in the environment wins: the runtime has read it already.
func memoryLimit(text string, def int64, log *slog.Logger) error {
	if env := os.Getenv("GOMEMLIMIT"); env != "" {
		log.Info("memory limit", "bytes", setMemoryLimit(-1), "from", "GOMEMLIMIT")
		return nil
	}
	n := def
	if text != "" {
		var err error
		if n, err = parseSize(text); err != nil {
			return fmt.Errorf("--memory-limit: %w", err)
		}
	}
	if n <= 0 {
		setMemoryLimit(math.MaxInt64)
		return nil
	}
	setMemoryLimit(n)
	log.Info("memory limit", "bytes", n)
	return nil
}

// httpFlags adds the settings of a node's HTTP server (api.Limits) as
// --http.* flags, and its TLS as --http-tls-cert, --http-tls-key and
// --http-insecure.
func httpFlags(fl *pflag.FlagSet, l *api.Limits) {
	fl.DurationVar(&l.ReadTimeout, "http.read-timeout", 0, "time to read a whole request (default 1m)")
	fl.DurationVar(&l.WriteTimeout, "http.write-timeout", 0, "time to write a response, event streams excepted (default 2m)")
	fl.DurationVar(&l.IdleTimeout, "http.idle-timeout", 0, "how long an idle keep-alive connection stays open (default 1m)")
	fl.IntVar(&l.MaxConns, "http.max-conns", 0, "most open HTTP connections (default 1024, at most a quarter of the open-file limit)")
	fl.IntVar(&l.MaxStreams, "http.max-streams", 0, "most event streams open at once (default 256)")
	fl.IntVar(&l.MaxStreamsPerToken, "http.max-streams-per-token", 0, "most event streams open at once per token subject (default 8)")
	fl.StringVar(&l.TLS.CertFile, "http-tls-cert", "", "PEM certificate (chain) to serve the API and console over HTTPS with, reloaded when the file changes (see weft certs issue server)")
	fl.StringVar(&l.TLS.KeyFile, "http-tls-key", "", "PEM private key of --http-tls-cert")
	fl.BoolVar(&l.TLS.Insecure, "http-insecure", false, "allow plain HTTP on an address other than loopback, as behind a proxy that terminates TLS (logged as a warning)")
}

// tailnetSettings are the --tailnet flags of weft core and weft edge: the
// sync link over a tailnet (package tailnet, docs/sync.md#tailnet).
type tailnetSettings struct {
	Hostname, AuthKeyFile, ControlURL string
}

func tailnetFlags(fl *pflag.FlagSet, t *tailnetSettings) {
	fl.StringVar(&t.Hostname, "tailnet", "", "run the sync link over a tailnet, this node joining it with this hostname; its state is kept in DATA/tailnet (default: the link over UDP)")
	fl.StringVar(&t.AuthKeyFile, "tailnet.authkey-file", "", "file holding the auth key with which the node first joins the tailnet (default: $WEFT_TAILNET_AUTHKEY, else $TS_AUTHKEY, else a login URL in the log)")
	fl.StringVar(&t.ControlURL, "tailnet.control-url", "", "the tailnet's coordination server, such as a Headscale server's URL (default: Tailscale's)")
}

// node returns the node's presence on the tailnet, its state in
// data/tailnet, or nil without --tailnet.
func (t tailnetSettings) node(data string, log *slog.Logger) (*tailnet.Node, error) {
	if t.Hostname == "" {
		return nil, nil
	}
	return tailnet.New(tailnet.Config{Dir: filepath.Join(data, "tailnet"), Hostname: t.Hostname, AuthKeyFile: t.AuthKeyFile,
		ControlURL: t.ControlURL, Logger: log})
}
