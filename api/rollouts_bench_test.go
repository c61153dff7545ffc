package api

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/weft-io/weft/firmware"
	"github.com/weft-io/weft/store"
)

// BenchmarkRolloutStatus measures what one device status report costs the
// runner in a rollout of n devices: read the rollout's state, apply the
// report, write both documents back, durably. The baseline in the same
// run is the durable write alone: a Put of a document of the same size.
func BenchmarkRolloutStatus(b *testing.B) {
	for _, n := range []int{1000, 10_000, 100_000} {
		e := newBenchEnv(b)
		ids := make([]string, n)
		for i := range ids {
			ids[i] = fmt.Sprintf("pump-%06d", i)
		}
		now := time.Date(2026, 3, 1, 11, 0, 0, 0, time.UTC)
		spec := firmware.Spec{Release: "sensor-fw@1.2.0", Target: "all", Waves: []int{100}, FailureThreshold: 100,
			DeviceTimeout: firmware.Duration(time.Hour)}
		r, acts, err := firmware.NewRollout("bench", spec, ids, now)
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		if err := e.srv.ensureRolloutTables(ctx); err != nil {
			b.Fatal(err)
		}
		if err := e.st.Write(ctx, func(tx *store.Tx) error {
			return e.srv.saveRollout(tx, "", r, Announcement{Rollout: "bench"}, acts[:2], true)
		}); err != nil {
			b.Fatal(err)
		}
		state, _ := json.Marshal(r)
		b.Run(fmt.Sprintf("devices=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(state)))
			states := []firmware.DeviceState{firmware.Downloading, firmware.Installing, firmware.Succeeded}
			i := 0
			for b.Loop() {
				dev, st := ids[(i/3)%n], states[i%3]
				i++
				err := e.st.Write(ctx, func(tx *store.Tx) error {
					return e.srv.stepRollout(tx, "bench", func(r *firmware.Rollout) []firmware.Action { return r.Status(now, dev, st) })
				})
				if err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("baseline-put/devices=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(state)))
			for b.Loop() {
				if _, err := e.st.Table(RolloutStatesTable).Put(ctx, "baseline", state); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// newBenchEnv is newEnv for benchmarks.
func newBenchEnv(b *testing.B) *env {
	st, err := store.Open(store.Config{Dir: b.TempDir(), MinFreeBytes: -1, RetentionInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	srv, err := New(Config{Store: st, TokenKey: make([]byte, 32)})
	if err != nil {
		b.Fatal(err)
	}
	return &env{st: st, srv: srv}
}
