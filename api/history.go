package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/store"
)

// Header names the gateway stamps on device messages (gateway.HeaderTopic
// and gateway.HeaderDevice; package gateway is not imported here).
const (
	headerMQTTTopic = "mqtt_topic"
)

// MaxRangeScan is the most messages a time-range read with a filter (the
// events of a device, the audit records of a subject) looks at for one
// answer; what it leaves is signalled by more.
const MaxRangeScan = 20000

// RangeQuery selects the messages of a time range: From (inclusive) to To
// (exclusive). With From zero, the latest Limit messages before To.
type RangeQuery struct {
	From, To time.Time
	Limit    int
	// Latest (From zero, no to given) reads the latest messages by offset
	// whatever their stamps: a message stamped after To by a clock ahead
	// of this node's is still among the latest.
	Latest bool
}

// ParseRange reads from, to (RFC 3339) and limit (default DefaultLimit,
// at most MaxLimit) from a query; to defaults to now.
func ParseRange(q url.Values, now time.Time) (RangeQuery, error) {
	rq := RangeQuery{To: now.Add(time.Nanosecond)}
	var err error
	if v := q.Get("from"); v != "" {
		if rq.From, err = time.Parse(time.RFC3339Nano, v); err != nil {
			return rq, fmt.Errorf("from %q: want an RFC 3339 time", v)
		}
	}
	rq.Latest = q.Get("from") == "" && q.Get("to") == ""
	if v := q.Get("to"); v != "" {
		if rq.To, err = time.Parse(time.RFC3339Nano, v); err != nil {
			return rq, fmt.Errorf("to %q: want an RFC 3339 time", v)
		}
	}
	if !rq.From.IsZero() && !rq.From.Before(rq.To) {
		return rq, errors.New("from must be before to")
	}
	if rq.Limit, err = intParam(q, "limit", DefaultLimit, 1, MaxLimit); err != nil {
		return rq, err
	}
	return rq, nil
}

// Gap is a range of offsets of a partition a read stepped over because
// they were quarantined: given up as damaged at the node, or at the edge
// the stream is replicated from (store.GapError). From is the first
// offset, To the one after the last, as recorded.
type Gap struct {
	From      uint64 `json:"from"`
	To        uint64 `json:"to"`
	Partition int    `json:"partition"`
}

// gaps collects the gaps a read steps over, each once. A nil *gaps
// steps over them without keeping them.
type gaps struct{ list []Gap }

func (g *gaps) add(e *store.GapError) {
	if g == nil {
		return
	}
	for _, have := range g.list {
		if have.Partition == e.Partition && have.From == e.From {
			return
		}
	}
	g.list = append(g.list, Gap{From: e.From, To: e.To, Partition: e.Partition})
}

// start is the first offset of the gap of partition part that holds
// offset off, if one does.
func (g *gaps) start(part int, off uint64) (uint64, bool) {
	if g == nil {
		return 0, false
	}
	for _, have := range g.list {
		if have.Partition == part && have.From <= off && off < have.To {
			return have.From, true
		}
	}
	return 0, false
}

// ReadRange returns, oldest first, the messages of a stream's topic (all
// partitions) in the time range q whose match says yes (nil: all). It
// finds the range's ends by binary search over the offsets (message
// timestamps grow with offsets), then reads forward from q.From or, with
// From zero, backward from q.To. It looks at no more than MaxRangeScan
// messages when match is set. more reports that the range holds matching
// messages it did not return. Quarantined offsets are stepped over
// (ReadRangeGaps says which).
func ReadRange(ctx context.Context, st *store.Stream, parts int, topic string, q RangeQuery, match func(*store.Message) bool) (msgs []store.Message, more bool, err error) {
	msgs, _, more, err = ReadRangeGaps(ctx, st, parts, topic, q, match)
	return msgs, more, err
}

