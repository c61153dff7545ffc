package anomaly

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// simReadings are n readings of each of devs devices, one a second, in
// batches of a second's readings of every device, shaped like those of
// weft device sim's pumps: three channels on a slow wave with noise, and
// a timestamp string.
func simReadings(devs, n int) [][]Telemetry {
	ids := make([]string, devs)
	topics := make([]string, devs)
	for d := range devs {
		ids[d] = "fp-" + strconv.Itoa(d)
		topics[d] = "devices/" + ids[d] + "/telemetry"
	}
	r := rand.New(rand.NewPCG(1, 2))
	batches := make([][]Telemetry, n)
	for i := range n {
		at := t0.Add(time.Duration(i) * time.Second)
		wave := math.Sin(float64(i) / 600)
		batch := make([]Telemetry, devs)
		for d := range devs {
			noise := func() float64 { return r.Float64() - 0.5 }
			batch[d] = Telemetry{Device: ids[d], Class: "pump", Topic: topics[d], At: at, Payload: fmt.Appendf(nil,
				`{"ts":%q,"flow_lpm":%.3f,"pressure_bar":%.3f,"temp_c":%.3f}`, at.Format(time.RFC3339Nano),
				40+5*wave+noise(), 3+0.2*wave+0.05*noise(), 20+2*wave+0.3*noise())}
		}
		batches[i] = batch
	}
	return batches
}

// BenchmarkFilterDeviceBytes reports the memory the filter keeps per
// device (B/device, the live heap after a collection, over the filter's
// devices) once each of 200 devices of three channels has sent 1,000
// readings (past a channel's warm-up and first epochs), and the cost of
// scoring a reading (ns/reading).
func BenchmarkFilterDeviceBytes(b *testing.B) {
	const devs, n = 100, 1000
	batches := simReadings(devs, n)
	b.ReportAllocs()
	b.ResetTimer()
	var perDevice float64
	for range b.N {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		f := NewFilter(FilterConfig{})
		for _, batch := range batches {
			f.Batch(batch)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perDevice = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / devs
		runtime.KeepAlive(f)
	}
	b.ReportMetric(perDevice, "B/device")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*devs*n), "ns/reading")
}
