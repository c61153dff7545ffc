package tailnet_test

import (
	"context"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/core"
	"github.com/weft-io/weft/edge"
	"github.com/weft-io/weft/internal/testenv"
	"github.com/weft-io/weft/store"
	"github.com/weft-io/weft/sync/link"
	"github.com/weft-io/weft/sync/tailnet"
	"tailscale.com/ipn/ipnstate"
	"tailscale.com/net/netns"
	"tailscale.com/tailcfg"
	"tailscale.com/tstest/integration"
	"tailscale.com/tstest/integration/testcontrol"
	"tailscale.com/types/key"
	"tailscale.com/types/logger"
)

var _ link.Transport = (*tailnet.Node)(nil)

const authKey = "tskey-weft-test"

// startControl runs a coordination server and a DERP relay with STUN on
// loopback, as tsnet's own tests do; nodes must present authKey.
func startControl(t *testing.T) string {
	t.Helper()
	netns.SetEnabled(false) // no socket marks on loopback (as tsnet's tests)
	t.Cleanup(func() { netns.SetEnabled(true) })
	control := &testcontrol.Server{
		DERPMap:        integration.RunDERPAndSTUN(t, logger.Discard, "127.0.0.1"),
		DNSConfig:      &tailcfg.DNSConfig{Proxied: true},
		MagicDNSDomain: "tail-scale.ts.net",
		RequireAuthKey: authKey,
		Logf:           logger.Discard,
	}
	control.HTTPTestServer = httptest.NewUnstartedServer(control)
	control.HTTPTestServer.Start()
	t.Cleanup(control.HTTPTestServer.Close)
	return control.HTTPTestServer.URL
}

// TestLinkOverTailnet: a core and an edge, each its own node on a tailnet
// of an in-process control server and DERP relay; the edge dials the core
// by its tailnet hostname, and a record appended at the edge reaches the
// core at the same offset.
func TestLinkOverTailnet(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a tailnet")
	}
	// Every wait is bounded: joining the tailnet here, then the
	// replication (testenv.WaitEqual).
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	url := startControl(t)
	f := testenv.New(t)
	// The edge dials the core by its tailnet name: the core's certificate
	// must carry it.
	iss, err := f.Auth.IssueNode(certs.CoreNode, "core1", []string{"weft-core"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.Auth.Save(iss); err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(f.Dir, "authkey")
	if err := os.WriteFile(keyFile, []byte(authKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	coreNet := newNode(t, tailnet.Config{Dir: filepath.Join(f.DataDir("core1"), "tailnet"), Hostname: "weft-core",
		AuthKeyFile: keyFile, ControlURL: url, Logger: f.Logger})
	// Up before the core starts, so that its wait for the tailnet (with
	// testenv's unbounded context) returns at once.
	coreIP, err := coreNet.Addr(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := f.StartCore("core1", core.Config{Transport: coreNet})
	sync := netip.MustParseAddrPort(c.SyncAddr().String())
	if sync.Addr() != coreIP {
		t.Fatalf("the core listens on %s, not on its tailnet address %s", sync, coreIP)
	}

	t.Setenv(tailnet.AuthKeyEnv, authKey)
	edgeNet := newNode(t, tailnet.Config{Dir: filepath.Join(f.DataDir("edge1"), "tailnet"), Hostname: "weft-edge",
		ControlURL: url, Logger: f.Logger})
	if _, err := edgeNet.Up(ctx); err != nil {
		t.Fatal(err)
	}
	e := f.StartEdge("edge1", edge.Config{Core: "weft-core:" + strconv.Itoa(int(sync.Port())), Link: link.ClientConfig{Transport: edgeNet}})

	off, err := e.Store().Stream(store.UplinkStream).Append(ctx, "edge1",
		store.Message{Key: []byte("edge1"), Value: []byte(`{"over":"the tailnet"}`)})
	if err != nil {
		t.Fatal(err)
	}
	testenv.WaitEqual(t, e.Store(), c.Store(), 2*time.Minute, store.UplinkStream)
	at := off[0]
	msgs, err := c.Store().Stream(store.UplinkStream).Read(ctx, "edge1", at.Partition, at.Offset, store.ReadOptions{Limit: 1})
	if err != nil || len(msgs) != 1 || msgs[0].Offset != at.Offset || string(msgs[0].Value) != `{"over":"the tailnet"}` {
		t.Fatalf("the core's record at %+v: %v (%v)", at, msgs, err)
	}
	links := c.Links()
	if len(links) != 1 || links[0].Peer != "edge1" || !links[0].Connected {
		t.Fatalf("the core's links: %+v", links)
	}
}

func newNode(t *testing.T, cfg tailnet.Config) *tailnet.Node {
	t.Helper()
	n, err := tailnet.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

func TestResolve(t *testing.T) {
	peer := func(host, dns, ip string) *ipnstate.PeerStatus {
		return &ipnstate.PeerStatus{HostName: host, DNSName: dns, TailscaleIPs: []netip.Addr{netip.MustParseAddr("fd7a:115c:a1e0::1"), netip.MustParseAddr(ip)}}
	}
	st := &ipnstate.Status{Peer: map[key.NodePublic]*ipnstate.PeerStatus{
		key.NewNode().Public(): peer("core", "core-1.tail-scale.ts.net.", "100.64.0.1"),
		key.NewNode().Public(): peer("box", "core.tail-scale.ts.net.", "100.64.0.2"),
		key.NewNode().Public(): peer("edge", "edge.tail-scale.ts.net.", "100.64.0.3"),
	}}
	for _, tc := range []struct{ host, want string }{
		{"core", "100.64.0.2"}, // the MagicDNS label wins over the hostname
		{"CORE-1", "100.64.0.1"},
		{"core-1.tail-scale.ts.net", "100.64.0.1"},
		{"core-1.tail-scale.ts.net.", "100.64.0.1"},
		{"box", "100.64.0.2"},
		{"100.64.0.9", "100.64.0.9"},
		{"nobody", ""},
	} {
		ip, err := tailnet.Resolve(st, tc.host)
		if tc.want == "" {
			if err == nil {
				t.Errorf("%s: %s, want an error", tc.host, ip)
			}
			continue
		}
		if err != nil || ip.String() != tc.want {
			t.Errorf("%s: %s (%v), want %s", tc.host, ip, err, tc.want)
		}
	}
}
