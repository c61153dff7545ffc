package tailnet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync/atomic"

	"tailscale.com/ipn/ipnstate"
	"tailscale.com/tsnet"
)

// AuthKeyEnv is the environment variable an auth key is read from when
// Config gives none; tsnet's own TS_AUTHKEY is read after it.
const AuthKeyEnv = "WEFT_TAILNET_AUTHKEY"

// Config configures a node's presence on a tailnet. Dir and Hostname are
// required.
type Config struct {
	// Dir holds the node's tailnet state: its keys and its identity on
	// the tailnet (a weft node uses <data>/tailnet). Keep it: a node
	// that loses it joins again as a new machine, with a new address.
	Dir string
	// Hostname is the node's name on the tailnet, which edges dial.
	Hostname string
	// AuthKey joins the node to the tailnet the first time; once joined
	// the state in Dir is used and the key is not. Default: the content
	// of AuthKeyFile, else $WEFT_TAILNET_AUTHKEY, else $TS_AUTHKEY; with
	// none, the log shows a URL at which to log the node in.
	AuthKey string
	// AuthKeyFile is a file holding the auth key (surrounding blanks
	// ignored), read when AuthKey is empty.
	AuthKeyFile string
	// ControlURL is the coordination server's URL. Default: Tailscale's
	// (or $TS_CONTROL_URL); a Headscale server's URL, say.
	ControlURL string
	// Logger receives the node's logs; Tailscale's own, verbose, at debug
	// level. Nil discards them.
	Logger *slog.Logger
}

// Node is this node on its tailnet. It starts on first use (Up,
// ListenPacket or DialPacket) and stops with Close.
type Node struct {
	ts      *tsnet.Server
	log     *slog.Logger
	started atomic.Bool
}

// New checks cfg and reads the auth key; it starts nothing.
func New(cfg Config) (*Node, error) {
	if cfg.Dir == "" || cfg.Hostname == "" {
		return nil, errors.New("tailnet: a node needs a state directory and a hostname")
	}
	key := cfg.AuthKey
	if key == "" && cfg.AuthKeyFile != "" {
		b, err := os.ReadFile(cfg.AuthKeyFile)
		if err != nil {
			return nil, fmt.Errorf("tailnet: auth key: %w", err)
		}
		if key = strings.TrimSpace(string(b)); key == "" {
			return nil, fmt.Errorf("tailnet: auth key: %s is empty", cfg.AuthKeyFile)
		}
	}
	if key == "" {
		key = os.Getenv(AuthKeyEnv)
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	lg = lg.With("component", "tailnet", "hostname", cfg.Hostname)
	ts := &tsnet.Server{
		Dir:        cfg.Dir,
		Hostname:   cfg.Hostname,
		AuthKey:    key,
		ControlURL: cfg.ControlURL,
		UserLogf: func(format string, args ...any) {
			lg.Info(strings.TrimSpace(fmt.Sprintf(format, args...)))
		},
		Logf: func(format string, args ...any) {
			if lg.Enabled(context.Background(), slog.LevelDebug) {
				lg.Debug(strings.TrimSpace(fmt.Sprintf(format, args...)))
			}
		},
	}
	return &Node{ts: ts, log: lg}, nil
}

// Up joins the tailnet, if the node has not yet, and waits until it is
// running there or ctx ends. It returns the node's status.
func (n *Node) Up(ctx context.Context) (*ipnstate.Status, error) {
	n.started.Store(true)
	st, err := n.ts.Up(ctx)
	if err != nil {
		return nil, fmt.Errorf("tailnet: %w", err)
	}
	return st, nil
}

// Addr is the node's IPv4 address on the tailnet, once it is up.
func (n *Node) Addr(ctx context.Context) (netip.Addr, error) {
	st, err := n.Up(ctx)
	if err != nil {
		return netip.Addr{}, err
	}
	return selfAddr(st)
}

func selfAddr(st *ipnstate.Status) (netip.Addr, error) {
	for _, ip := range st.TailscaleIPs {
		if ip.Is4() {
			return ip, nil
		}
	}
	return netip.Addr{}, errors.New("tailnet: the node has no IPv4 address on the tailnet")
}

// ListenPacket listens on the node's tailnet address at the port of addr
// (host:port); addr's host is not used unless it is that address. It
// waits for the node to be up.
func (n *Node) ListenPacket(ctx context.Context, addr string) (net.PacketConn, error) {
	host, port, err := splitPort(addr)
	if err != nil {
		return nil, err
	}
	ip, err := n.Addr(ctx)
	if err != nil {
		return nil, err
	}
	if h, err := netip.ParseAddr(host); err == nil && h != ip && !h.IsLoopback() && !h.IsUnspecified() {
		n.log.Warn("listening on the tailnet address instead", "asked", host, "addr", ip)
	}
	pc, err := n.ts.ListenPacket("udp4", netip.AddrPortFrom(ip, port).String())
	if err != nil {
		return nil, fmt.Errorf("tailnet: listen %s: %w", addr, err)
	}
	n.log.Info("listening on the tailnet", "addr", pc.LocalAddr().String())
	return packetConn{pc}, nil
}

// DialPacket returns a socket on the node's tailnet address and the
// tailnet address of addr, whose host is a peer's name (its hostname or
// MagicDNS name, short or full) or a tailnet IP. It waits for the node
// to be up.
func (n *Node) DialPacket(ctx context.Context, addr string) (net.PacketConn, net.Addr, error) {
	host, port, err := splitPort(addr)
	if err != nil {
		return nil, nil, err
	}
	st, err := n.Up(ctx)
	if err != nil {
		return nil, nil, err
	}
	ip, err := Resolve(st, host)
	if err != nil {
		return nil, nil, err
	}
	self, err := selfAddr(st)
	if err != nil {
		return nil, nil, err
	}
	pc, err := n.ts.ListenPacket("udp4", netip.AddrPortFrom(self, 0).String())
	if err != nil {
		return nil, nil, fmt.Errorf("tailnet: dial %s: %w", addr, err)
	}
	return packetConn{pc}, net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, port)), nil
}

