// Package node holds what an edge node and a core node do alike when they
// start and stop: check their settings, raise their open-file limit, load
// their certificates, open their store, make their metrics registry, serve
// HTTP within api.Limits (ServeHTTP), and run until told to stop.
package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/store"
)

// Load checks a node's data directory, certificate directory and name,
// and loads its certificates, which must hold token.pub to verify API
// tokens. It returns the node's logger: log (discarding when nil) naming
// the node. kind ("edge", "core") prefixes the errors. It raises the
// process's soft limit of open files to the hard limit (Linux), and logs
// it: the gateway's devices and HTTP's clients each need one.
func Load(kind, dataDir, certsDir, name string, log *slog.Logger) (*certs.Authority, *slog.Logger, error) {
	if dataDir == "" || certsDir == "" || name == "" {
		return nil, nil, fmt.Errorf("%s: data directory, certificate directory and name are required", kind)
	}
	if !certs.ValidName(name) {
		return nil, nil, fmt.Errorf("%s: invalid name %q", kind, name)
	}
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	log = log.With("node", name)
	if soft, hard, err := raiseFileLimit(); err != nil {
		log.Warn("open-file limit not raised", "soft", soft, "hard", hard, "err", err)
	} else if soft > 0 {
		log.Info("open-file limit", "soft", soft, "hard", hard)
	}
	auth, err := certs.Load(certsDir)
	if errors.Is(err, certs.ErrNoCA) {
		// Not certs' hint (`weft certs init`): on a node that makes a CA
		// nobody trusts.
		return nil, nil, fmt.Errorf("%s: %w: %s; %s", kind, certs.ErrNoCA, certsDir, RestoreHint)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", kind, err)
	}
	if auth.TokenPublicKey == nil {
		return nil, nil, fmt.Errorf("%s: %s holds no token.pub to verify API tokens", kind, certsDir)
	}
	return auth, log, nil
}

// OpenStore opens the node's store in dataDir with the settings of sc.
func OpenStore(kind string, sc store.Config, dataDir, name string, log *slog.Logger) (*store.Store, error) {
	sc.Dir, sc.Name = filepath.Clean(dataDir), name
	if sc.Logger == nil {
		sc.Logger = log.With("component", "store")
	}
	st, err := store.Open(sc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", kind, err)
	}
	return st, nil
}

// Registry is a node's Prometheus registry, with the Go and process
// collectors.
func Registry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Wait serves until ctx ends or the node's HTTP server fails (its error on
// done, which Wait puts back), then shuts the node down, allowing it 15
// seconds.
func Wait(ctx context.Context, done chan error, shutdown func(context.Context) error) error {
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-done:
		done <- serveErr
	}
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return errors.Join(serveErr, shutdown(sctx))
}
