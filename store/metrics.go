package store

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics is a prometheus.Collector of a store's figures an operator
// watches: how long group commits take (Badger's fsync included, as the
// store writes with SyncWrites), how much they write, each volume's usage
// against its quota, what volumes full of data dropped (DropOldest) and
// the free space of the data directory's file system against the reserve
// that refuses writes. Register it in the node's registry:
//
//	reg.MustRegister(store.NewMetrics(st))
//
// The commit figures move once the writer reports each group to
// Metrics.observeCommit.
type Metrics struct {
	s       *Store
	commit  prometheus.Histogram
	group   prometheus.Histogram
	written prometheus.Counter
}

var (
	descVolumeUsed = prometheus.NewDesc("weft_store_volume_used_bytes",
		"Bytes the volume holds (keys and values, as its quota counts them).", []string{"volume"}, nil)
	descVolumeQuota = prometheus.NewDesc("weft_store_volume_quota_bytes",
		"The volume's quota in bytes; absent for a volume without one.", []string{"volume"}, nil)
	descDropped = prometheus.NewDesc("weft_store_dropped_total",
		"Messages a full volume dropped from the stream, oldest first, to take new ones (volumes that drop their oldest data).", []string{"stream"}, nil)
	descDroppedBytes = prometheus.NewDesc("weft_store_dropped_bytes_total",
		"Bytes a full volume dropped from the stream to take new data.", []string{"stream"}, nil)
	descFree = prometheus.NewDesc("weft_store_disk_free_bytes",
		"Free bytes of the file system holding the data directory.", nil, nil)
	descReserve = prometheus.NewDesc("weft_store_disk_reserve_bytes",
		"Free bytes the file system must keep; below it writes are refused (--store.min-free).", nil, nil)
	descFreeInodes = prometheus.NewDesc("weft_store_disk_free_inodes",
		"Free inodes of the file system holding the data directory; absent where it does not count them.", nil, nil)
	descWritable = prometheus.NewDesc("weft_store_writable",
		"1 while the store takes writes, 0 when it refuses them (closed, disk full or read-only): what GET /readyz reports.", nil, nil)
)

// NewMetrics returns the collector of s.
func NewMetrics(s *Store) *Metrics {
	m := &Metrics{
		s: s,
		commit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "weft_store_commit_seconds",
			Help:    "Time to commit one group of writes, the fsync included: what every writer of the group waits for.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		group: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "weft_store_commit_requests",
			Help:    "Write requests served by one group commit (one fsync).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 13),
		}),
		written: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "weft_store_written_bytes_total",
			Help: "Bytes of the write requests committed (messages, documents, file chunks), before Badger's own overhead.",
		}),
	}
	s.metrics.Store(m)
	return m
}

// observeCommit records one group commit: how long it took, how many
// requests it served and their bytes.
func (m *Metrics) observeCommit(d time.Duration, requests, bytes int) {
	m.commit.Observe(d.Seconds())
	m.group.Observe(float64(requests))
	m.written.Add(float64(bytes))
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descVolumeUsed, descVolumeQuota, descDropped, descDroppedBytes, descFree, descReserve, descFreeInodes, descWritable} {
		ch <- d
	}
	m.commit.Describe(ch)
	m.group.Describe(ch)
	m.written.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.commit.Collect(ch)
	m.group.Collect(ch)
	m.written.Collect(ch)
	s := m.s
	writable := 1.0
	if s.Writable() != nil {
		writable = 0
	}
	ch <- prometheus.MustNewConstMetric(descWritable, prometheus.GaugeValue, writable)
	if sp, err := s.cfg.Statfs(s.cfg.Dir); err == nil {
		ch <- prometheus.MustNewConstMetric(descFree, prometheus.GaugeValue, float64(sp.FreeBytes))
		if sp.FreeInodes >= 0 {
			ch <- prometheus.MustNewConstMetric(descFreeInodes, prometheus.GaugeValue, float64(sp.FreeInodes))
		}
	}
	ch <- prometheus.MustNewConstMetric(descReserve, prometheus.GaugeValue, float64(max(s.cfg.MinFreeBytes, 0)))
	if s.closed.Load() {
		return
	}
	for _, v := range s.Volumes() {
		ch <- prometheus.MustNewConstMetric(descVolumeUsed, prometheus.GaugeValue, float64(v.Used), v.Name)
		if v.Quota > 0 {
			ch <- prometheus.MustNewConstMetric(descVolumeQuota, prometheus.GaugeValue, float64(v.Quota), v.Name)
		}
		if !v.DropOldest {
			continue
		}
		streams, err := s.streamsOf(v.Name)
		if err != nil {
			continue // the next scrape tries again
		}
		for _, st := range streams {
			ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(st.Dropped), st.Path)
			ch <- prometheus.MustNewConstMetric(descDroppedBytes, prometheus.CounterValue, float64(st.DroppedBytes), st.Path)
		}
	}
}
