package gateway

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/weft-io/weft/internal/plainmqtt"
	"github.com/weft-io/weft/store"
)

// benchDevices is how many devices the gateway benchmarks connect.
const benchDevices = 100

// benchConns connects benchDevices raw MQTT 5 TLS clients to the gateway
// (target "weft", default limits, every message durable) or to plain
// mochi-mqtt (target "mochi": TLS, no hooks, no persistence). Device i
// is w1-<i>.
func benchConns(b *testing.B, target string) (*env, []*tls.Conn, []*bufio.Reader) {
	e := newEnv(b, nil)
	addr := e.addr()
	if target == "mochi" {
		br, err := plainmqtt.Start("127.0.0.1:0", *e.pair.Certificate(), e.pool)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { br.Close() })
		addr = br.Addr().String()
	}
	conns := make([]*tls.Conn, benchDevices)
	readers := make([]*bufio.Reader, benchDevices)
	for i := range conns {
		d := e.device(b, fmt.Sprintf("w1-%d", i), "pump")
		raw, err := dialFrom(2+i%50, addr)
		if err != nil {
			b.Fatal(err)
		}
		conns[i] = tls.Client(raw, e.clientTLS(d.cert))
		b.Cleanup(func() { conns[i].Close() })
		conns[i].Write(connectPacket(5, d.id, nil))
		readers[i] = bufio.NewReader(conns[i])
		if pk, err := readPacket(readers[i], 5); err != nil || pk.ReasonCode != 0 {
			b.Fatalf("connect: %v %#x", err, pk.ReasonCode)
		}
	}
	return e, conns, readers
}

