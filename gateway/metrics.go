package gateway

import (
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the gateway's counters. They are a prometheus.Collector
// (registered on Config.Registerer when one is given) and can be read
// directly, for tests and for the edge's status pages.
type Metrics struct {
	connections  atomic.Int64
	connects     atomic.Uint64
	bytesIn      atomic.Uint64
	bytesOut     atomic.Uint64
	deltasResent atomic.Uint64

	acceptBackoffs atomic.Uint64

	refusals        *counterVec // reason
	disconnects     *counterVec // reason
	aclRefusals     *counterVec // op, reason
	publishRefusals *counterVec // reason
	messagesIn      *counterVec // qos
	messagesOut     *counterVec // qos
	downDropped     *counterVec // reason

	appendLatency prometheus.Histogram
	appends       atomic.Uint64

	descs []*prometheus.Desc
}

const metricPrefix = "weft_gateway_"

var (
	descConnections  = prometheus.NewDesc(metricPrefix+"connections", "MQTT sessions connected now.", nil, nil)
	descConnects     = prometheus.NewDesc(metricPrefix+"connects_total", "MQTT sessions established.", nil, nil)
	descBytesIn      = prometheus.NewDesc(metricPrefix+"bytes_in_total", "MQTT bytes received from devices (inside TLS).", nil, nil)
	descBytesOut     = prometheus.NewDesc(metricPrefix+"bytes_out_total", "MQTT bytes sent to devices (inside TLS).", nil, nil)
	descDeltasResent = prometheus.NewDesc(metricPrefix+"deltas_resent_total", "Shadow deltas sent to a device again because its report left it out of sync.", nil, nil)
	descAcceptWaits  = prometheus.NewDesc(metricPrefix+"accept_backoffs_total", "Temporary accept errors (out of file descriptors and the like) the listener waited after.", nil, nil)
)

func newMetrics() *Metrics {
	m := &Metrics{
		refusals:        newCounterVec(metricPrefix+"connection_refusals_total", "Connections refused before an MQTT session was established, by reason.", "reason"),
		disconnects:     newCounterVec(metricPrefix+"disconnects_total", "Established sessions closed by the gateway, by reason.", "reason"),
		aclRefusals:     newCounterVec(metricPrefix+"acl_refusals_total", "Topics refused by the ACL, by operation and reason.", "op", "reason"),
		publishRefusals: newCounterVec(metricPrefix+"publish_refusals_total", "Publishes not stored, by reason.", "reason"),
		messagesIn:      newCounterVec(metricPrefix+"messages_in_total", "Messages received from devices and durably stored, by QoS.", "qos"),
		messagesOut:     newCounterVec(metricPrefix+"messages_out_total", "Messages sent to devices, by QoS.", "qos"),
		downDropped:     newCounterVec(metricPrefix+"downlink_dropped_total", "Messages to devices dropped instead of queued or sent, by reason.", "reason"),
		appendLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    metricPrefix + "append_seconds",
			Help:    "Time to make a device message durable in the store (group commit included).",
			Buckets: prometheus.ExponentialBuckets(0.0002, 2, 14),
		}),
	}
	return m
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descConnections, descConnects, descBytesIn, descBytesOut, descDeltasResent, descAcceptWaits} {
		ch <- d
	}
	for _, v := range m.vecs() {
		ch <- v.desc
	}
	m.appendLatency.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descConnections, prometheus.GaugeValue, float64(m.connections.Load()))
	ch <- prometheus.MustNewConstMetric(descConnects, prometheus.CounterValue, float64(m.connects.Load()))
	ch <- prometheus.MustNewConstMetric(descBytesIn, prometheus.CounterValue, float64(m.bytesIn.Load()))
	ch <- prometheus.MustNewConstMetric(descBytesOut, prometheus.CounterValue, float64(m.bytesOut.Load()))
	ch <- prometheus.MustNewConstMetric(descDeltasResent, prometheus.CounterValue, float64(m.deltasResent.Load()))
	ch <- prometheus.MustNewConstMetric(descAcceptWaits, prometheus.CounterValue, float64(m.acceptBackoffs.Load()))
	for _, v := range m.vecs() {
		v.collect(ch)
	}
	m.appendLatency.Collect(ch)
}

func (m *Metrics) vecs() []*counterVec {
	return []*counterVec{m.refusals, m.disconnects, m.aclRefusals, m.publishRefusals, m.messagesIn, m.messagesOut, m.downDropped}
}

// Connections is the number of MQTT sessions connected now.
func (m *Metrics) Connections() int64 { return m.connections.Load() }

// Connects is the number of MQTT sessions established since start.
func (m *Metrics) Connects() uint64 { return m.connects.Load() }

