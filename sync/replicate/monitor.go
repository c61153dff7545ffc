package replicate

import (
	"encoding/json"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// LinkStatus is what GET /api/v1/links shows of one link.
type LinkStatus struct {
	// Peer is the node at the other end, Role its role (edge or core).
	Peer string `json:"peer"`
	Role string `json:"role"`
	// Addr is the peer's address: its current one while connected (after
	// a migration of the connection's path, the new one), else the last.
	Addr      string `json:"addr,omitempty"`
	Connected bool   `json:"connected"`
	// Since is when the link last came up or went down.
	Since      time.Time `json:"since,omitzero"`
	Reconnects int64     `json:"reconnects"`
	LastError  string    `json:"last_error,omitempty"`
	// RateLimit is the link's bandwidth cap in bytes per second, 0 for none.
	RateLimit int64          `json:"rate_limit,omitempty"`
	Streams   []StreamStatus `json:"streams"`
}

// StreamStatus is one replicated stream of a link, as this node sees it.
type StreamStatus struct {
	Path string `json:"path"`
	// Direction is "send" or "receive", from this node.
	Direction string `json:"direction"`
	// LagMessages are messages the source has and the replica does not
	// (acknowledged); LagSeconds is the age of the oldest of them.
	LagMessages uint64  `json:"lag_messages"`
	LagSeconds  float64 `json:"lag_seconds"`
	// BacklogBytes estimates the bytes behind LagMessages (sender only).
	BacklogBytes int64 `json:"backlog_bytes"`
	// Messages and Bytes count what was acknowledged (sender) or applied
	// (receiver); the rates are over the last ten seconds or so.
	Messages       int64   `json:"messages"`
	Bytes          int64   `json:"bytes"`
	MessagesPerSec float64 `json:"messages_per_s"`
	BytesPerSec    float64 `json:"bytes_per_s"`
	// Batches acknowledged or applied; Duplicates, messages skipped as
	// held already; Dropped, messages the source no longer held when their
	// turn came (trimmed by retention, or dropped by a full volume).
	Batches    int64 `json:"batches"`
	Duplicates int64 `json:"duplicates"`
	Dropped    int64 `json:"dropped"`
	// Quarantined counts offsets of ranges the source quarantined
	// (damaged data given up) that went over the link as gaps: the
	// replica records the same gap, named where it is read.
	Quarantined int64 `json:"quarantined,omitempty"`
	Topics      int   `json:"topics"`
	// Error says why the stream is not replicated, when the other side
	// refused it.
	Error string `json:"error,omitempty"`
	// Failed lists the topic partitions the sender cannot read on from (a
	// corrupt or quarantined range of the source): they wait while the
	// stream's other topics go on, and are tried again every 30 seconds.
	Failed []Failure `json:"failed,omitempty"`
	// ReportedAt is when the sender last told the receiver its backlog
	// (receiver only).
	ReportedAt time.Time `json:"reported_at,omitzero"`
}

// Failure is a topic partition a sender cannot read on from: the range
// [From, To) of the source is corrupt or quarantined (To 0: not known).
type Failure struct {
	Topic     string `json:"topic"`
	Partition int    `json:"partition"`
	From      uint64 `json:"from"`
	To        uint64 `json:"to,omitempty"`
	Error     string `json:"error"`
}

// Monitor keeps the figures of a node's links. It is a
// prometheus.Collector and serves GET /api/v1/links.
type Monitor struct {
	node string
	now  func() time.Time

	mu    sync.Mutex
	links map[string]*LinkStats
}

// NewMonitor returns the monitor of node; now is the clock (nil: time.Now).
func NewMonitor(node string, now func() time.Time) *Monitor {
	if now == nil {
		now = time.Now
	}
	return &Monitor{node: node, now: now, links: map[string]*LinkStats{}}
}

// LinkStats are the figures of one link, kept by a Monitor and updated by
// the link's side of the connection.
type LinkStats struct {
	mu         sync.Mutex
	peer, role string
	addr       string
	addrOf     func() string // the connection's current address, while up
	connected  bool
	since      time.Time
	reconnects int64
	lastErr    string
	rate       int64
	streams    map[string]*StreamStats // by direction + path
}

// StreamStats are the figures of one replicated stream of a link, updated
// by its sender or receiver.
type StreamStats struct {
	path, dir string

	messages, bytes, batches, dups, dropped atomic.Int64
	// quarantined counts the offsets of quarantined ranges passed on as
	// gaps (sender: acknowledged; receiver: recorded).
	quarantined atomic.Int64
	// receiver: the sender's backlog as of the last batch, the time of the
	// last message applied and of that batch, and when the stream stopped
	// (Unix nanoseconds; 0 while it runs).
	backlog  atomic.Uint64
	lastTime atomic.Int64
	reported atomic.Int64
	down     atomic.Int64
	// sender: its figures, as it last published them; the messages it
	// sent in batches since it started on this connection, and whether
	// it runs (its figures are its own, not a stopped sender's).
	fig     atomic.Pointer[lagFigures]
	sentMsg atomic.Uint64
	running atomic.Bool
	// receiver: the messages it received in batches since it started on
	// this connection, and the sender's last Backlog report.
	recvMsg atomic.Uint64
	rep     atomic.Pointer[backlogReport]

	mu       sync.Mutex
	err      string
	failures []Failure
	lag      func() lagFigures // sender
	samples  [12]sample
	ns       int
}

// lagFigures are a sender's figures: messages not acknowledged, the Unix
// nanoseconds of the oldest (0: none or not known), an estimate of their
// bytes, and the topic partitions it keeps.
type lagFigures struct {
	msgs   uint64
	oldest int64
	bytes  int64
	topics int
	unsent uint64 // of msgs, those not sent yet
	// unsentOldest is the Unix nanoseconds of the oldest not sent (0: none
	// or not known).
	unsentOldest int64
}

type sample struct {
	t               time.Time
	messages, bytes int64
}

// Link returns the figures of the link to peer, made on first use; a
// non-empty role updates the peer's role.
func (m *Monitor) Link(peer, role string) *LinkStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	l, ok := m.links[peer]
	if !ok {
		l = &LinkStats{peer: peer, role: role, streams: map[string]*StreamStats{}}
		m.links[peer] = l
	}
	if role != "" {
		l.mu.Lock()
		l.role = role
		l.mu.Unlock()
	}
	return l
}

