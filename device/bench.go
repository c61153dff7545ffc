package device

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// BenchConfig describes a load run against a gateway.
type BenchConfig struct {
	Dial DialConfig
	// CertsDir holds the device CA certificate and the devices'
	// certificates (or the CA key to issue them).
	CertsDir string
	// Conns is the number of devices connected at once. Default 100.
	Conns int
	// Msgs is the number of messages each device publishes. Zero with
	// Hold set: connect and hold only.
	Msgs int
	// QoS of the publishes: 0, 1 or 2.
	QoS byte
	// Size of each payload in bytes. Default 200.
	Size int
	// Window is the number of publishes each device keeps in flight.
	// Default 8.
	Window int
	// Class of the bench devices, and IDPrefix of their ids (ids are
	// IDPrefix followed by a five-digit number). Defaults "bench".
	Class, IDPrefix string
	// LocalAddrs are the local IPs connections are spread over; loopback
	// has 65k ports per source address.
	LocalAddrs []string
	// Hold keeps the connections open for this long after connecting
	// (and publishing), for memory measurements; PID, if set, is the
	// gateway process whose RSS is sampled before connecting and while
	// holding.
	Hold time.Duration
	PID  int
	// Rate is the offered load in messages per second over all devices;
	// each window then sends on a fixed schedule and a message's latency
	// counts from when it was due, so a slow broker's queueing shows.
	// Zero: every window sends as soon as its last publish is answered.
	Rate float64
}

// BenchResult is what a run measured.
type BenchResult struct {
	Conns        int           `json:"conns"`
	ConnectTime  time.Duration `json:"connect_ns"`
	ConnectRate  float64       `json:"connects_per_s"`
	Acked        int64         `json:"acked"`
	Failed       int64         `json:"failed"`
	PublishTime  time.Duration `json:"publish_ns"`
	MsgsPerSec   float64       `json:"msgs_per_s"`
	MBPerSec     float64       `json:"mb_per_s"`
	P50          time.Duration `json:"p50_ns"`
	P99          time.Duration `json:"p99_ns"`
	RSSBefore    int64         `json:"rss_before,omitempty"`
	RSSHolding   int64         `json:"rss_holding,omitempty"`
	RSSPerConn   int64         `json:"rss_per_conn,omitempty"`
	FirstFailure string        `json:"first_failure,omitempty"`
}

