package testenv

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weft-io/weft/core"
	"github.com/weft-io/weft/edge"
	"github.com/weft-io/weft/store"
)

// byteRelay forwards the UDP datagrams of one client to a target and
// counts the bytes each way, with the IP and UDP headers (28 bytes a
// datagram over IPv4).
type byteRelay struct {
	ln       *net.UDPConn
	target   *net.UDPAddr
	up, down atomic.Int64
	mu       sync.Mutex
	out      *net.UDPConn
}

func newByteRelay(tb testing.TB, target string) *byteRelay {
	ta, err := net.ResolveUDPAddr("udp", target)
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	r := &byteRelay{ln: ln, target: ta}
	tb.Cleanup(func() {
		ln.Close()
		r.mu.Lock()
		if r.out != nil {
			r.out.Close()
		}
		r.mu.Unlock()
	})
	go r.run()
	return r
}

func (r *byteRelay) run() {
	buf := make([]byte, 64<<10)
	for {
		n, client, err := r.ln.ReadFromUDP(buf)
		if err != nil {
			return
		}
		r.mu.Lock()
		if r.out == nil {
			out, err := net.DialUDP("udp", nil, r.target)
			if err != nil {
				r.mu.Unlock()
				return
			}
			r.out = out
			go func() {
				b := make([]byte, 64<<10)
				for {
					n, err := out.Read(b)
					if err != nil {
						return
					}
					r.down.Add(int64(n + 28))
					r.ln.WriteToUDP(b[:n], client)
				}
			}()
		}
		out := r.out
		r.mu.Unlock()
		r.up.Add(int64(n + 28))
		out.Write(buf[:n])
	}
}

// BenchmarkWireBytesPerRecord sends b.N gateway-like records (a small
// JSON payload and the envelope's headers), one every 5 ms, up an idle
// edge's link and counts the UDP bytes (with IP and UDP headers) each way
// per record: the link uncapped without a linger and with its default
// one (50 ms), and capped at 1 MB/s (the default linger of 200 ms).
// Keepalives are counted too.
func BenchmarkWireBytesPerRecord(b *testing.B) {
	for _, link := range []string{"uncapped-no-linger", "uncapped", "capped"} {
		b.Run(link, func(b *testing.B) {
			f := New(b)
			c := f.StartCore("core1", core.Config{})
			relay := newByteRelay(b, c.SyncAddr().String())
			cfg := edge.Config{Core: relay.ln.LocalAddr().String()}
			switch link {
			case "uncapped-no-linger":
				cfg.Link.Linger = -1
			case "capped":
				cfg.Link.RateLimit = 1 << 20
			}
			e := f.StartEdge("edge1", cfg)
			s := e.Store().Stream(store.UplinkStream)
			ctx := context.Background()
			put := func(i int) {
				m := store.Message{
					Value: fmt.Appendf(nil, `{"temp":%d.%d,"hum":%d,"seq":%d}`, 20+i%7, i%10, 40+i%13, i),
					Headers: map[string]string{"device": fmt.Sprintf("dev-%04d", i%1000), "class": "sensor", "gateway": "edge1",
						"topic": fmt.Sprintf("devices/dev-%04d/telemetry", i%1000), "qos": "1"},
					Timestamp: time.Now(),
				}
				if _, err := s.Append(ctx, "edge1", m); err != nil {
					b.Fatal(err)
				}
			}
			put(-1)
			WaitEqual(b, e.Store(), c.Store(), 30*time.Second, store.UplinkStream)
			up0, down0 := relay.up.Load(), relay.down.Load()
			b.ResetTimer()
			tick := time.NewTicker(5 * time.Millisecond)
			for i := range b.N {
				<-tick.C
				put(i)
			}
			tick.Stop()
			WaitEqual(b, e.Store(), c.Store(), 30*time.Second, store.UplinkStream)
			b.StopTimer()
			b.ReportMetric(float64(relay.up.Load()-up0)/float64(b.N), "up-B/rec")
			b.ReportMetric(float64(relay.down.Load()-down0)/float64(b.N), "down-B/rec")
		})
	}
}