// Rename files the figures kept under peer old under peer new, unless new
// has figures already.
func (m *Monitor) Rename(old, new string) {
	if old == new {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	l, ok := m.links[old]
	if !ok {
		return
	}
	delete(m.links, old)
	if _, taken := m.links[new]; taken {
		return
	}
	l.mu.Lock()
	l.peer = new
	l.mu.Unlock()
	m.links[new] = l
}

// Stream returns the figures of the stream at path in direction dir
// (DirSend or DirReceive), made on first use.
func (l *LinkStats) Stream(dir, path string) *StreamStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	s, ok := l.streams[dir+path]
	if !ok {
		s = &StreamStats{path: path, dir: dir}
		l.streams[dir+path] = s
	}
	return s
}

// Peer is the name of the node at the other end.
func (l *LinkStats) Peer() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.peer
}

// SetRate records the link's bandwidth cap, bytes per second.
func (l *LinkStats) SetRate(rate int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rate = rate
}

// Reconnected counts a connection lost and made again.
func (l *LinkStats) Reconnected() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reconnects++
}

// Up records that the link came up at now, with the peer at addr.
func (l *LinkStats) Up(addr string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.connected, l.since, l.addr, l.addrOf, l.lastErr = true, now, addr, nil, ""
}

// UpAt is Up with the peer's address read from addr whenever the figures
// are: a connection whose path migrates (QUIC connection migration, a NAT
// that rebinds the peer's port) shows the peer's current address.
func (l *LinkStats) UpAt(addr func() string, now time.Time) {
	l.Up(addr(), now)
	l.mu.Lock()
	l.addrOf = addr
	l.mu.Unlock()
}

// Down records that the link is down as of now, and why (err, if not nil).
func (l *LinkStats) Down(err error, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.addrOf != nil {
		l.addr, l.addrOf = l.addrOf(), nil // the last address it had
	}
	if l.connected {
		l.since = now
	}
	l.connected = false
	if err != nil {
		l.lastErr = err.Error()
	}
}

// record adds acknowledged or applied work and keeps a sample per second
// for the rates.
func (s *StreamStats) record(now time.Time, msgs, bytes int) {
	s.messages.Add(int64(msgs))
	s.bytes.Add(int64(bytes))
	s.batches.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ns == 0 || now.Sub(s.samples[(s.ns-1)%len(s.samples)].t) >= time.Second {
		s.samples[s.ns%len(s.samples)] = sample{now, s.messages.Load(), s.bytes.Load()}
		s.ns++
	}
}

