package gateway

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/store"
)

// dosAttacks are the attacks BenchmarkDoS measures a well-behaved device
// under; each starts an attack on e and returns its stop function.
var dosAttacks = []struct {
	name  string
	start func(b testing.TB, e *env) func()
}{
	{"none", func(testing.TB, *env) func() { return func() {} }},
	// Sockets that send nothing wait in the kernel (TCP_DEFER_ACCEPT)
	// until the first-byte deadline; the gateway sees them only then.
	{"silent_one_address_1100", func(b testing.TB, e *env) func() {
		h := hold(e, []int{2}, 1100, nil)
		waitFor(b, "attack", func() bool { return h.dials.Load() >= 1100 })
		return h.close
	}},
	{"silent_20_addresses_x64", func(b testing.TB, e *env) func() {
		h := hold(e, twentyAddresses(), 64, nil)
		waitFor(b, "attack", func() bool { return h.dials.Load() >= 20*64 })
		return h.close
	}},
	// Sockets that send the first byte of a ClientHello and stall are
	// handed over at once and meet the pending limits.
	{"pending_one_address_1100", func(b testing.TB, e *env) func() {
		h := hold(e, []int{2}, 1100, []byte{0x16})
		waitFor(b, "attack", func() bool { return h.dials.Load() > 3000 })
		return h.close
	}},
	{"pending_20_addresses_x64", func(b testing.TB, e *env) func() {
		h := hold(e, twentyAddresses(), 64, []byte{0x16})
		waitFor(b, "attack", func() bool { return h.dials.Load() > 3000 })
		return h.close
	}},
	{"slow_handshake_2x64", func(b testing.TB, e *env) func() {
		h := hold(e, []int{2, 4}, 64, []byte{0x16, 0x03, 0x01})
		waitFor(b, "attack", func() bool { return h.dials.Load() >= 128 })
		return h.close
	}},
	{"connect_loop", func(b testing.TB, e *env) func() {
		d := e.device(b, "loop-1", "pump")
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var refused atomic.Int64
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					raw, err := dialFrom(5, e.addr())
					if err != nil {
						continue
					}
					c := tls.Client(raw, e.clientTLS(d.cert))
					c.SetDeadline(time.Now().Add(5 * time.Second))
					c.Write(connectPacket(5, d.id, nil))
					if pk, err := readPacket(bufio.NewReader(c), 5); err == nil && pk.ReasonCode == 0x9F {
						refused.Add(1)
					}
					c.Close()
				}
			}()
		}
		waitFor(b, "attack", func() bool { return refused.Load() > 10 })
		return func() { close(stop); wg.Wait() }
	}},
	{"publish_flood", func(b testing.TB, e *env) func() {
		d := e.device(b, "flood-1", "pump")
		raw, err := dialFrom(6, e.addr())
		if err != nil {
			b.Fatal(err)
		}
		c := tls.Client(raw, e.clientTLS(d.cert))
		c.Write(connectPacket(5, d.id, nil))
		r := bufio.NewReader(c)
		readPacket(r, 5)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var refused atomic.Int64
		wg.Add(2)
		go func() { // read the answers
			defer wg.Done()
			for {
				pk, err := readPacket(r, 5)
				if err != nil {
					return
				}
				if pk.ReasonCode == 0x96 {
					refused.Add(1)
				}
			}
		}()
		go func() {
			defer wg.Done()
			payload := make([]byte, 1000)
			for i := 0; ; i++ {
				select {
				case <-stop:
					c.Close()
					return
				default:
				}
				if _, err := c.Write(publishPacket(5, "devices/flood-1/telemetry", 1, uint16(i%60000+1), payload, nil)); err != nil {
					return
				}
			}
		}()
		waitFor(b, "attack", func() bool { return refused.Load() > 1000 })
		return func() { close(stop); wg.Wait() }
	}},
}

