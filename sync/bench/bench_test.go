package bench

import (
	"context"
	"testing"
	"time"
)

// TestBenchRuns runs `weft bench sync` small, to keep it working.
func TestBenchRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for a few seconds")
	}
	res, err := Run(context.Background(), Config{Dir: t.TempDir(), RawBytes: 4 << 20, Small: 2000, Large: 20,
		Rate: 5000, Duration: 200 * time.Millisecond, Backlog: 5000, Cap: 2 << 20, MirrorBytes: 12 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if res.RawMBps <= 0 || res.SmallMsgsPerSec <= 0 || res.LargeMBps <= 0 || res.LagP99 <= 0 || res.CatchUpMsgsPerSec <= 0 || res.CappedBytes <= 0 || res.MirrorMBps <= 0 {
		t.Fatalf("missing figures: %+v", res)
	}
}
