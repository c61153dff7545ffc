package node

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/weft-io/weft/store"
)

// ClockMetrics exports the store's clock (store.ClockStatus):
// weft_store_clock_floor_seconds, weft_store_clock_behind_seconds,
// weft_store_clock_unconfirmed_jump_seconds, weft_store_clock_offset_seconds,
// weft_store_clock_behind_total and weft_store_clock_jumps_total.
func ClockMetrics(st *store.Store) prometheus.Collector { return clockMetrics{st} }

type clockMetrics struct{ st *store.Store }

var (
	clockFloor   = prometheus.NewDesc("weft_store_clock_floor_seconds", "The store's time floor, Unix seconds.", nil, nil)
	clockBehind  = prometheus.NewDesc("weft_store_clock_behind_seconds", "How far the system clock is behind the store's time floor.", nil, nil)
	clockPending = prometheus.NewDesc("weft_store_clock_unconfirmed_jump_seconds", "Forward clock jump retention discounts until the time is confirmed.", nil, nil)
	clockOffset  = prometheus.NewDesc("weft_store_clock_offset_seconds", "How far the store's time was ahead of the last confirmed (core) time.", nil, nil)
	clockBehinds = prometheus.NewDesc("weft_store_clock_behind_total", "Times the system clock fell behind the store's time floor.", nil, nil)
	clockJumps   = prometheus.NewDesc("weft_store_clock_jumps_total", "Forward jumps of the system clock larger than the store's threshold.", nil, nil)
)

func (clockMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{clockFloor, clockBehind, clockPending, clockOffset, clockBehinds, clockJumps} {
		ch <- d
	}
}

func (m clockMetrics) Collect(ch chan<- prometheus.Metric) {
	c := m.st.Clock()
	ch <- prometheus.MustNewConstMetric(clockFloor, prometheus.GaugeValue, float64(c.Floor.UnixNano())/1e9)
	ch <- prometheus.MustNewConstMetric(clockBehind, prometheus.GaugeValue, c.Behind.Seconds())
	ch <- prometheus.MustNewConstMetric(clockPending, prometheus.GaugeValue, c.Unconfirmed.Seconds())
	ch <- prometheus.MustNewConstMetric(clockOffset, prometheus.GaugeValue, c.Offset.Seconds())
	ch <- prometheus.MustNewConstMetric(clockBehinds, prometheus.CounterValue, float64(c.BehindEpisodes))
	ch <- prometheus.MustNewConstMetric(clockJumps, prometheus.CounterValue, float64(c.Jumps))
}