// BenchmarkDoS measures a well-behaved device (connect, QoS 1 publish,
// PUBACK, disconnect: one op, each op another device) on its own address
// while each attack runs against a gateway with its default limits. The
// gateway runs in a child process (TestGatewayProcess), so its RSS,
// peak RSS and open descriptors are its own, and so does the attacker
// (TestAttackProcess); the three share the machine's cores.
func BenchmarkDoS(b *testing.B) {
	for _, a := range dosAttacks {
		b.Run(a.name, func(b *testing.B) {
			e := newEnv(b, nil)
			e.stop() // the gateway runs in a child process instead
			pid := e.gatewayProcess(b)
			ids := make([]string, b.N)
			for i := range ids {
				ids[i] = fmt.Sprintf("probe-%d", i)
				e.device(b, ids[i], "probe")
			}
			if err := e.probeAs(b, 3, "probe-warm"); err != nil {
				b.Fatal(err)
			}
			e.attackProcess(b, a.name)
			lat := make([]time.Duration, 0, b.N)
			queued := 0
			ok := 0
			b.ResetTimer()
			for i := range b.N {
				t0 := time.Now()
				if err := e.probeAs(b, 3, ids[i]); err == nil {
					ok++
					lat = append(lat, time.Since(t0))
				}
				b.StopTimer()
				queued += acceptQueue(e.addr())
				b.StartTimer()
			}
			b.StopTimer()
			slices.Sort(lat)
			if len(lat) > 0 {
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
			}
			b.ReportMetric(float64(queued)/float64(b.N), "accept-queue")
			b.ReportMetric(100*float64(ok)/float64(b.N), "success-%")
			b.ReportMetric(float64(procStatus(pid, "VmRSS"))/(1<<20), "rss-MiB")
			b.ReportMetric(float64(procStatus(pid, "VmHWM"))/(1<<20), "peak-rss-MiB")
			fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
			b.ReportMetric(float64(len(fds)), "fds")
		})
	}
}

// acceptQueue is the number of connections waiting in the accept queue
// of the listening socket at addr (Linux: rx_queue of its LISTEN line in
// /proc/net/tcp); 0 if unknown.
func acceptQueue(addr string) int {
	_, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 5 || f[3] != "0A" || !strings.HasSuffix(f[1], fmt.Sprintf(":%04X", p)) {
			continue
		}
		_, rx, _ := strings.Cut(f[4], ":")
		n, _ := strconv.ParseInt(rx, 16, 64)
		return int(n)
	}
	return 0
}

// procStatus is a size field (VmRSS, VmHWM) of /proc/pid/status, in
// bytes; 0 if unknown.
func procStatus(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == field+":" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// gatewayProcess starts a gateway with default limits, using e's
// certificates and a store of its own, in a child process running
// TestGatewayProcess, points e at it and returns its pid. It is stopped
// when b ends.
func (e *env) gatewayProcess(b *testing.B) int {
	dir := b.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestGatewayProcess$")
	cmd.Env = append(os.Environ(), "WEFT_TEST_GATEWAY_DIR="+dir, "WEFT_TEST_GATEWAY_CERTS="+e.dir)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { in.Close(); cmd.Wait() })
	waitFor(b, "gateway process", func() bool {
		a, err := os.ReadFile(filepath.Join(dir, "addr"))
		e.remote = string(a)
		return err == nil
	})
	return cmd.Process.Pid
}

// attackProcess runs attack name against e's gateway in a child process
// running TestAttackProcess, and returns once the attack is under way.
// It is stopped when b ends.
func (e *env) attackProcess(b *testing.B, name string) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestAttackProcess$")
	cmd.Env = append(os.Environ(), "WEFT_TEST_ATTACK="+name, "WEFT_TEST_GATEWAY_ADDR="+e.addr(), "WEFT_TEST_GATEWAY_CERTS="+e.dir)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { in.Close(); cmd.Wait() })
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if sc.Text() == "attacking" {
			go io.Copy(io.Discard, out)
			return
		}
	}
	b.Fatalf("attack %s did not start", name)
}

// TestAttackProcess is an attacker of BenchmarkDoS, run in a child
// process so that it does not share the measured device's process: it
// attacks until its standard input is closed.
func TestAttackProcess(t *testing.T) {
	name, addr, certDir := os.Getenv("WEFT_TEST_ATTACK"), os.Getenv("WEFT_TEST_GATEWAY_ADDR"), os.Getenv("WEFT_TEST_GATEWAY_CERTS")
	if name == "" {
		t.Skip("an attacker process of BenchmarkDoS")
	}
	auth, err := certs.Load(certDir)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := certs.Pool(auth.DeviceCA.PEM)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, dir: certDir, auth: auth, pool: pool, devs: map[string]*devCert{}, remote: addr}
	for _, a := range dosAttacks {
		if a.name == name {
			stop := a.start(t, e)
			fmt.Println("attacking")
			io.Copy(io.Discard, os.Stdin)
			stop()
			return
		}
	}
	t.Fatalf("no attack %q", name)
}