// Bench connects Conns devices, has each publish Msgs messages to
// devices/<id>/telemetry with Window in flight, and measures the connect
// rate, the acknowledged messages per second and the latency of each
// publish (to its PUBACK or PUBCOMP; to the write for QoS 0).
func Bench(ctx context.Context, cfg BenchConfig) (BenchResult, error) {
	if cfg.Conns <= 0 {
		cfg.Conns = 100
	}
	if cfg.Size <= 0 {
		cfg.Size = 200
	}
	if cfg.Window <= 0 {
		cfg.Window = 8
	}
	if cfg.Class == "" {
		cfg.Class = "bench"
	}
	if cfg.IDPrefix == "" {
		cfg.IDPrefix = "bench"
	}
	if cfg.QoS > 2 {
		return BenchResult{}, fmt.Errorf("device: qos %d", cfg.QoS)
	}
	ids := make([]string, cfg.Conns)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s-%05d", cfg.IDPrefix, i)
	}
	creds, pool, err := Credentials(cfg.CertsDir, ids, cfg.Class)
	if err != nil {
		return BenchResult{}, err
	}
	if cfg.Dial.Roots == nil {
		cfg.Dial.Roots = pool
	}
	res := BenchResult{Conns: cfg.Conns}
	if cfg.PID > 0 {
		res.RSSBefore, _ = rss(cfg.PID)
	}

	// Connect, at most 64 handshakes at a time.
	clients := make([]*paho.Client, cfg.Conns)
	var firstErr atomic.Value
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range ids {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			dc := cfg.Dial
			if len(cfg.LocalAddrs) > 0 {
				dc.LocalAddr = cfg.LocalAddrs[i%len(cfg.LocalAddrs)]
			}
			c, err := Connect(ctx, dc, ids[i], creds[i], true, nil)
			if err != nil {
				firstErr.CompareAndSwap(nil, err.Error())
				return
			}
			clients[i] = c
		}(i)
	}
	wg.Wait()
	res.ConnectTime = time.Since(start)
	defer func() {
		for _, c := range clients {
			if c != nil {
				c.Disconnect(&paho.Disconnect{ReasonCode: 0})
			}
		}
	}()
	connected := 0
	for _, c := range clients {
		if c != nil {
			connected++
		}
	}
	res.ConnectRate = float64(connected) / res.ConnectTime.Seconds()
	if connected < cfg.Conns {
		msg, _ := firstErr.Load().(string)
		return res, fmt.Errorf("device: %d of %d devices connected; first error: %s", connected, cfg.Conns, msg)
	}

	// Publish.
	payload := make([]byte, cfg.Size)
	for i := range payload {
		payload[i] = byte('a' + i%26)
	}
	lats := make([][]time.Duration, cfg.Conns*cfg.Window)
	var acked, failed atomic.Int64
	start = time.Now()
	for i, c := range clients {
		for w := 0; w < cfg.Window; w++ {
			n := cfg.Msgs / cfg.Window
			if w < cfg.Msgs%cfg.Window {
				n++
			}
			if n == 0 {
				continue
			}
			wg.Add(1)
			go func(slot int, c *paho.Client, topic string, n int) {
				defer wg.Done()
				own := make([]time.Duration, 0, n)
				var every time.Duration
				if cfg.Rate > 0 {
					every = time.Duration(float64(time.Second) * float64(cfg.Conns*cfg.Window) / cfg.Rate)
				}
				due := start.Add(time.Duration(slot) * every / time.Duration(cfg.Conns*cfg.Window))
				for j := 0; j < n && ctx.Err() == nil; j++ {
					t0 := time.Now()
					if every > 0 {
						if wait := time.Until(due); wait > 0 {
							time.Sleep(wait)
						}
						t0, due = due, due.Add(every)
					}
					resp, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: cfg.QoS, Payload: payload})
					if err == nil && resp != nil && resp.ReasonCode >= 0x80 {
						err = fmt.Errorf("reason 0x%02x", resp.ReasonCode)
					}
					if err != nil {
						failed.Add(1)
						firstErr.CompareAndSwap(nil, err.Error())
						continue
					}
					own = append(own, time.Since(t0))
					acked.Add(1)
				}
				lats[slot] = own
			}(i*cfg.Window+w, c, "devices/"+ids[i]+"/telemetry", n)
		}
	}
	wg.Wait()
	res.PublishTime = time.Since(start)
	res.Acked, res.Failed = acked.Load(), failed.Load()
	if res.Acked > 0 {
		res.MsgsPerSec = float64(res.Acked) / res.PublishTime.Seconds()
		res.MBPerSec = res.MsgsPerSec * float64(cfg.Size) / 1e6
		all := slices.Concat(lats...)
		slices.Sort(all)
		res.P50, res.P99 = all[len(all)/2], all[len(all)*99/100]
	}
	if msg, ok := firstErr.Load().(string); ok {
		res.FirstFailure = msg
	}
	if cfg.Hold > 0 {
		select {
		case <-time.After(cfg.Hold):
		case <-ctx.Done():
		}
		if cfg.PID > 0 {
			res.RSSHolding, _ = rss(cfg.PID)
			res.RSSPerConn = (res.RSSHolding - res.RSSBefore) / int64(cfg.Conns)
		}
	}
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	if res.Failed > 0 {
		return res, errors.New("device: some publishes failed: " + res.FirstFailure)
	}
	return res, nil
}