// Refusals is the number of connections refused for reason (Refuse*
// constants); an empty reason sums all of them.
func (m *Metrics) Refusals(reason string) uint64 { return m.refusals.sum(reason) }

// Disconnects is the number of established sessions the gateway closed
// for reason (Disconnect* constants); an empty reason sums all of them.
func (m *Metrics) Disconnects(reason string) uint64 { return m.disconnects.sum(reason) }

// ACLRefusals is the number of topics the ACL refused for reason
// (Reason* constants), whatever the operation; an empty reason sums all.
func (m *Metrics) ACLRefusals(reason string) uint64 { return m.aclRefusals.sum("", reason) }

// ACLRefusalsOp is ACLRefusals for one operation (OpLabel* constants).
func (m *Metrics) ACLRefusalsOp(op, reason string) uint64 { return m.aclRefusals.sum(op, reason) }

// PublishRefusals is the number of publishes not stored for reason
// (RefuseMessageRate and the like); an empty reason sums all of them.
func (m *Metrics) PublishRefusals(reason string) uint64 { return m.publishRefusals.sum(reason) }

// MessagesIn is the number of device messages stored with QoS qos.
func (m *Metrics) MessagesIn(qos byte) uint64 { return m.messagesIn.sum(qosLabel(qos)) }

// MessagesOut is the number of messages sent to devices with QoS qos.
func (m *Metrics) MessagesOut(qos byte) uint64 { return m.messagesOut.sum(qosLabel(qos)) }

// DeltasResent is the number of shadow deltas sent to devices again
// because their report left them out of sync (converge).
func (m *Metrics) DeltasResent() uint64 { return m.deltasResent.Load() }

// DownlinkDropped is the number of messages to devices dropped for
// reason (DropInflightCap, DropWriteQueue); an empty reason sums both.
func (m *Metrics) DownlinkDropped(reason string) uint64 { return m.downDropped.sum(reason) }

// AcceptBackoffs is the number of temporary accept errors the listener
// waited after.
func (m *Metrics) AcceptBackoffs() uint64 { return m.acceptBackoffs.Load() }

// BytesIn is the number of MQTT bytes received from devices.
func (m *Metrics) BytesIn() uint64 { return m.bytesIn.Load() }

// BytesOut is the number of MQTT bytes sent to devices.
func (m *Metrics) BytesOut() uint64 { return m.bytesOut.Load() }

// Appends is the number of durable appends timed by the latency histogram.
func (m *Metrics) Appends() uint64 { return m.appends.Load() }

func (m *Metrics) observeAppend(d time.Duration) {
	m.appends.Add(1)
	m.appendLatency.Observe(d.Seconds())
}

func qosLabel(q byte) string { return strconv.Itoa(int(q)) }

// counterVec is a counter with labels, read without going through the
// Prometheus client's data model.
type counterVec struct {
	desc   *prometheus.Desc
	labels int
	mu     sync.RWMutex
	vals   map[string]*atomic.Uint64 // label values joined by \xff
}

func newCounterVec(name, help string, labels ...string) *counterVec {
	return &counterVec{
		desc:   prometheus.NewDesc(name, help, labels, nil),
		labels: len(labels),
		vals:   map[string]*atomic.Uint64{},
	}
}

func (v *counterVec) inc(values ...string) {
	key := strings.Join(values, "\xff")
	v.mu.RLock()
	c := v.vals[key]
	v.mu.RUnlock()
	if c == nil {
		v.mu.Lock()
		if c = v.vals[key]; c == nil {
			c = new(atomic.Uint64)
			v.vals[key] = c
		}
		v.mu.Unlock()
	}
	c.Add(1)
}

// sum adds the counters whose labels match values, an empty value
// matching any.
func (v *counterVec) sum(values ...string) uint64 {
	v.mu.RLock()
	defer v.mu.RUnlock()
	var n uint64
	for key, c := range v.vals {
		parts := strings.Split(key, "\xff")
		ok := true
		for i, want := range values {
			if want != "" && (i >= len(parts) || parts[i] != want) {
				ok = false
				break
			}
		}
		if ok {
			n += c.Load()
		}
	}
	return n
}

func (v *counterVec) collect(ch chan<- prometheus.Metric) {
	v.mu.RLock()
	keys := make([]string, 0, len(v.vals))
	for k := range v.vals {
		keys = append(keys, k)
	}
	v.mu.RUnlock()
	sort.Strings(keys)
	for _, k := range keys {
		v.mu.RLock()
		c := v.vals[k]
		v.mu.RUnlock()
		ch <- prometheus.MustNewConstMetric(v.desc, prometheus.CounterValue, float64(c.Load()), strings.Split(k, "\xff")...)
	}
}