func (s *StreamStats) rates(now time.Time) (msgs, bytes float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ns == 0 {
		return 0, 0
	}
	oldest := s.samples[0]
	if s.ns > len(s.samples) {
		oldest = s.samples[s.ns%len(s.samples)]
	}
	d := now.Sub(oldest.t).Seconds()
	if d < 1 {
		return 0, 0
	}
	return float64(s.messages.Load()-oldest.messages) / d, float64(s.bytes.Load()-oldest.bytes) / d
}

// SetErr records why the stream is not replicated; nil clears it.
func (s *StreamStats) SetErr(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = ""
	if err != nil {
		s.err = err.Error()
	}
}

func (s *StreamStats) setLag(f func() lagFigures) {
	s.mu.Lock()
	s.lag = f
	s.mu.Unlock()
}

// setFailures records the topic partitions a sender cannot read on from.
func (s *StreamStats) setFailures(m map[tp]Failure) {
	out := make([]Failure, 0, len(m))
	for _, f := range m {
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Topic < out[j].Topic || out[i].Topic == out[j].Topic && out[i].Partition < out[j].Partition
	})
	if len(out) == 0 {
		out = nil
	}
	s.mu.Lock()
	s.failures = out
	s.mu.Unlock()
}

func (s *StreamStats) status(now time.Time) StreamStatus {
	st := StreamStatus{Path: s.path, Direction: s.dir,
		Messages: s.messages.Load(), Bytes: s.bytes.Load(), Batches: s.batches.Load(),
		Duplicates: s.dups.Load(), Dropped: s.dropped.Load(), Quarantined: s.quarantined.Load()}
	st.MessagesPerSec, st.BytesPerSec = s.rates(now)
	s.mu.Lock()
	lag := s.lag
	st.Error = s.err
	st.Failed = s.failures
	s.mu.Unlock()
	if lag != nil {
		f := lag()
		st.LagMessages, st.BacklogBytes, st.Topics = f.msgs, f.bytes, f.topics
		if f.msgs > 0 && f.oldest != 0 {
			st.LagSeconds = max(0, now.Sub(time.Unix(0, f.oldest)).Seconds())
		}
	} else if s.dir == DirReceive {
		if rep := s.rep.Load(); rep != nil && rep.at >= s.reported.Load() {
			// The sender's Backlog report is the latest word.
			s.reportStatus(&st, rep, now)
		} else {
			// What the sender said with its last batch: the messages it
			// had not sent yet, the oldest of them no older than the last
			// applied (it sends the oldest data first).
			st.LagMessages = s.backlog.Load()
			if t := s.lastTime.Load(); st.LagMessages > 0 && t != 0 {
				st.LagSeconds = max(0, now.Sub(time.Unix(0, t)).Seconds())
			}
			if st.Messages > 0 {
				st.BacklogBytes = int64(st.LagMessages) * (st.Bytes / st.Messages)
			}
			if t := s.reported.Load(); t != 0 {
				st.ReportedAt = time.Unix(0, t).UTC()
			}
		}
		if t := s.down.Load(); t != 0 {
			// Not receiving: the replica may lack anything written at the
			// source since the stream stopped.
			st.LagSeconds = max(st.LagSeconds, now.Sub(time.Unix(0, t)).Seconds())
		}
	}
	return st
}

// Directions of a stream's figures, from this node.
const (
	DirSend    = "send"
	DirReceive = "receive"
)

// Links returns the status of every link, by peer name.
func (m *Monitor) Links() []LinkStatus {
	now := m.now()
	m.mu.Lock()
	links := make([]*LinkStats, 0, len(m.links))
	for _, l := range m.links {
		links = append(links, l)
	}
	m.mu.Unlock()
	out := make([]LinkStatus, 0, len(links))
	for _, l := range links {
		l.mu.Lock()
		if l.addrOf != nil {
			l.addr = l.addrOf()
		}
		ls := LinkStatus{Peer: l.peer, Role: l.role, Addr: l.addr, Connected: l.connected, Since: l.since,
			Reconnects: l.reconnects, LastError: l.lastErr, RateLimit: l.rate, Streams: []StreamStatus{}}
		streams := make([]*StreamStats, 0, len(l.streams))
		for _, s := range l.streams {
			streams = append(streams, s)
		}
		l.mu.Unlock()
		for _, s := range streams {
			ls.Streams = append(ls.Streams, s.status(now))
		}
		sort.Slice(ls.Streams, func(i, j int) bool {
			a, b := ls.Streams[i], ls.Streams[j]
			return a.Direction < b.Direction || a.Direction == b.Direction && a.Path < b.Path
		})
		out = append(out, ls)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Peer < out[j].Peer })
	return out
}