// TestGatewayProcess is the gateway of BenchmarkDoS, run in a child
// process: it serves until its standard input is closed.
func TestGatewayProcess(t *testing.T) {
	dir, certDir := os.Getenv("WEFT_TEST_GATEWAY_DIR"), os.Getenv("WEFT_TEST_GATEWAY_CERTS")
	if dir == "" {
		t.Skip("the gateway process of BenchmarkDoS")
	}
	auth, err := certs.Load(certDir)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := certs.LoadKeyPair(filepath.Join(certDir, "gateways", "gw-1.crt"), filepath.Join(certDir, "gateways", "gw-1.key"))
	if err != nil {
		t.Fatal(err)
	}
	pool, err := certs.Pool(auth.DeviceCA.PEM)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(store.Config{Dir: filepath.Join(dir, "store"), Name: testEdge, MinFreeBytes: -1, RetentionInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	srv, err := New(Config{Store: st, Name: testEdge, Addr: "127.0.0.1:0", Certificate: pair, DeviceCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	tmp := filepath.Join(dir, "addr.tmp")
	if err := os.WriteFile(tmp, []byte(srv.Addr().String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "addr")); err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, os.Stdin)
}

// twentyAddresses are 127.0.0.10 to 127.0.0.29, by their last byte.
func twentyAddresses() []int {
	var addrs []int
	for i := range 20 {
		addrs = append(addrs, 10+i)
	}
	return addrs
}

// BenchmarkQoS1Limits measures the gateway's QoS 1 rate with every limit
// checked (rates high enough never to refuse, so the checks cost but do
// not throttle) against every limit off, in the same run: 8 devices, 64
// messages of 200 bytes in flight each.
func BenchmarkQoS1Limits(b *testing.B) {
	for _, mode := range []string{"on", "off"} {
		b.Run(mode, func(b *testing.B) {
			e := newEnv(b, func(c *Config) {
				if mode == "on" {
					c.MessageRate, c.ByteRate, c.ConnectRate = 1e9, 1e12, 0
					return
				}
				c.MessageRate, c.ByteRate, c.ConnectRate = -1, -1, -1
				c.MaxTopicLength, c.MaxFilterLength, c.MaxSubscriptions = -1, -1, -1
			})
			const devices, window = 8, 64
			conns := make([]*tls.Conn, devices)
			readers := make([]*bufio.Reader, devices)
			for i := range conns {
				d := e.device(b, fmt.Sprintf("bench-%d", i), "pump")
				raw, err := dialFrom(20+i, e.addr())
				if err != nil {
					b.Fatal(err)
				}
				conns[i] = tls.Client(raw, e.clientTLS(d.cert))
				conns[i].Write(connectPacket(5, d.id, nil))
				readers[i] = bufio.NewReader(conns[i])
				if pk, err := readPacket(readers[i], 5); err != nil || pk.ReasonCode != 0 {
					b.Fatalf("connect: %v %#x", err, pk.ReasonCode)
				}
				defer conns[i].Close()
			}
			payload := make([]byte, 200)
			var left atomic.Int64
			left.Store(int64(b.N))
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			cpu0 := processCPU(b)
			b.ResetTimer()
			var wg sync.WaitGroup
			for i := range conns {
				wg.Add(1)
				go func() {
					defer wg.Done()
					sem := make(chan struct{}, window)
					done := make(chan struct{})
					sent := 0
					go func() {
						defer close(done)
						for {
							pk, err := readPacket(readers[i], 5)
							if err != nil {
								return
							}
							if pk.FixedHeader.Type == packets.Puback {
								if pk.ReasonCode != 0 {
									b.Errorf("puback %#x", pk.ReasonCode)
								}
								<-sem
							}
						}
					}()
					topic := fmt.Sprintf("devices/bench-%d/telemetry", i)
					for left.Add(-1) >= 0 {
						sem <- struct{}{}
						sent++
						conns[i].Write(publishPacket(5, topic, 1, uint16(sent%60000+1), payload, nil))
					}
					for range window {
						sem <- struct{}{} // every PUBACK in
					}
					conns[i].Close()
					<-done
				}()
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			// Clients and gateway share the process; the clients' part
			// is the same with limits on and off.
			b.ReportMetric(float64((processCPU(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/msg")
		})
	}
}
