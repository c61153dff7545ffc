package up

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/weft-io/weft/internal/testenv/wait"
	"github.com/weft-io/weft/shadow"
	"github.com/weft-io/weft/store"
)

// BenchmarkDesiredRoundTrip measures, in the fabric of `weft up` with 1,000
// simulated devices, a desired-state change from the core's store down to
// a device and its report back up, until the core's delta is empty; and
// the process's RSS with 50 and with 1,000 devices. A simulated device
// takes 300 ms to apply a change (device.SimConfig.ApplyDelay): that is
// part of every round trip.
//
//	go test ./up -run '^$' -bench DesiredRoundTrip -benchtime 200x
func BenchmarkDesiredRoundTrip(b *testing.B) {
	for _, n := range []int{50, 1000} {
		b.Run(fmt.Sprintf("devices=%d", n), func(b *testing.B) { benchRoundTrip(b, n) })
	}
}

func benchRoundTrip(b *testing.B, devices int) {
	ctx, cancel := context.WithCancel(context.Background())
	f, err := Start(ctx, Config{DataDir: b.TempDir(), Devices: devices, HTTPAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0"})
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		cancel()
		<-f.Fleet.Done()
		f.Shutdown(context.Background())
	}()
	coreStore := f.Core.Store()
	doc := func(id string) (map[string]any, map[string]any) {
		d, err := coreStore.Table(store.ShadowsTable).Get(ctx, id)
		if err != nil {
			return nil, nil
		}
		var s struct{ Reported, Delta map[string]any }
		json.Unmarshal(d.Value, &s)
		return s.Reported, s.Delta
	}
	until := func(what string, ok func() bool) { wait.For(b, 2*time.Minute, what, ok) }
	ids := f.Fleet.IDs()
	for _, id := range ids {
		until(id+" at the core", func() bool { r, _ := doc(id); return r["setpoint"] != nil })
	}
	runtime.GC()
	held := rss()
	var lat []time.Duration
	r := rand.New(rand.NewPCG(1, 1))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id := ids[r.IntN(len(ids))/3*3] // pumps: setpoint 1..10
		want := float64(1 + i%9)
		if r, _ := doc(id); r["setpoint"] == want {
			want++
		}
		t0 := time.Now()
		if _, err := shadow.SetDesired(ctx, coreStore, id, []byte(fmt.Sprintf(`{"setpoint":%g}`, want)), shadow.SetOptions{}); err != nil {
			b.Fatal(err)
		}
		until("the round trip", func() bool { r, d := doc(id); return r["setpoint"] == want && len(d) == 0 })
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Milliseconds()), "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Milliseconds()), "p99-ms")
	b.ReportMetric(float64(held)/(1<<20), "RSS-MiB")
}

// rss is this process's resident set size in bytes.
func rss() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	var size, res int64
	fmt.Sscan(string(b), &size, &res)
	return res * int64(os.Getpagesize())
}