// ReadRangeGaps is ReadRange that also returns the quarantined ranges
// (store.GapError) it stepped over, in the order it met them.
func ReadRangeGaps(ctx context.Context, st *store.Stream, parts int, topic string, q RangeQuery, match func(*store.Message) bool) (msgs []store.Message, skipped []Gap, more bool, err error) {
	if q.Limit <= 0 {
		q.Limit = DefaultLimit
	}
	budget := MaxRangeScan
	g := &gaps{}
	for p := range max(parts, 1) {
		got, m, err := readPartitionRange(ctx, st, topic, p, q, match, &budget, g)
		if err != nil {
			return nil, nil, false, err
		}
		msgs, more = append(msgs, got...), more || m
	}
	skipped = g.list
	msgs = receiveOrder(msgs)
	if len(msgs) > q.Limit {
		more = true
		if q.From.IsZero() {
			msgs = msgs[len(msgs)-q.Limit:]
		} else {
			msgs = msgs[:q.Limit]
		}
	}
	return msgs, skipped, more, nil
}

// readPartitionRange reads the range q of one partition. The gaps it adds
// to g are those within the offsets its answer covers: from the first
// offset of the range (or its first message returned, when it stopped
// short reading backward) to the last (or its last message returned, when
// it stopped short reading forward), and one that begins where the range
// ends, whose lost messages may be stamped in it.
func readPartitionRange(ctx context.Context, st *store.Stream, topic string, part int, q RangeQuery, match func(*store.Message) bool, budget *int, g *gaps) ([]store.Message, bool, error) {
	low, next, err := st.Bounds(ctx, topic, part)
	if err != nil {
		return nil, false, err
	}
	end, err := rangeEnd(ctx, st, topic, part, low, next, q)
	if err != nil {
		return nil, false, err
	}
	pg := &gaps{}
	var out []store.Message
	var more bool
	coverLo, coverHi := low, end
	if !q.From.IsZero() {
		if coverLo, err = firstAtOrAfter(ctx, st, topic, part, low, end, q.From); err != nil {
			return nil, false, err
		}
		out, more, err = readForward(ctx, st, topic, part, coverLo, end, q, match, budget, pg)
		if more && len(out) > 0 {
			coverHi = out[len(out)-1].Offset
		}
	} else {
		out, more, err = readBackward(ctx, st, topic, part, low, end, q, match, budget, pg)
		if more && len(out) > 0 {
			coverLo = out[0].Offset
		}
	}
	if err != nil {
		return nil, false, err
	}
	if !more && end < next {
		// A gap that begins where the range ends: the read never met it.
		_, err := st.Read(ctx, topic, part, end, store.ReadOptions{Limit: 1})
		var gap *store.GapError
		if errors.As(err, &gap) {
			pg.add(gap)
		}
	}
	for _, gp := range pg.list {
		if gp.To > coverLo && gp.From <= coverHi {
			g.add(&store.GapError{Partition: gp.Partition, From: gp.From, To: gp.To})
		}
	}
	return out, more, nil
}

// readForward reads offsets start to end of a partition, oldest first,
// keeping the messages in q's range that match says yes to, at most
// q.Limit.
func readForward(ctx context.Context, st *store.Stream, topic string, part int, start, end uint64, q RangeQuery, match func(*store.Message) bool, budget *int, g *gaps) ([]store.Message, bool, error) {
	const chunk = 500
	var out []store.Message
	for off := start; off < end; {
		if match != nil && *budget <= 0 {
			return out, true, nil
		}
		msgs, err := st.Read(ctx, topic, part, off, store.ReadOptions{Limit: int(min(uint64(chunk), end-off))})
		var gap *store.GapError
		if errors.As(err, &gap) && gap.To > off {
			g.add(gap)
			off = gap.To
			continue
		}
		if err != nil || len(msgs) == 0 {
			return out, false, err
		}
		for i := range msgs {
			m := &msgs[i]
			if m.Offset >= end {
				return out, false, nil
			}
			*budget--
			if inRange(m, q) && (match == nil || match(m)) {
				if len(out) == q.Limit {
					return out, true, nil
				}
				out = append(out, *m)
			}
		}
		off = msgs[len(msgs)-1].Offset + 1
	}
	return out, false, nil
}

