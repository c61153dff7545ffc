package store

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestMetrics: the collector reports each volume's usage and quota, what
// a full volume dropped per stream, the disk's free space against the
// reserve and whether the store takes writes, and registers cleanly.
func TestMetrics(t *testing.T) {
	s := openTest(t, func(c *Config) {
		c.MinFreeBytes = 1 << 20
		c.Statfs = func(string) (Space, error) { return Space{FreeBytes: 5 << 30, FreeInodes: 100000}, nil }
	})
	ctx := context.Background()
	if err := s.CreateVolume(ctx, "backlog", VolumeOptions{Quota: 1 << 20, DropOldest: true}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateStream(ctx, "/backlog/up", StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	appendSeq(t, s, "/backlog/up", "u", 0, 1000, 2000, time.Now()) // ~2 MB into 1 MiB
	info, err := s.Stat(ctx, "/backlog/up")
	if err != nil || info.Dropped == 0 {
		t.Fatalf("nothing dropped: %+v %v", info, err)
	}
	vi, _ := s.Volume("backlog")

	m := NewMetrics(s)
	m.observeCommit(3*time.Millisecond, 4, 8000)
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(m); err != nil {
		t.Fatal(err)
	}
	want := strings.NewReader(`
# HELP weft_store_disk_free_bytes Free bytes of the file system holding the data directory.
# TYPE weft_store_disk_free_bytes gauge
weft_store_disk_free_bytes 5.36870912e+09
# HELP weft_store_disk_reserve_bytes Free bytes the file system must keep; below it writes are refused (--store.min-free).
# TYPE weft_store_disk_reserve_bytes gauge
weft_store_disk_reserve_bytes 1.048576e+06
# HELP weft_store_dropped_total Messages a full volume dropped from the stream, oldest first, to take new ones (volumes that drop their oldest data).
# TYPE weft_store_dropped_total counter
weft_store_dropped_total{stream="/backlog/up"} ` + strconv.FormatInt(info.Dropped, 10) + `
# HELP weft_store_volume_quota_bytes The volume's quota in bytes; absent for a volume without one.
# TYPE weft_store_volume_quota_bytes gauge
weft_store_volume_quota_bytes{volume="backlog"} 1.048576e+06
# HELP weft_store_writable 1 while the store takes writes, 0 when it refuses them (closed, disk full or read-only): what GET /readyz reports.
# TYPE weft_store_writable gauge
weft_store_writable 1
# HELP weft_store_written_bytes_total Bytes of the write requests committed (messages, documents, file chunks), before Badger's own overhead.
# TYPE weft_store_written_bytes_total counter
weft_store_written_bytes_total 8000
`)
	if err := testutil.GatherAndCompare(reg, want, "weft_store_disk_free_bytes", "weft_store_disk_reserve_bytes", "weft_store_dropped_total",
		"weft_store_volume_quota_bytes", "weft_store_writable", "weft_store_written_bytes_total"); err != nil {
		t.Fatal(err)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var used float64
	for _, f := range fams {
		for _, mt := range f.GetMetric() {
			if f.GetName() == "weft_store_volume_used_bytes" && mt.GetLabel()[0].GetValue() == "backlog" {
				used = mt.GetGauge().GetValue()
			}
		}
	}
	if used != float64(vi.Used) || used <= 0 || used > 1<<20 {
		t.Fatalf("backlog reported using %v bytes, the volume %d, quota 1 MiB", used, vi.Used)
	}
	if n := testutil.CollectAndCount(m, "weft_store_volume_used_bytes"); n < 2 {
		t.Fatalf("%d volumes reported, want every volume", n)
	}
	if n := testutil.CollectAndCount(m, "weft_store_commit_seconds"); n != 1 {
		t.Fatalf("commit histogram: %d series", n)
	}
}
