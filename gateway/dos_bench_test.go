package gateway

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// rssBytes is this process's resident set size (Linux), 0 if unknown.
func rssBytes() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// dosAttacks are the attacks BenchmarkDoS measures a well-behaved device
// under; each starts an attack on e and returns its stop function.
var dosAttacks = []struct {
	name  string
	start func(b *testing.B, e *env) func()
}{
	{"none", func(*testing.B, *env) func() { return func() {} }},
	{"pending_one_address_1100", func(b *testing.B, e *env) func() {
		h := hold(e, []int{2}, 1100, nil)
		waitFor(b, "attack", func() bool { return e.srv.Metrics().Refusals(RefuseMaxPendingPerIP) > 1000 })
		return h.close
	}},
	{"pending_20_addresses_x64", func(b *testing.B, e *env) func() {
		var addrs []int
		for i := range 20 {
			addrs = append(addrs, 10+i)
		}
		h := hold(e, addrs, 64, nil)
		waitFor(b, "attack", func() bool { return e.srv.ln.pending.Load() >= DefaultMaxPending-1 })
		return h.close
	}},
	{"slow_handshake_2x64", func(b *testing.B, e *env) func() {
		h := hold(e, []int{2, 4}, 64, []byte{0x16, 0x03, 0x01})
		waitFor(b, "attack", func() bool { return e.srv.ln.pending.Load() >= 100 })
		return h.close
	}},
	{"connect_loop", func(b *testing.B, e *env) func() {
		d := e.device(b, "loop-1", "pump")
		stop := make(chan struct{})
		var wg sync.WaitGroup
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
					readPacket(bufio.NewReader(c), 5)
					c.Close()
				}
			}()
		}
		waitFor(b, "attack", func() bool { return e.srv.Metrics().Refusals(RefuseConnectRate) > 10 })
		return func() { close(stop); wg.Wait() }
	}},
	{"publish_flood", func(b *testing.B, e *env) func() {
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
		wg.Add(2)
		go func() { // read and drop the answers
			defer wg.Done()
			for {
				if _, err := readPacket(r, 5); err != nil {
					return
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
		waitFor(b, "attack", func() bool { return e.srv.Metrics().PublishRefusals("") > 1000 })
		return func() { close(stop); wg.Wait() }
	}},
}

// BenchmarkDoS measures a well-behaved device (connect, QoS 1 publish,
// PUBACK, disconnect: one op) on its own address while each attack runs
// against the gateway with its default limits. It reports the device's
// success rate and latency, and the process's RSS and goroutines, which
// include the attackers' own side of the sockets (same process).
func BenchmarkDoS(b *testing.B) {
	for _, a := range dosAttacks {
		b.Run(a.name, func(b *testing.B) {
			e := newEnv(b, func(c *Config) { c.ConnectRate = 0 }) // default limits
			// A device connects once per op: each op is another device,
			// within its connect rate.
			ids := make([]string, b.N)
			for i := range ids {
				ids[i] = fmt.Sprintf("probe-%d", i)
				e.device(b, ids[i], "probe")
			}
			e.probe(b, 3) // caches warm
			stop := a.start(b, e)
			defer stop()
			lat := make([]time.Duration, 0, b.N)
			ok := 0
			b.ResetTimer()
			for i := range b.N {
				t0 := time.Now()
				if err := e.probeAs(b, 3, ids[i]); err == nil {
					ok++
					lat = append(lat, time.Since(t0))
				}
			}
			b.StopTimer()
			slices.Sort(lat)
			if len(lat) > 0 {
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
			}
			b.ReportMetric(100*float64(ok)/float64(b.N), "success-%")
			b.ReportMetric(float64(rssBytes())/(1<<20), "rss-MiB")
			b.ReportMetric(float64(runtime.NumGoroutine()), "goroutines")
			b.ReportMetric(float64(e.tracked()), "gw-conns")
		})
	}
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
		})
	}
}