// readBackward reads a partition backward from end down to low, a chunk
// at a time, each read forward, keeping the latest q.Limit messages in
// q's range that match says yes to.
func readBackward(ctx context.Context, st *store.Stream, topic string, part int, low, end uint64, q RangeQuery, match func(*store.Message) bool, budget *int, g *gaps) ([]store.Message, bool, error) {
	const chunk = 500
	var out []store.Message
	for hi := end; hi > low; {
		if match != nil && *budget <= 0 {
			return out, true, nil
		}
		lo := max(low, hi-min(hi-low, chunk))
		msgs, err := readSpanGaps(ctx, st, topic, part, lo, hi, g)
		if err != nil {
			return nil, false, err
		}
		var kept []store.Message
		for i := range msgs {
			*budget--
			if inRange(&msgs[i], q) && (match == nil || match(&msgs[i])) {
				kept = append(kept, msgs[i])
			}
		}
		if n := len(out) + len(kept); n >= q.Limit {
			kept = kept[n-q.Limit:]
			return append(kept, out...), n > q.Limit || lo > low, nil
		}
		out = append(kept, out...)
		hi = lo
		if from, ok := g.start(part, lo); ok && len(msgs) == 0 {
			hi = max(low, min(hi, from)) // a long gap: past it at once
		}
	}
	return out, false, nil
}

// Where stamps and offsets disagree (a clock stepped back, an edge's clock
// ahead of the core's), offsets and receive order win: "latest" is by
// offset, a range returns only messages stamped in it, and the partitions
// are merged without reordering any one of them.

// rangeEnd is the offset a partition's read stops before: its end for a
// Latest query, else the first message stamped at or after q.To.
func rangeEnd(ctx context.Context, st *store.Stream, topic string, part int, low, next uint64, q RangeQuery) (uint64, error) {
	if q.Latest && q.From.IsZero() {
		return next, nil
	}
	return firstAtOrAfter(ctx, st, topic, part, low, next, q.To)
}

// inRange says whether m's stamp is in q's range. The offsets a binary
// search over stamps finds bound the range only where stamps grow with
// offsets; this holds the answer to the range where they do not.
func inRange(m *store.Message, q RangeQuery) bool {
	if q.Latest && q.From.IsZero() {
		return true
	}
	return !m.Timestamp.Before(q.From) && m.Timestamp.Before(q.To)
}

// receiveOrder merges the messages of several partitions, each in offset
// order, by stamp, never reordering the messages of one partition: a
// stamp out of step with its partition's order does not move it.
func receiveOrder(msgs []store.Message) []store.Message {
	var parts [][]store.Message
	for i := 0; i < len(msgs); {
		j := i + 1
		for j < len(msgs) && msgs[j].Partition == msgs[i].Partition && msgs[j].Offset > msgs[j-1].Offset {
			j++
		}
		parts = append(parts, msgs[i:j])
		i = j
	}
	if len(parts) <= 1 {
		return msgs
	}
	out := make([]store.Message, 0, len(msgs))
	for {
		best := -1
		for k, p := range parts {
			if len(p) > 0 && (best < 0 || p[0].Timestamp.Before(parts[best][0].Timestamp)) {
				best = k
			}
		}
		if best < 0 {
			return out
		}
		out = append(out, parts[best][0])
		parts[best] = parts[best][1:]
	}
}

// readSpan reads the offsets lo to hi (exclusive) of a partition,
// stepping over quarantined ones.
func readSpan(ctx context.Context, st *store.Stream, topic string, part int, lo, hi uint64) ([]store.Message, error) {
	return readSpanGaps(ctx, st, topic, part, lo, hi, nil)
}

