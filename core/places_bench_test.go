package core

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/weft-io/weft/firmware"
	"github.com/weft-io/weft/store"
)

// BenchmarkDevicePlaces: what the core pays to know the classes behind
// each edge (firmware.Places). scan: the scan of 10,000 shadows (100
// edges, 3 classes) that followPlaces makes at start, which is also what
// reading them afresh at every question would cost; change: one change
// record of the shadows folded in, as it follows them.
//
//	go test ./core -run '^$' -bench DevicePlaces -benchtime 20x
func BenchmarkDevicePlaces(b *testing.B) {
	ctx := context.Background()
	st, err := store.Open(store.Config{Dir: b.TempDir(), MinFreeBytes: -1, RetentionInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	classes := []string{"pump", "chiller", "meter"}
	const devices = 10000
	doc := func(i int) []byte {
		return fmt.Appendf(nil, `{"class":%q,"edge":"edge-%d","connected":true,"firmware":"1.0.0",`+
			`"reported":{"setpoint":4,"firmware":"1.0.0","sample_interval_s":5},"reported_ts":{"setpoint":"2026-12-07T10:00:00Z"},`+
			`"desired":{"setpoint":4},"desired_ts":{"setpoint":"2026-12-07T10:00:00Z"},"last_seen":"2026-12-07T10:00:00Z"}`,
			classes[i%3], i%100)
	}
	for i := range devices {
		if _, err := st.Table(store.ShadowsTable).Put(ctx, fmt.Sprintf("dev-%05d", i), doc(i)); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("scan", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			var p firmware.Places
			sctx, cancel := context.WithCancel(ctx)
			cancel() // followPlaces scans, then stops at the consumer
			followPlaces(sctx, st, &p, nil)
			if got, _ := p.EdgeClasses(ctx); len(got) != 100 {
				b.Fatalf("%d edges", len(got))
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/devices, "ns/shadow")
	})
	b.Run("change", func(b *testing.B) {
		var p firmware.Places
		change, _ := json.Marshal(store.Change{Key: "dev-00001", Op: "put", Doc: doc(1)})
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			var ch placeChange
			json.Unmarshal(change, &ch)
			edge, class := ch.Doc.place()
			p.Set(ch.Key, edge, class)
		}
	})
}
