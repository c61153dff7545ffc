// Package testenv runs a whole fabric on loopback for tests: a certificate
// directory, a core node, edge nodes with their device gateways and links
// to the core, and an in-process UDP proxy to put between them that drops,
// delays and reorders datagrams. Every node listens on 127.0.0.1:0 and
// keeps its state under the test's temporary directory.
//
// Equal and WaitEqual compare a stream at two stores topic by topic:
// dense offsets, the same bounds, and the same hash of every message.
package testenv

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/core"
	"github.com/weft-io/weft/edge"
	"github.com/weft-io/weft/internal/testenv/wait"
	"github.com/weft-io/weft/store"
	"github.com/weft-io/weft/sync/replicate"
)

// Fabric is a certificate directory and the nodes started from it.
type Fabric struct {
	T     testing.TB
	Dir   string
	Certs string
	Auth  *certs.Authority
	// Logger receives the nodes' logs: discarded unless WEFT_TEST_LOG is
	// set in the environment.
	Logger *slog.Logger
}

// New makes a certificate directory under t.TempDir().
func New(t testing.TB) *Fabric {
	t.Helper()
	dir := t.TempDir()
	cd := filepath.Join(dir, "certs")
	if err := certs.Init(cd, false); err != nil {
		t.Fatal(err)
	}
	auth, err := certs.Load(cd)
	if err != nil {
		t.Fatal(err)
	}
	lg := slog.New(slog.DiscardHandler)
	if os.Getenv("WEFT_TEST_LOG") != "" {
		lg = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return &Fabric{T: t, Dir: dir, Certs: cd, Auth: auth, Logger: lg}
}

// IssueNode issues (once) the node certificate of name in role.
func (f *Fabric) IssueNode(role, name string) {
	f.T.Helper()
	if cf, _ := certs.Files(f.Certs, certs.KindNode, name); exists(cf) {
		return
	}
	iss, err := f.Auth.IssueNode(role, name, []string{"127.0.0.1", "localhost"}, 0)
	if err != nil {
		f.T.Fatal(err)
	}
	if _, _, err := f.Auth.Save(iss); err != nil {
		f.T.Fatal(err)
	}
}

// IssueGateway issues (once) the gateway certificate of an edge.
func (f *Fabric) IssueGateway(name string) {
	f.T.Helper()
	if cf, _ := certs.Files(f.Certs, certs.KindGateway, name); exists(cf) {
		return
	}
	iss, err := f.Auth.IssueGateway(name, []string{"127.0.0.1", "localhost"}, 0)
	if err != nil {
		f.T.Fatal(err)
	}
	if _, _, err := f.Auth.Save(iss); err != nil {
		f.T.Fatal(err)
	}
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// DataDir is where node name keeps its store.
func (f *Fabric) DataDir(name string) string { return filepath.Join(f.Dir, "data-"+name) }

func storeConfig() store.Config {
	return store.Config{MinFreeBytes: -1, MemTableSize: 16 << 20, RetentionInterval: -1}
}

// StartCore starts core node name on loopback; it shuts down with the
// test (Shutdown it earlier to restart it on the same data).
func (f *Fabric) StartCore(name string, cfg core.Config) *core.Node {
	f.T.Helper()
	f.IssueNode(certs.CoreNode, name)
	cfg.DataDir, cfg.CertsDir, cfg.Name = f.DataDir(name), f.Certs, name
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = "127.0.0.1:0"
	}
	if cfg.Store.Dir == "" {
		cfg.Store = storeConfig()
	}
	if cfg.Logger == nil {
		cfg.Logger = f.Logger
	}
	n, err := core.Start(context.Background(), cfg)
	if err != nil {
		f.T.Fatal(err)
	}
	f.T.Cleanup(func() { n.Shutdown(context.Background()) })
	return n
}

// StartEdge starts edge node name on loopback, linked to the core at
// cfg.Core if set; it shuts down with the test (Shutdown it earlier to
// restart it on the same data).
func (f *Fabric) StartEdge(name string, cfg edge.Config) *edge.Node {
	f.T.Helper()
	f.IssueGateway(name)
	f.IssueNode(certs.EdgeNode, name)
	cfg.DataDir, cfg.CertsDir, cfg.Name = f.DataDir(name), f.Certs, name
	if cfg.MQTTAddr == "" {
		cfg.MQTTAddr = "127.0.0.1:0"
	}
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = "127.0.0.1:0"
	}
	if cfg.Store.Dir == "" {
		cfg.Store = storeConfig()
	}
	if cfg.Logger == nil {
		cfg.Logger = f.Logger
	}
	if cfg.Link.Backoff == (replicate.Backoff{}) {
		cfg.Link.Backoff = replicate.Backoff{Min: 20 * time.Millisecond, Max: 500 * time.Millisecond}
	}
	n, err := edge.Start(context.Background(), cfg)
	if err != nil {
		f.T.Fatal(err)
	}
	f.T.Cleanup(func() { n.Shutdown(context.Background()) })
	return n
}