// readSpanGaps is readSpan that adds the quarantined ranges it steps over
// to g.
func readSpanGaps(ctx context.Context, st *store.Stream, topic string, part int, lo, hi uint64, g *gaps) ([]store.Message, error) {
	var out []store.Message
	for off := lo; off < hi; {
		msgs, err := st.Read(ctx, topic, part, off, store.ReadOptions{Limit: int(hi - off)})
		var gap *store.GapError
		if errors.As(err, &gap) && gap.To > off {
			g.add(gap)
			off = gap.To
			continue
		}
		if errors.Is(err, store.ErrTrimmed) {
			// Retention moved the low-water mark meanwhile.
			l, _, berr := st.Bounds(ctx, topic, part)
			if berr != nil || l <= off {
				return nil, err
			}
			off = l
			continue
		}
		if err != nil {
			return nil, err
		}
		if len(msgs) == 0 {
			break
		}
		for _, m := range msgs {
			if m.Offset < hi {
				out = append(out, m)
			}
		}
		off = msgs[len(msgs)-1].Offset + 1
	}
	return out, nil
}

// firstAtOrAfter is the first offset in [lo, hi) of a message stamped at
// or after t, hi if none. An offset it cannot read (quarantined, or
// trimmed meanwhile) counts as stamped like the first message it can read
// after it (hi, after the last): the search stays monotonic, and a range
// that starts in a gap starts at the gap, for the read to step over it.
func firstAtOrAfter(ctx context.Context, st *store.Stream, topic string, part int, lo, hi uint64, t time.Time) (uint64, error) {
	for lo < hi {
		mid := lo + (hi-lo)/2
		msgs, _, err := st.ReadPast(ctx, topic, part, mid, store.ReadOptions{Limit: 1})
		if err != nil {
			return 0, err
		}
		if len(msgs) == 0 || msgs[0].Offset >= hi || !msgs[0].Timestamp.Before(t) {
			hi = mid
		} else {
			lo = max(mid, msgs[0].Offset) + 1
		}
	}
	return lo, nil
}

// RemoteHistory fetches the messages of a device that the node does not
// hold from the device's edge. The core implements it over the sync link.
type RemoteHistory interface {
	History(ctx context.Context, edge, device string, q RangeQuery) (msgs []store.Message, more bool, err error)
}

// ErrEdgeNotConnected is the error of a request the node must pass to an
// edge whose link is down (503 Edge not connected).
var ErrEdgeNotConnected = errors.New("api: edge not connected")

// disconnected is the optional capability of a RemoteHistory error that
// says the edge's link is down, and since when (zero: unknown); the
// core's link.NotConnectedError has it.
type disconnected interface {
	error
	DisconnectedSince() time.Time
}

// HistoryResponse is the answer to GET /api/v1/devices/{id}/history.
// Source says where the messages come from: "local" (this node's
// /telemetry/by_device), or "edge" when the node fetched them from the
// device's edge (Edge) because it holds none.
//
// Gaps are the ranges of offsets of the device's topic the read stepped
// over because they were quarantined (given up as damaged here, or at the
// edge and replicated as a gap): their messages are lost, and the answer
// says so instead of failing.
type HistoryResponse struct {
	Device   string    `json:"device"`
	Source   string    `json:"source"`
	Edge     string    `json:"edge,omitempty"`
	Messages []Message `json:"messages"`
	Gaps     []Gap     `json:"gaps"`
	More     bool      `json:"more"`
}

// History is a device's history as History returns it.
type History struct {
	Source, Edge string
	Messages     []store.Message
	// Gaps are the quarantined ranges stepped over (local reads only).
	Gaps []Gap
	More bool
}

// DeviceHistory returns the messages of device id in the time range q,
// from /telemetry/by_device or, when the node holds none and has a
// RemoteHistory, from the device's edge. A device the token c may not see
// is store.ErrNotFound.
func (s *Server) DeviceHistory(ctx context.Context, c *certs.TokenClaims, id string, q RangeQuery) (History, error) {
	edge, err := s.deviceEdge(ctx, c, id)
	if err != nil {
		return History{}, err
	}
	info, err := s.cfg.Store.Stat(ctx, store.ByDeviceStream)
	if err != nil {
		return History{}, err
	}
	msgs, skipped, more, err := ReadRangeGaps(ctx, s.cfg.Store.Stream(store.ByDeviceStream), info.Partitions, id, q, nil)
	if err != nil {
		return History{}, err
	}
	h := History{Source: "local", Messages: msgs, Gaps: skipped, More: more}
	if len(msgs) == 0 && len(skipped) == 0 && s.cfg.RemoteHistory != nil && edge != "" && edge != s.cfg.Store.Name() {
		msgs, more, err := s.cfg.RemoteHistory.History(ctx, edge, id, q)
		var down disconnected
		if errors.As(err, &down) {
			return History{}, fmt.Errorf("%w: history of %s: %v", ErrEdgeNotConnected, id, err)
		}
		if err != nil {
			return History{}, fmt.Errorf("api: history of %s from edge %s: %w", id, edge, err)
		}
		h = History{Source: "edge", Edge: edge, Messages: msgs, More: more}
	}
	return h, nil
}