// LinksResponse is the body of GET /api/v1/links.
type LinksResponse struct {
	Node  string       `json:"node"`
	Links []LinkStatus `json:"links"`
}

// Handler serves GET /api/v1/links: this node's links as JSON.
func (m *Monitor) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := json.Marshal(LinksResponse{Node: m.node, Links: m.Links()})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(append(b, '\n'))
	})
}

var (
	labels      = []string{"peer", "stream", "direction"}
	descUp      = prometheus.NewDesc("weft_sync_link_up", "Whether the link to the peer is connected.", []string{"peer"}, nil)
	descReconn  = prometheus.NewDesc("weft_sync_reconnects_total", "Connections to the peer lost and made again.", []string{"peer"}, nil)
	descLag     = prometheus.NewDesc("weft_sync_lag_messages", "Messages the source holds and the replica has not acknowledged.", labels, nil)
	descLagSec  = prometheus.NewDesc("weft_sync_lag_seconds", "Age of the oldest message not yet replicated.", labels, nil)
	descBacklog = prometheus.NewDesc("weft_sync_backlog_bytes", "Estimated bytes not yet replicated.", labels, nil)
	descMsgs    = prometheus.NewDesc("weft_sync_messages_total", "Messages acknowledged (send) or applied (receive).", labels, nil)
	descBytes   = prometheus.NewDesc("weft_sync_bytes_total", "Batch bytes acknowledged (send) or applied (receive).", labels, nil)
	descBatches = prometheus.NewDesc("weft_sync_batches_total", "Batches acknowledged (send) or applied (receive).", labels, nil)
	descDups    = prometheus.NewDesc("weft_sync_duplicates_total", "Messages received that the replica held already, skipped.", labels, nil)
	descDropped = prometheus.NewDesc("weft_sync_dropped_total", "Messages the source dropped (retention, a full volume) before they were replicated.", labels, nil)
	descQuar    = prometheus.NewDesc("weft_sync_quarantined_total", "Offsets the source quarantined that crossed the link as gaps.", labels, nil)
)

// Describe is for prometheus.Collector.
func (m *Monitor) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descUp, descReconn, descLag, descLagSec, descBacklog, descMsgs, descBytes, descBatches, descDups, descDropped, descQuar} {
		ch <- d
	}
}

// Collect is for prometheus.Collector.
func (m *Monitor) Collect(ch chan<- prometheus.Metric) {
	for _, l := range m.Links() {
		up := 0.0
		if l.Connected {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, up, l.Peer)
		ch <- prometheus.MustNewConstMetric(descReconn, prometheus.CounterValue, float64(l.Reconnects), l.Peer)
		for _, s := range l.Streams {
			lv := []string{l.Peer, s.Path, s.Direction}
			ch <- prometheus.MustNewConstMetric(descLag, prometheus.GaugeValue, float64(s.LagMessages), lv...)
			ch <- prometheus.MustNewConstMetric(descLagSec, prometheus.GaugeValue, s.LagSeconds, lv...)
			ch <- prometheus.MustNewConstMetric(descBacklog, prometheus.GaugeValue, float64(s.BacklogBytes), lv...)
			ch <- prometheus.MustNewConstMetric(descMsgs, prometheus.CounterValue, float64(s.Messages), lv...)
			ch <- prometheus.MustNewConstMetric(descBytes, prometheus.CounterValue, float64(s.Bytes), lv...)
			ch <- prometheus.MustNewConstMetric(descBatches, prometheus.CounterValue, float64(s.Batches), lv...)
			ch <- prometheus.MustNewConstMetric(descDups, prometheus.CounterValue, float64(s.Duplicates), lv...)
			ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(s.Dropped), lv...)
			ch <- prometheus.MustNewConstMetric(descQuar, prometheus.CounterValue, float64(s.Quarantined), lv...)
		}
	}
}