// Resolve finds the IPv4 address of the peer named host in st: an IP is
// taken as it is; otherwise a peer whose MagicDNS name is host wins over
// one whose name's first label is host, which wins over one whose
// hostname is host (names compared without case).
func Resolve(st *ipnstate.Status, host string) (netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip, nil
	}
	host = strings.TrimSuffix(host, ".")
	best, rank := netip.Addr{}, 0
	for _, p := range st.Peer {
		dns := strings.TrimSuffix(p.DNSName, ".")
		r := 0
		switch {
		case strings.EqualFold(dns, host):
			r = 3
		case strings.EqualFold(strings.SplitN(dns, ".", 2)[0], host):
			r = 2
		case strings.EqualFold(p.HostName, host):
			r = 1
		}
		if r <= rank {
			continue
		}
		for _, ip := range p.TailscaleIPs {
			if ip.Is4() {
				best, rank = ip, r
				break
			}
		}
	}
	if rank == 0 {
		return netip.Addr{}, fmt.Errorf("tailnet: no peer named %q with an IPv4 address on the tailnet", host)
	}
	return best, nil
}

// Close leaves the tailnet (the node stays a member: its state is kept)
// and closes every socket it gave.
func (n *Node) Close() error {
	if !n.started.Load() || n.ts.Start() != nil {
		return nil
	}
	return n.ts.Close()
}

// packetConn is a socket on the tailnet. Its buffers are the userspace
// network stack's, not the kernel's: there is nothing to size, and saying
// so keeps quic-go from warning that it could not.
type packetConn struct{ net.PacketConn }

func (packetConn) SetReadBuffer(int) error  { return nil }
func (packetConn) SetWriteBuffer(int) error { return nil }

func splitPort(addr string) (string, uint16, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("tailnet: %w", err)
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("tailnet: %s: port %q: %w", addr, p, err)
	}
	return host, uint16(port), nil
}