// deviceEdge checks that the token c may see device id and returns the
// device's edge. A device without a shadow may be read by unscoped tokens
// (its messages may be there all the same).
func (s *Server) deviceEdge(ctx context.Context, c *certs.TokenClaims, id string) (string, error) {
	scope, err := ScopeFilter(c)
	if err != nil {
		return "", err
	}
	d, err := s.Device(ctx, c, id)
	switch {
	case err == nil:
		return d.Edge, nil
	case errors.Is(err, store.ErrNotFound) && !scoped(scope):
		if !certs.ValidName(id) {
			return "", fmt.Errorf("%w: device id %q", store.ErrInvalid, id)
		}
		return "", nil
	}
	return "", err
}

func (s *Server) readByDevice(ctx context.Context, id string, q RangeQuery, match func(*store.Message) bool) ([]store.Message, bool, error) {
	info, err := s.cfg.Store.Stat(ctx, store.ByDeviceStream)
	if err != nil {
		return nil, false, err
	}
	return ReadRange(ctx, s.cfg.Store.Stream(store.ByDeviceStream), info.Partitions, id, q, match)
}

// DeviceEvents returns the latest events of device id before q.To (or in
// the range q), oldest first: the messages it published on
// devices/<id>/events[/<kind>].
func (s *Server) DeviceEvents(ctx context.Context, c *certs.TokenClaims, id string, q RangeQuery) ([]store.Message, bool, error) {
	if _, err := s.deviceEdge(ctx, c, id); err != nil {
		return nil, false, err
	}
	prefix := "devices/" + id + "/events"
	return s.readByDevice(ctx, id, q, func(m *store.Message) bool {
		t := m.Headers[headerMQTTTopic]
		return t == prefix || strings.HasPrefix(t, prefix+"/")
	})
}

// MessagesOf converts store messages to their JSON form.
func MessagesOf(msgs []store.Message) []Message {
	out := make([]Message, len(msgs))
	for i, m := range msgs {
		out[i] = MessageJSON(m)
	}
	return out
}

// deviceHistory serves GET /api/v1/devices/{id}/history.
func (s *Server) deviceHistory(w http.ResponseWriter, r *http.Request) {
	q, err := ParseRange(r.URL.Query(), s.now())
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	id := r.PathValue("id")
	h, err := s.DeviceHistory(r.Context(), Claims(r.Context()), id, q)
	if err != nil {
		s.deviceError(w, r, err)
		return
	}
	gaps := h.Gaps
	if gaps == nil {
		gaps = []Gap{}
	}
	writeJSON(w, http.StatusOK, HistoryResponse{Device: id, Source: h.Source, Edge: h.Edge, Messages: MessagesOf(h.Messages), Gaps: gaps, More: h.More})
}

// EventsResponse is the answer to GET /api/v1/devices/{id}/events.
type EventsResponse struct {
	Device string    `json:"device"`
	Events []Message `json:"events"`
	More   bool      `json:"more"`
}

// deviceEvents serves GET /api/v1/devices/{id}/events.
func (s *Server) deviceEvents(w http.ResponseWriter, r *http.Request) {
	q, err := ParseRange(r.URL.Query(), s.now())
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	id := r.PathValue("id")
	msgs, more, err := s.DeviceEvents(r.Context(), Claims(r.Context()), id, q)
	if err != nil {
		s.deviceError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, EventsResponse{Device: id, Events: MessagesOf(msgs), More: more})
}
