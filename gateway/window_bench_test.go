package gateway

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/weft-io/weft/internal/plainmqtt"
	"github.com/weft-io/weft/store"
)

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
			e := newEnv(b, nil)
			addr := e.addr()
			if target == "mochi" {
				br, err := plainmqtt.Start("127.0.0.1:0", *e.pair.Certificate(), e.pool)
				if err != nil {
					b.Fatal(err)
				}
				defer br.Close()
				addr = br.Addr().String()
			}
			const devices = 100
			conns := make([]*tls.Conn, devices)
			readers := make([]*bufio.Reader, devices)
			for i := range conns {
				d := e.device(b, fmt.Sprintf("w1-%d", i), "pump")
				raw, err := dialFrom(2+i%50, addr)
				if err != nil {
					b.Fatal(err)
				}
				conns[i] = tls.Client(raw, e.clientTLS(d.cert))
				defer conns[i].Close()
				conns[i].Write(connectPacket(5, d.id, nil))
				readers[i] = bufio.NewReader(conns[i])
				if pk, err := readPacket(readers[i], 5); err != nil || pk.ReasonCode != 0 {
					b.Fatalf("connect: %v %#x", err, pk.ReasonCode)
				}
			}
			payload := make([]byte, 200)
			var left atomic.Int64
			left.Store(int64(b.N))
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
						conns[i].Write(publishPacket(5, topic, 1, uint16(id), payload, nil))
						pk, err := readPacket(readers[i], 5)
						if err != nil || pk.FixedHeader.Type != packets.Puback || pk.ReasonCode != 0 {
							b.Errorf("device %d: %v %v %#x", i, err, pk.FixedHeader.Type, pk.ReasonCode)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			// Clients and server share the process: the server's part
			// is the difference between the two targets.
			b.ReportMetric(float64((processCPU(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/msg")
			if target == "weft" {
				// Every acknowledged message is stored.
				var stored uint64
				for i := range devices {
					lo, hi, err := e.st.Stream(store.ByDeviceStream).Bounds(b.Context(), fmt.Sprintf("w1-%d", i), 0)
					if err != nil {
						b.Fatal(err)
					}
					stored += hi - lo
				}
				if stored < uint64(b.N) {
					b.Fatalf("stored %d of %d", stored, b.N)
				}
			}
		})
	}
}

// processCPU is the CPU time (user and system) this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