// storedAll waits until the gateway's store holds at least n messages of
// the bench devices in /telemetry/by_device, polling with a deadline.
func storedAll(b *testing.B, e *env, n uint64) {
	deadline := time.Now().Add(time.Minute)
	for {
		var stored uint64
		for i := range benchDevices {
			lo, hi, err := e.st.Stream(store.ByDeviceStream).Bounds(context.Background(), fmt.Sprintf("w1-%d", i), 0)
			if err != nil {
				b.Fatal(err)
			}
			stored += hi - lo
		}
		if stored >= n {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("stored %d of %d", stored, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// BenchmarkWindow1 is the typical device against the gateway and against
// plain mochi-mqtt (TLS, no hooks, no persistence) in the same run: 100
// mTLS devices, each publishing QoS 1 messages of 200 bytes one at a
// time, waiting for each PUBACK. The gateway runs with its default
// limits and every message durable; the clients are raw MQTT 5 over TLS
// in this process, cheap enough that the server's cost shows.
//
//	go test ./gateway -run '^$' -bench Window1 -benchtime 20000x -cpuprofile cpu.out
func BenchmarkWindow1(b *testing.B) {
	for _, target := range []string{"mochi", "weft"} {
		b.Run(target, func(b *testing.B) {
			e, conns, readers := benchConns(b, target)
			payload := make([]byte, 200)
			var left atomic.Int64
			left.Store(int64(b.N))
			lats := make([][]time.Duration, len(conns))
			b.SetBytes(int64(len(payload)))
			cpu0 := processCPU(b)
			b.ResetTimer()
			var wg sync.WaitGroup
			for i := range conns {
				wg.Add(1)
				go func() {
					defer wg.Done()
					topic := fmt.Sprintf("devices/w1-%d/telemetry", i)
					for id := 1; left.Add(-1) >= 0; id = id%60000 + 1 {
						t0 := time.Now()
						conns[i].Write(publishPacket(5, topic, 1, uint16(id), payload, nil))
						pk, err := readPacket(readers[i], 5)
						if err != nil || pk.FixedHeader.Type != packets.Puback || pk.ReasonCode != 0 {
							b.Errorf("device %d: %v %v %#x", i, err, pk.FixedHeader.Type, pk.ReasonCode)
							return
						}
						lats[i] = append(lats[i], time.Since(t0))
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			// Clients and server share the process: the server's part
			// is the difference between the two targets.
			b.ReportMetric(float64((processCPU(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/msg")
			reportLatencies(b, lats)
			if target == "weft" {
				storedAll(b, e, uint64(b.N)) // every acknowledged message is stored
			}
		})
	}
}

// BenchmarkQoS0 has the 100 devices publish QoS 0 messages of 200 bytes
// as fast as their connections take them; msgs/s is the clients' rate of
// sending, and for the gateway the run ends only once every message is
// in the store.
//
//	go test ./gateway -run '^$' -bench QoS0 -benchtime 100000x
func BenchmarkQoS0(b *testing.B) {
	for _, target := range []string{"mochi", "weft"} {
		b.Run(target, func(b *testing.B) {
			e, conns, _ := benchConns(b, target)
			payload := make([]byte, 200)
			var left atomic.Int64
			left.Store(int64(b.N))
			b.SetBytes(int64(len(payload)))
			cpu0 := processCPU(b)
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for i := range conns {
				wg.Add(1)
				go func() {
					defer wg.Done()
					pk := publishPacket(5, fmt.Sprintf("devices/w1-%d/telemetry", i), 0, 0, payload, nil)
					for left.Add(-1) >= 0 {
						if _, err := conns[i].Write(pk); err != nil {
							b.Errorf("device %d: %v", i, err)
							return
						}
					}
				}()
			}
			wg.Wait()
			sent := time.Since(start)
			if target == "weft" {
				storedAll(b, e, uint64(b.N))
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/sent.Seconds(), "sent-msgs/s")
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			b.ReportMetric(float64((processCPU(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/msg")
		})
	}
}

// BenchmarkRate5000 offers a fixed load of 5,000 QoS 1 messages a second
// (50 a second from each of the 100 devices, one in flight) and reports
// the publish latency, from the moment each message was due to its
// PUBACK (a late PUBACK delays the next message, and that delay counts).
//
//	go test ./gateway -run '^$' -bench Rate5000 -benchtime 20000x
func BenchmarkRate5000(b *testing.B) {
	const rate = 5000
	for _, target := range []string{"mochi", "weft"} {
		b.Run(target, func(b *testing.B) {
			e, conns, readers := benchConns(b, target)
			payload := make([]byte, 200)
			per := max(1, b.N/len(conns))
			every := time.Duration(len(conns)) * time.Second / rate
			lats := make([][]time.Duration, len(conns))
			b.SetBytes(int64(len(payload)))
			cpu0 := processCPU(b)
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for i := range conns {
				wg.Add(1)
				go func() {
					defer wg.Done()
					topic := fmt.Sprintf("devices/w1-%d/telemetry", i)
					// Devices start spread over one interval.
					due := start.Add(every * time.Duration(i) / time.Duration(len(conns)))
					for n := range per {
						if d := time.Until(due); d > 0 {
							time.Sleep(d) // pacing the offered load, not waiting for a result
						}
						conns[i].Write(publishPacket(5, topic, 1, uint16(n%60000+1), payload, nil))
						pk, err := readPacket(readers[i], 5)
						if err != nil || pk.FixedHeader.Type != packets.Puback || pk.ReasonCode != 0 {
							b.Errorf("device %d: %v %v %#x", i, err, pk.FixedHeader.Type, pk.ReasonCode)
							return
						}
						lats[i] = append(lats[i], time.Since(due))
						due = due.Add(every)
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			n := per * len(conns)
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "msgs/s")
			b.ReportMetric(float64((processCPU(b)-cpu0).Microseconds())/float64(n), "cpu-µs/msg")
			reportLatencies(b, lats)
			if target == "weft" {
				storedAll(b, e, uint64(n))
			}
		})
	}
}

// reportLatencies reports the median and 99th percentile of lats.
func reportLatencies(b *testing.B, lats [][]time.Duration) {
	all := slices.Concat(lats...)
	if len(all) == 0 {
		return
	}
	slices.Sort(all)
	b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
}

// processCPU is the CPU time (user and system) this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
