package up

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/core"
	"github.com/weft-io/weft/device"
	"github.com/weft-io/weft/edge"
	"github.com/weft-io/weft/firmware"
	"github.com/weft-io/weft/internal/testenv/wait"
	"github.com/weft-io/weft/shadow"
	"github.com/weft-io/weft/sync/link"
	"github.com/weft-io/weft/sync/mirror"
	"github.com/weft-io/weft/sync/wire"
)

// BenchmarkFirmwareRollout rolls a release out to simulated devices (1000
// by default, WEFT_BENCH_ROLLOUT_DEVICES to change it) spread over two
// edges linked to one core, as in `weft up`: devices fetch the image over
// HTTPS with their certificates from their own edge, which has it from the
// core's /firmware by volume mirror. Each edge's link to the core runs
// through a UDP relay that counts the bytes each way, so the bytes are
// those of the link, QUIC headers, encryption and retransmissions
// included. Waves 1,10,50,100 %, soak 0, threshold 10 %, min-executed 5.
//
// Reported, per rollout: seconds from create to the rollout's end
// (s-create-to-end) and from publish (s-publish-to-end), MiB from core to
// each edge and back (MiB-down-edge1, MiB-up-edge1, ...), images-per-edge
// (the bytes down per edge over the image's size), the executed and
// failed devices, and the waves started. image=1KiB is the baseline: the
// rollout without the image's weight. fail=0.3 runs devices of which 30 %
// fail the new image's health check (weft up --firmware-fail 0.3): the
// rollout halts in its first wave.
//
//	go test ./up -run '^$' -bench FirmwareRollout -benchtime 1x -timeout 60m
func BenchmarkFirmwareRollout(b *testing.B) {
	devices := 1000
	if s := os.Getenv("WEFT_BENCH_ROLLOUT_DEVICES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 2 {
			b.Fatalf("WEFT_BENCH_ROLLOUT_DEVICES=%q", s)
		}
		devices = n
	}
	for _, c := range []struct {
		name  string
		image int
		fail  float64
	}{
		{"image=1KiB", 1 << 10, 0},
		{"image=16MiB", 16 << 20, 0},
		{"image=16MiB/fail=0.3", 16 << 20, 0.3},
	} {
		b.Run(c.name, func(b *testing.B) { benchRollout(b, devices, c.image, c.fail) })
	}
}

func benchRollout(b *testing.B, devices, imageSize int, fail float64) {
	ctx, cancel := context.WithCancel(context.Background())
	fab := startTwoEdges(b, ctx, devices, fail, 2)
	defer func() {
		cancel()
		fab.stop()
	}()
	priv, err := firmware.ReadPrivateKey(fab.key)
	if err != nil {
		b.Fatal(err)
	}
	reg := &firmware.Registry{Store: fab.core.Store(), Keys: func() (firmware.KeySet, error) { return fab.keys, nil }}
	base := "http://" + fab.core.HTTPAddr().String()
	api := func(method, path string, body any) firmware.Summary {
		var rd io.Reader
		if body != nil {
			j, _ := json.Marshal(body)
			rd = bytes.NewReader(j)
		}
		req, _ := http.NewRequestWithContext(ctx, method, base+path, rd)
		req.Header.Set("Authorization", "Bearer "+fab.token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		if resp.StatusCode >= 300 {
			b.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, out)
		}
		var s firmware.Summary
		json.Unmarshal(out, &s)
		return s
	}
	img := make([]byte, imageSize)
	var createToEnd, publishToEnd time.Duration
	var down, up [2]int64
	var last firmware.Summary
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		rand.Read(img)
		m := firmware.Manifest{Name: "bench-fw", Version: firmware.Version{Major: 1, Minor: uint64(i + 1)}, Class: "pump",
			SHA256: sha256.Sum256(img), Size: int64(len(img))}
		signed, err := firmware.Sign(m, priv)
		if err != nil {
			b.Fatal(err)
		}
		var d0, u0 [2]int64
		for j, r := range fab.relays {
			d0[j], u0[j] = r.down.Load(), r.in.Load()
		}
		b.StartTimer()
		t0 := time.Now()
		if _, err := reg.Publish(ctx, signed, bytes.NewReader(img)); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		s := api("POST", "/api/v1/firmware/rollouts", map[string]any{"release": "bench-fw@" + m.Version.String(),
			"target": "class:pump", "waves": []int{1, 10, 50, 100}, "failure_threshold": "10%", "min_executed": 5,
			"device_timeout": "10m", "wave_soak": "0s"})
		wait.For(b, 30*time.Minute, "the rollout's end", func() bool {
			last = api("GET", "/api/v1/firmware/rollouts/"+s.ID, nil)
			return last.State == firmware.Done || last.State == firmware.Halted
		})
		t2 := time.Now()
		b.StopTimer()
		createToEnd += t2.Sub(t1)
		publishToEnd += t2.Sub(t0)
		// What the link still carries of the rollout (the last status
		// reports' acknowledgements, a mirror's end) is small beside an
		// image; it lands in the next round or nowhere.
		for j, r := range fab.relays {
			down[j] += r.down.Load() - d0[j]
			up[j] += r.in.Load() - u0[j]
		}
		b.StartTimer()
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(createToEnd.Seconds()/n, "s-create-to-end")
	b.ReportMetric(publishToEnd.Seconds()/n, "s-publish-to-end")
	for j := range fab.relays {
		b.ReportMetric(float64(down[j])/n/(1<<20), fmt.Sprintf("MiB-down-edge%d", j+1))
		b.ReportMetric(float64(up[j])/n/(1<<20), fmt.Sprintf("MiB-up-edge%d", j+1))
	}
	b.ReportMetric(float64(down[0]+down[1])/2/n/float64(imageSize), "images-per-edge")
	c := last.Counts
	b.ReportMetric(float64(c.Succeeded+c.Failed+c.TimedOut+c.Rejected), "executed")
	b.ReportMetric(float64(c.Failed+c.TimedOut+c.Rejected), "failed")
	started := 0
	for _, w := range last.Waves {
		if w.State != "pending" {
			started++
		}
	}
	b.ReportMetric(float64(started), "waves-started")
	if fail == 0 && (last.State != firmware.Done || c.Succeeded != devices) {
		b.Fatalf("rollout ended %s: %+v", last.State, last.Counts)
	}
	if fail > 0 && last.State != firmware.Halted {
		b.Fatalf("rollout with failing devices ended %s: %+v", last.State, last.Counts)
	}
	b.Logf("rollout %s: %s; %s", last.ID, last.State, last.HaltReason)
}

