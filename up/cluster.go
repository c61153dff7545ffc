package up

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/device"
)

// ClusterConfig configures `weft up --core-nodes N --edges M`: a core
// cluster and its edges on this machine, each node its own process (the
// weft binary), so that one can be killed. The zero value works.
type ClusterConfig struct {
	// DataDir holds certificates, the nodes' stores and admin.token.
	// Default ./weft-data.
	DataDir string
	// Binary is the weft binary the nodes run. Default: this process's.
	Binary string
	// CoreNodes is the size of the core cluster. Default 3; 1 runs a
	// single core node (no cluster).
	CoreNodes int
	// Edges is the number of edges. Default 4.
	Edges int
	// Devices is the size of the simulated fleet, spread over the edges
	// (run in this process); 0: none.
	Devices int
	// Interval between a simulated device's samples. Default 5 s.
	Interval time.Duration
	// PeerTLS gives the cores https:// peer URLs: their etcd members
	// link over TLS with the nodes' certificates. Default plain http://.
	PeerTLS bool
	// ClusterName is the core cluster's name. Default "weft-up".
	ClusterName string
	// LogLevel is the nodes' log level: info or debug (each node's start
	// is read from its info line). Default info.
	LogLevel string
	// Out receives the addresses to use. Nil discards.
	Out io.Writer
	// Logger receives the fleet's logs. Nil discards them.
	Logger *slog.Logger
}

// Proc is one node running as a child process.
type Proc struct {
	// Name is the node's name (core-1, edge-1, ...).
	Name string
	// Addrs are the addresses the node said it listens on, by key (sync,
	// http, mqtt), from its started line.
	Addrs map[string]string
	// Peer is a core's etcd peer URL.
	Peer string

	bin  string
	args []string
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	log  bytes.Buffer
}

// startedAttr matches the key=value attributes of a started line.
var startedAttr = regexp.MustCompile(`(\w+)=(\S+)`)

// Start runs the node and waits for the line saying it started (a core
// of a cluster says it once the cluster has a quorum); later starts reuse
// the listen addresses the first one reported.
func (p *Proc) Start(ctx context.Context) error {
	cmd := exec.Command(p.bin, p.args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("up: %s: %w", p.Name, err)
	}
	ready, done := make(chan map[string]string, 1), make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		started := false
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			if p.log.Len() > 1<<20 {
				p.log.Reset()
			}
			p.log.WriteString(line + "\n")
			p.mu.Unlock()
			if !started && strings.Contains(line, " started") {
				started = true
				addrs := map[string]string{}
				for _, m := range startedAttr.FindAllStringSubmatch(line, -1) {
					addrs[m[1]] = m[2]
				}
				ready <- addrs
			}
		}
		cmd.Wait()
	}()
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
	select {
	case addrs := <-ready:
		p.Addrs = addrs
	case <-done:
		return fmt.Errorf("up: %s exited before it started:\n%s", p.Name, p.Logs())
	case <-ctx.Done():
		p.Kill()
		return fmt.Errorf("up: %s did not start: %w\n%s", p.Name, ctx.Err(), p.Logs())
	}
	for i, a := range p.args[:len(p.args)-1] {
		if key, ok := map[string]string{"--mqtt": "mqtt", "--http": "http", "--listen": "sync"}[a]; ok && p.Addrs[key] != "" {
			p.args[i+1] = p.Addrs[key]
		}
	}
	return nil
}

// Logs returns the node's last log lines.
func (p *Proc) Logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

func (p *Proc) signal(sig syscall.Signal, wait bool) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	cmd.Process.Signal(sig)
	if wait {
		<-done
		p.mu.Lock()
		p.cmd = nil
		p.mu.Unlock()
	}
}

// Kill ends the node with SIGKILL and waits for it.
func (p *Proc) Kill() { p.signal(syscall.SIGKILL, true) }

// Stop ends the node with SIGTERM (a clean shutdown) and waits for it.
func (p *Proc) Stop() { p.signal(syscall.SIGTERM, true) }

