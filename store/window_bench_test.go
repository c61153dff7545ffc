package store

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// BenchmarkDevicesWindow1 is the gateway's load on the store without
// MQTT: 100 devices, each appending one 200-byte message at a time to
// /telemetry/events and /telemetry/by_device in one request and waiting
// for it to be durable before the next.
//
//	go test ./store -run '^$' -bench DevicesWindow1 -benchtime 20000x
func BenchmarkDevicesWindow1(b *testing.B) {
	for _, mode := range []string{"badger-sync", "wal"} {
		b.Run(mode, func(b *testing.B) {
			s := openTest(b, func(c *Config) { c.noWAL = mode == "badger-sync" })
			benchDevices(b, s, 100)
		})
	}
}

func benchDevices(b *testing.B, s *Store, devices int) {
	val := make([]byte, benchValue)
	hdr := map[string]string{"device": "d", "class": "pump", "gateway": "edge1", "mqtt_topic": "devices/d/telemetry", "qos": "1", "received": time.Now().Format(time.RFC3339Nano)}
	NewMetrics(s)
	var left atomic.Int64
	left.Store(int64(b.N))
	b.SetBytes(benchValue)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for d := range devices {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("dev-%d", d)
			for left.Add(-1) >= 0 {
				msgs := []Message{{Key: []byte(id), Value: val, Headers: hdr, Timestamp: time.Now()}}
				_, err := s.AppendMany(b.Context(), []AppendRequest{
					{Path: EventsStream, Topic: "edge1", Partition: -1, Messages: msgs},
					{Path: ByDeviceStream, Topic: id, Partition: -1, Messages: msgs},
				})
				if err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	if m := s.metrics.Load(); m != nil {
		var d dto.Metric
		m.commit.Write(&d)
		h := d.GetHistogram()
		b.ReportMetric(float64(b.N)/float64(h.GetSampleCount()), "msgs/commit")
		b.ReportMetric(h.GetSampleSum()/float64(h.GetSampleCount())*1e6, "µs/commit")
	}
}