// BenchmarkFirmwareMirror publishes a 16 MiB release at the core of two
// edges (two devices, no rollout) and counts the bytes each link carries
// down from the publish until the mirroring edges hold the release
// (MiB-down-edgeN-mirrored), and then over a window of 3 s more in which
// nothing changes at the core (MiB-down-edgeN-window): the goal is one
// image per mirroring edge, and nothing in the window. mirrors=1, where
// only the first edge mirrors /firmware, is the baseline of mirrors=2.
//
//	go test ./up -run '^$' -bench FirmwareMirror -benchtime 3x
func BenchmarkFirmwareMirror(b *testing.B) {
	for _, n := range []int{1, 2} {
		b.Run(fmt.Sprintf("mirrors=%d", n), func(b *testing.B) { benchMirror(b, n) })
	}
}

func benchMirror(b *testing.B, mirroring int) {
	ctx, cancel := context.WithCancel(context.Background())
	fab := startTwoEdges(b, ctx, 2, 0, mirroring)
	defer func() {
		cancel()
		fab.stop()
	}()
	priv, err := firmware.ReadPrivateKey(fab.key)
	if err != nil {
		b.Fatal(err)
	}
	reg := &firmware.Registry{Store: fab.core.Store(), Keys: func() (firmware.KeySet, error) { return fab.keys, nil }}
	const size = 16 << 20
	img := make([]byte, size)
	var mirrored, window [2]int64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rand.Read(img)
		m := firmware.Manifest{Name: "mirror-fw", Version: firmware.Version{Major: 1, Minor: uint64(i + 1)}, Class: "pump",
			SHA256: sha256.Sum256(img), Size: size}
		signed, err := firmware.Sign(m, priv)
		if err != nil {
			b.Fatal(err)
		}
		var d0 [2]int64
		for j, r := range fab.relays {
			d0[j] = r.down.Load()
		}
		if _, err := reg.Publish(ctx, signed, bytes.NewReader(img)); err != nil {
			b.Fatal(err)
		}
		d1 := d0
		for j, e := range fab.edges[:mirroring] {
			wait.For(b, 5*time.Minute, "the release at the edge", func() bool {
				_, err := (&firmware.Registry{Store: e.Store()}).Get(ctx, m.Name, m.Version)
				return err == nil
			})
			d1[j] = fab.relays[j].down.Load()
		}
		<-time.After(3 * time.Second) // the window: nothing changes at the core
		for j, r := range fab.relays {
			mirrored[j] += d1[j] - d0[j]
			window[j] += r.down.Load() - d1[j]
		}
	}
	b.StopTimer()
	n := float64(b.N)
	for j := range fab.relays {
		b.ReportMetric(float64(mirrored[j])/n/(1<<20), fmt.Sprintf("MiB-down-edge%d-mirrored", j+1))
		b.ReportMetric(float64(window[j])/n/(1<<20), fmt.Sprintf("MiB-down-edge%d-window", j+1))
	}
	b.ReportMetric(float64(mirrored[0]+mirrored[1]+window[0]+window[1])/float64(mirroring)/n/size, "images-per-edge")
}

// twoEdges is a core with two edges, each with its own simulated fleet and
// its link to the core through a counting relay.
type twoEdges struct {
	core   *core.Node
	edges  [2]*edge.Node
	relays [2]*udpRelay
	fleets [2]*device.Fleet
	key    string
	keys   firmware.KeySet
	token  string
}