// Pause stops the node with SIGSTOP; Resume continues it.
func (p *Proc) Pause() { p.signal(syscall.SIGSTOP, false) }

// Resume continues a paused node (SIGCONT).
func (p *Proc) Resume() { p.signal(syscall.SIGCONT, false) }

// Running reports whether the node's process runs.
func (p *Proc) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil
}

// Cluster is a running core cluster with its edges.
type Cluster struct {
	Cores, Edges []*Proc
	Fleets       []*device.Fleet
	// Token is an admin API token, also written to DataDir/admin.token.
	Token    string
	CertsDir string
}

// CoreAddrs are the cores' sync addresses, as edges are given them.
func (c *Cluster) CoreAddrs() []string {
	var out []string
	for _, p := range c.Cores {
		out = append(out, p.Addrs["sync"])
	}
	return out
}

// freeTCP returns a loopback TCP port free at the time of the call.
func freeTCP() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// StartCluster sets up certificates on first start, starts the core
// nodes together (they wait for each other's quorum), then the edges,
// each knowing every core, then the fleets.
func StartCluster(ctx context.Context, cfg ClusterConfig) (*Cluster, error) {
	if cfg.DataDir == "" {
		cfg.DataDir = "weft-data"
	}
	if cfg.CoreNodes <= 0 {
		cfg.CoreNodes = 3
	}
	if cfg.Edges <= 0 {
		cfg.Edges = 4
	}
	if cfg.ClusterName == "" {
		cfg.ClusterName = "weft-up"
	}
	if cfg.LogLevel != "debug" {
		cfg.LogLevel = "info"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("up: %w", err)
		}
		cfg.Binary = exe
	}
	certsDir := filepath.Join(cfg.DataDir, "certs")
	if _, err := os.Stat(filepath.Join(certsDir, "device-ca.crt")); errors.Is(err, os.ErrNotExist) {
		if err := certs.Init(certsDir, false); err != nil {
			return nil, err
		}
	}
	auth, err := certs.Load(certsDir)
	if err != nil {
		return nil, err
	}
	hosts := []string{"127.0.0.1", "localhost"}
	c := &Cluster{CertsDir: certsDir}
	var peers []string
	for i := range cfg.CoreNodes {
		name := fmt.Sprintf("core-%d", i+1)
		if err := auth.EnsureNode(certs.CoreNode, name, hosts); err != nil {
			return nil, err
		}
		port, err := freeTCP()
		if err != nil {
			return nil, err
		}
		scheme := "http"
		if cfg.PeerTLS {
			scheme = "https"
		}
		p := &Proc{Name: name, Peer: fmt.Sprintf("%s://127.0.0.1:%d", scheme, port), bin: cfg.Binary}
		peers = append(peers, name+"="+p.Peer)
		c.Cores = append(c.Cores, p)
	}
	// A restart keeps the peers of the first start: etcd's members are
	// fixed at the cluster's birth.
	peersFile := filepath.Join(cfg.DataDir, "peers")
	if b, err := os.ReadFile(peersFile); err == nil {
		peers = strings.Split(strings.TrimSpace(string(b)), ",")
		for i, p := range c.Cores {
			if i < len(peers) {
				_, p.Peer, _ = strings.Cut(peers[i], "=")
			}
		}
	} else if err := os.WriteFile(peersFile, []byte(strings.Join(peers, ",")+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("up: %w", err)
	}
	for _, p := range c.Cores {
		p.args = []string{"core", "--data", filepath.Join(cfg.DataDir, p.Name), "--certs", certsDir, "--name", p.Name, "--log-level", cfg.LogLevel}
		if len(c.Cores) > 1 {
			p.args = append(p.args, "--cluster-name", cfg.ClusterName, "--peers", strings.Join(peers, ","))
		}
		p.args = append(p.args, "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0")
	}
	token, err := certs.IssueToken(auth.TokenKey, certs.TokenClaims{Subject: "weft-up-admin", Role: certs.RoleAdmin}, 30*24*time.Hour)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(cfg.DataDir, "admin.token"), []byte(token+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("up: %w", err)
	}
	c.Token = token
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	errs := make([]error, len(c.Cores))
	var wg sync.WaitGroup
	for i, p := range c.Cores {
		wg.Go(func() { errs[i] = p.Start(sctx) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		c.Shutdown()
		return nil, err
	}
	for i := range cfg.Edges {
		name := fmt.Sprintf("edge-%d", i+1)
		for _, err := range []error{auth.EnsureNode(certs.EdgeNode, name, hosts), auth.EnsureGateway(name, hosts)} {
			if err != nil {
				c.Shutdown()
				return nil, err
			}
		}
		p := &Proc{Name: name, bin: cfg.Binary, args: []string{"edge", "--data", filepath.Join(cfg.DataDir, name), "--certs", certsDir,
			"--name", name, "--core", strings.Join(c.CoreAddrs(), ","), "--replicate", "/telemetry/by_device",
			"--log-level", cfg.LogLevel, "--mqtt", "127.0.0.1:0", "--http", "127.0.0.1:0"}}
		if err := p.Start(sctx); err != nil {
			c.Shutdown()
			return nil, err
		}
		c.Edges = append(c.Edges, p)
	}
	for i, e := range c.Edges {
		n := cfg.Devices / len(c.Edges)
		if i < cfg.Devices%len(c.Edges) {
			n++
		}
		if n == 0 {
			continue
		}
		fl, err := device.StartFleet(ctx, device.SimConfig{Dial: device.DialConfig{Addr: e.Addrs["mqtt"]}, CertsDir: certsDir,
			Count: n, IDPrefix: e.Name, Interval: cfg.Interval, Logger: cfg.Logger})
		if err != nil {
			c.Shutdown()
			return nil, err
		}
		c.Fleets = append(c.Fleets, fl)
	}
	return c, nil
}

// Shutdown stops the edges, then the cores, each with SIGTERM. Stop the
// fleets first (end the context they were started with).
func (c *Cluster) Shutdown() {
	var wg sync.WaitGroup
	for _, p := range c.Edges {
		wg.Go(p.Stop)
	}
	wg.Wait()
	for _, p := range c.Cores {
		p.Resume()
		wg.Go(p.Stop)
	}
	wg.Wait()
}

// RunCluster starts a cluster, prints where to find it, and runs until
// ctx ends.
func RunCluster(ctx context.Context, cfg ClusterConfig) error {
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	c, err := StartCluster(runCtx, cfg)
	if err != nil {
		return err
	}
	out := cfg.Out
	if out == nil {
		out = io.Discard
	}
	fmt.Fprintf(out, "Weft is up: a core cluster of %d nodes, %d edges and %d simulated devices, each node its own process.\n\n",
		len(c.Cores), len(c.Edges), cfg.Devices)
	for _, p := range c.Cores {
		fmt.Fprintf(out, "  %-8s pid %-7d console http://%s/  sync %s  etcd %s\n", p.Name, p.pid(), p.Addrs["http"], p.Addrs["sync"], p.Peer)
	}
	for _, p := range c.Edges {
		fmt.Fprintf(out, "  %-8s pid %-7d API http://%s/api/v1  MQTT %s\n", p.Name, p.pid(), p.Addrs["http"], p.Addrs["mqtt"])
	}
	fmt.Fprintf(out, "\n  cluster  curl -H \"Authorization: Bearer $(cat %s)\" http://%s/api/v1/cluster\n",
		filepath.Join(cfg.DataDir, "admin.token"), c.Cores[0].Addrs["http"])
	fmt.Fprintf(out, "\nkill -9 a core's pid to see its edges move; Ctrl-C stops it all.\n")
	<-ctx.Done()
	cancel()
	for _, f := range c.Fleets {
		<-f.Done()
	}
	c.Shutdown()
	return nil
}

func (p *Proc) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}