// Digest summarises a topic partition: its bounds and a hash of every
// message (offset, key, value, headers, timestamp). It fails if the
// offsets are not dense.
func Digest(ctx context.Context, s *store.Stream, topic string, part int) (string, error) {
	low, next, err := s.Bounds(ctx, topic, part)
	if err != nil {
		return "", err
	}
	return digestRange(ctx, s, topic, part, low, next)
}

func digestRange(ctx context.Context, s *store.Stream, topic string, part int, low, next uint64) (string, error) {
	h := sha256.New()
	for from := low; from < next; {
		msgs, err := s.Read(ctx, topic, part, from, store.ReadOptions{Limit: 10000, MaxBytes: 16 << 20})
		if err != nil {
			return "", err
		}
		if len(msgs) == 0 {
			return "", fmt.Errorf("%s topic %q: nothing at %d below %d", s.Path(), topic, from, next)
		}
		for _, m := range msgs {
			if m.Offset >= next {
				break
			}
			if m.Offset != from {
				return "", fmt.Errorf("%s topic %q: offset %d where %d was expected", s.Path(), topic, m.Offset, from)
			}
			hdr, _ := json.Marshal(m.Headers)
			fmt.Fprintf(h, "%d|%x|%x|%s|%d\n", m.Offset, m.Key, m.Value, hdr, m.Timestamp.UnixNano())
			from++
		}
	}
	return fmt.Sprintf("[%d,%d) %x", low, next, h.Sum(nil)[:12]), nil
}

// Equal checks that every topic (partition 0) of the stream path in src is
// in dst with the same bounds and messages.
func Equal(src, dst *store.Store, path string) error {
	ctx := context.Background()
	topics, err := src.Stream(path).AllTopics(ctx)
	if err != nil {
		return err
	}
	for _, topic := range topics {
		a, err := Digest(ctx, src.Stream(path), topic, 0)
		if err != nil {
			return fmt.Errorf("source: %w", err)
		}
		b, err := Digest(ctx, dst.Stream(path), topic, 0)
		if err != nil {
			return fmt.Errorf("replica: %w", err)
		}
		if a != b {
			return fmt.Errorf("%s topic %q: source %s, replica %s", path, topic, a, b)
		}
	}
	return nil
}

// Prefix checks that, for every topic of path in src, what dst holds is a
// prefix of it: dense, at the same offsets, with the same messages. It is
// what a replica must look like while replication is under way.
func Prefix(src, dst *store.Store, path string) error {
	ctx := context.Background()
	topics, err := dst.Stream(path).AllTopics(ctx)
	if err != nil {
		return err
	}
	for _, topic := range topics {
		dlow, dnext, err := dst.Stream(path).Bounds(ctx, topic, 0)
		if err != nil {
			return err
		}
		if dnext == dlow {
			continue
		}
		slow, snext, err := src.Stream(path).Bounds(ctx, topic, 0)
		if err != nil {
			return err
		}
		if dnext > snext {
			return fmt.Errorf("%s topic %q: replica holds up to %d, source only %d", path, topic, dnext, snext)
		}
		from := max(dlow, slow)
		a, err := digestRange(ctx, src.Stream(path), topic, 0, from, dnext)
		if err != nil {
			return fmt.Errorf("source: %w", err)
		}
		b, err := digestRange(ctx, dst.Stream(path), topic, 0, from, dnext)
		if err != nil {
			return fmt.Errorf("replica: %w", err)
		}
		if a != b {
			return fmt.Errorf("%s topic %q: source %s, replica %s", path, topic, a, b)
		}
	}
	return nil
}

// WaitEqual polls, with a deadline, until Equal holds for every path.
func WaitEqual(t testing.TB, src, dst *store.Store, timeout time.Duration, paths ...string) {
	t.Helper()
	wait.ForNil(t, timeout, "the replica equal to its source", func() error {
		for _, p := range paths {
			if err := Equal(src, dst, p); err != nil {
				return err
			}
		}
		return nil
	})
}

// WaitFor polls cond, with a deadline (wait.For).
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	wait.For(t, timeout, what, cond)
}