// startTwoEdges starts the core, the edges and their fleets of devices/2
// pumps each, and waits for every device's shadow at the core. Edges
// below mirroring mirror /firmware (both in a rollout).
func startTwoEdges(b *testing.B, ctx context.Context, devices int, fail float64, mirroring int) *twoEdges {
	dir := b.TempDir()
	certsDir := filepath.Join(dir, "certs")
	auth, err := setupCerts(certsDir)
	if err != nil {
		b.Fatal(err)
	}
	names := [2]string{EdgeName, "edge-2"}
	hosts := []string{"127.0.0.1", "localhost"}
	if err := auth.EnsureNode(certs.EdgeNode, names[1], hosts); err != nil {
		b.Fatal(err)
	}
	if err := auth.EnsureGateway(names[1], hosts); err != nil {
		b.Fatal(err)
	}
	f := &twoEdges{}
	if f.key, f.keys, err = setupFirmwareKey(dir, certsDir); err != nil {
		b.Fatal(err)
	}
	if f.token, err = certs.IssueToken(auth.TokenKey, certs.TokenClaims{Subject: "bench", Role: certs.RoleAdmin}, 24*time.Hour); err != nil {
		b.Fatal(err)
	}
	if f.core, err = core.Start(ctx, core.Config{DataDir: filepath.Join(dir, CoreName), CertsDir: certsDir, Name: CoreName,
		Listen: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"}); err != nil {
		b.Fatal(err)
	}
	for i, name := range names {
		if f.relays[i], err = newUDPRelay(f.core.SyncAddr().String()); err != nil {
			f.stop()
			b.Fatal(err)
		}
		var mirrors []mirror.Spec
		if i < mirroring {
			mirrors = []mirror.Spec{{Volume: "firmware", Dir: wire.Down}}
		}
		if f.edges[i], err = edge.Start(ctx, edge.Config{DataDir: filepath.Join(dir, name), CertsDir: certsDir, Name: name,
			MQTTAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Core: f.relays[i].addr().String(), Mirrors: mirrors,
			Link: link.ClientConfig{MirrorInterval: 500 * time.Millisecond}, FirmwareAddr: "127.0.0.1:0"}); err != nil {
			f.stop()
			b.Fatal(err)
		}
		addr := f.edges[i].FirmwareAddr()
		if f.fleets[i], err = device.StartFleet(ctx, device.SimConfig{
			Dial: device.DialConfig{Addr: f.edges[i].MQTTAddr().String()}, CertsDir: certsDir,
			Count: devices / 2, IDPrefix: name, Classes: device.Classes[:1], Interval: time.Minute,
			Firmware: device.SimFirmware{Keys: f.keys, Dir: filepath.Join(dir, "fleet-"+name), FailRate: fail,
				HTTPS: "https://" + addr.String()},
		}); err != nil {
			f.stop()
			b.Fatal(err)
		}
	}
	// The core targets the devices its shadows hold.
	seen := map[string]bool{}
	wait.For(b, 10*time.Minute, "every device in the core's shadows", func() bool {
		for _, fl := range f.fleets {
			for _, id := range fl.IDs() {
				if !seen[id] {
					if d, err := shadow.Get(ctx, f.core.Store(), id); err == nil && d.Firmware != "" {
						seen[id] = true
					}
				}
			}
		}
		return len(seen) == 2*(devices/2)
	})
	return f
}

// stop stops the fleets (their context must have ended), then the
// listeners, the edges, the relays and the core.
func (f *twoEdges) stop() {
	ctx := context.Background()
	for i := range f.edges {
		if f.fleets[i] != nil {
			<-f.fleets[i].Done()
		}
		if f.edges[i] != nil {
			f.edges[i].Shutdown(ctx)
		}
		if f.relays[i] != nil {
			f.relays[i].close()
		}
	}
	if f.core != nil {
		f.core.Shutdown(ctx)
	}
}

// udpRelay forwards the datagrams of one client (an edge's QUIC link) to
// a target (the core) and back, counting the bytes each way.
type udpRelay struct {
	pc       net.PacketConn
	up       *net.UDPConn
	client   atomic.Pointer[net.Addr]
	down, in atomic.Int64 // bytes target -> client, client -> target
}

func newUDPRelay(target string) (*udpRelay, error) {
	raddr, err := net.ResolveUDPAddr("udp", target)
	if err != nil {
		return nil, err
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	up, err := net.DialUDP("udp", nil, raddr)
	if err != nil {
		pc.Close()
		return nil, err
	}
	for _, c := range []interface{ SetReadBuffer(int) error }{pc.(*net.UDPConn), up} {
		c.SetReadBuffer(8 << 20)
	}
	r := &udpRelay{pc: pc, up: up}
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, addr, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			r.client.Store(&addr)
			if _, err := up.Write(buf[:n]); err == nil {
				r.in.Add(int64(n))
			}
		}
	}()
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := up.Read(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue // an ICMP error from the target: go on
			}
			if a := r.client.Load(); a != nil {
				if _, err := pc.WriteTo(buf[:n], *a); err == nil {
					r.down.Add(int64(n))
				}
			}
		}
	}()
	return r, nil
}

func (r *udpRelay) addr() net.Addr { return r.pc.LocalAddr() }

func (r *udpRelay) close() {
	r.pc.Close()
	r.up.Close()
}
