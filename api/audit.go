package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/weft-io/weft/store"
)

// AuditRecord is one record of the audit stream: who (Subject) did what
// (Action) to which object, on which node, when.
type AuditRecord struct {
	Time    time.Time       `json:"ts"`
	Node    string          `json:"node"`
	Subject string          `json:"subject,omitempty"`
	Action  string          `json:"action"`
	Object  string          `json:"object"`
	Detail  json.RawMessage `json:"detail,omitempty"`
}

// SystemSubject is the subject of the records of what a node does by
// itself (volume policies, snapshots, mirrors, retention): the store
// writes them without a caller.
const SystemSubject = "system"

// AuditQuery selects audit records: a time range, and optionally the
// subject (exact; SystemSubject for the node's own actions), the object
// (a path prefix: /shadows/devices/pump-7, or /shadows for every shadow),
// the device (its shadow's records: desired state, commands), and the
// actions (each exact, or a prefix when it ends with a dot: shadow.).
// Cursor, from a page's Next, goes on where that page stopped.
type AuditQuery struct {
	RangeQuery
	Subject, Object, Device string
	Actions                 []string
	Cursor                  string
	// NewestFirst pages from the newest records back even with a From
	// (which then only bounds the range), as the console does.
	NewestFirst bool
}

// AuditResponse is the answer to GET /api/v1/audit, and a page of
// AuditLog: Records oldest first; More says the query holds more
// records, and Next is the cursor that gets them.
type AuditResponse struct {
	Records []AuditRecord `json:"records"`
	More    bool          `json:"more"`
	Next    string        `json:"next,omitempty"`
}

// auditRecordJSON is a record as stored: what the API appends (subject in
// detail.subject, the route's detail in detail.detail) and what the store
// writes for its own actions (detail as given).
type auditRecordJSON struct {
	TS     time.Time       `json:"ts"`
	Action string          `json:"action"`
	Object string          `json:"object"`
	Node   string          `json:"node"`
	Detail json.RawMessage `json:"detail"`
}

// matches says whether rec is one q selects (its time aside).
func (q *AuditQuery) matches(rec *AuditRecord) bool {
	if q.Subject != "" && rec.Subject != q.Subject {
		return false
	}
	if q.Object != "" && !strings.HasPrefix(rec.Object, q.Object) {
		return false
	}
	if q.Device != "" && rec.Object != store.ShadowsTable+"/"+q.Device {
		return false
	}
	if len(q.Actions) == 0 {
		return true
	}
	for _, a := range q.Actions {
		if rec.Action == a || (strings.HasSuffix(a, ".") && strings.HasPrefix(rec.Action, a)) {
			return true
		}
	}
	return false
}

// parseAudit decodes a stored audit record; false if it is none.
func parseAudit(m *store.Message) (AuditRecord, bool) {
	var raw auditRecordJSON
	if err := json.Unmarshal(m.Value, &raw); err != nil || raw.Action == "" {
		return AuditRecord{}, false
	}
	rec := AuditRecord{Time: raw.TS, Node: raw.Node, Action: raw.Action, Object: raw.Object, Detail: raw.Detail}
	if rec.Time.IsZero() {
		rec.Time = m.Timestamp
	}
	var wrapped struct {
		Subject *string         `json:"subject"`
		Detail  json.RawMessage `json:"detail"`
	}
	if json.Unmarshal(raw.Detail, &wrapped) == nil && wrapped.Subject != nil {
		rec.Subject, rec.Detail = *wrapped.Subject, wrapped.Detail
	}
	if rec.Subject == "" {
		rec.Subject = SystemSubject
	}
	if string(rec.Detail) == "null" {
		rec.Detail = nil
	}
	return rec, true
}

// auditCursor is where a page of audit records stopped: for each
// partition of each topic of the audit stream (key partKey), the offset
// the next page reads up to (Desc, newest first) or from (ascending, a
// query with from).
type auditCursor struct {
	Desc  bool              `json:"desc,omitempty"`
	Parts map[string]uint64 `json:"parts"`
}

func partKey(topic string, part int) string { return strconv.Itoa(part) + "/" + topic }

func (c auditCursor) encode() string {
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeAuditCursor(s string) (auditCursor, error) {
	var c auditCursor
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		err = json.Unmarshal(b, &c)
	}
	if err != nil || c.Parts == nil {
		return c, fmt.Errorf("%w: cursor %q: use the next of a previous answer", store.ErrInvalid, s)
	}
	return c, nil
}

// auditScan is one partition's share of a page: the matching records
// found, in the order read, and how far it read.
type auditScan struct {
	key        string
	topic      string
	part       int
	start, end uint64 // the partition's window for the query
	frontier   uint64 // desc: the lowest offset read; asc: the next to read
	found      []auditFound
	taken      int
}

type auditFound struct {
	rec AuditRecord
	off uint64
}

// AuditLog returns a page of the audit records q selects, from every topic
// of the audit stream (this node's, and those replicated from other
// nodes), oldest first. Without q.From (or with q.NewestFirst) the page
// holds the latest records and the pages that follow (Next) go back in
// time; with q.From the first records from then on, and the pages that
// follow go forward. A page
// reads at most MaxRangeScan records: a filter that matches few records of
// many gives short pages, with More and Next, never a window past which
// records cannot be reached.
func (s *Server) AuditLog(ctx context.Context, q AuditQuery) (AuditResponse, error) {
	if q.Limit <= 0 {
		q.Limit = DefaultLimit
	}
	desc := q.From.IsZero() || q.NewestFirst
	var cur *auditCursor
	if q.Cursor != "" {
		c, err := decodeAuditCursor(q.Cursor)
		if err != nil {
			return AuditResponse{}, err
		}
		if c.Desc != desc {
			return AuditResponse{}, fmt.Errorf("%w: the cursor is of a query with from, or without, unlike this one", store.ErrInvalid)
		}
		cur = &c
	}
	st := s.cfg.Store.Stream(store.AuditStream)
	info, err := s.cfg.Store.Stat(ctx, store.AuditStream)
	if err != nil {
		return AuditResponse{}, err
	}
	var scans []*auditScan
	after := ""
	for {
		topics, err := st.Topics(ctx, "", after, 1000)
		if err != nil {
			return AuditResponse{}, err
		}
		for _, t := range topics {
			for p := range max(info.Partitions, 1) {
				sc := &auditScan{key: partKey(t, p), topic: t, part: p}
				low, next, err := st.Bounds(ctx, t, p)
				if err != nil {
					return AuditResponse{}, err
				}
				if sc.end, err = rangeEnd(ctx, st, t, p, low, next, q.RangeQuery); err != nil {
					return AuditResponse{}, err
				}
				sc.start = low
				if !q.From.IsZero() {
					if sc.start, err = firstAtOrAfter(ctx, st, t, p, low, sc.end, q.From); err != nil {
						return AuditResponse{}, err
					}
				}
				if cur != nil {
					if b, ok := cur.Parts[sc.key]; ok {
						if desc {
							sc.end = min(sc.end, b)
						} else {
							sc.start = max(sc.start, b)
						}
					}
				}
				sc.end = max(sc.end, sc.start)
				sc.frontier = sc.end
				if !desc {
					sc.frontier = sc.start
				}
				scans = append(scans, sc)
			}
		}
		if len(topics) < 1000 {
			break
		}
		after = topics[len(topics)-1]
	}

	budget := MaxRangeScan
	for _, sc := range scans {
		if err := s.scanAudit(ctx, st, sc, &q, desc, &budget); err != nil {
			return AuditResponse{}, err
		}
	}

	// Merge, keeping each partition's order, the newest (desc) or oldest
	// first, up to the limit.
	var out []AuditRecord
	for len(out) < q.Limit {
		var best *auditScan
		for _, sc := range scans {
			if sc.taken == len(sc.found) {
				continue
			}
			t := sc.found[sc.taken].rec.Time
			if best == nil {
				best = sc
				continue
			}
			bt := best.found[best.taken].rec.Time
			if (desc && t.After(bt)) || (!desc && t.Before(bt)) {
				best = sc
			}
		}
		if best == nil {
			break
		}
		out = append(out, best.found[best.taken].rec)
		best.taken++
	}

	next := auditCursor{Desc: desc, Parts: map[string]uint64{}}
	more := false
	for _, sc := range scans {
		b := sc.frontier
		if sc.taken < len(sc.found) {
			b = sc.found[sc.taken].off
			if desc {
				b++
			}
		}
		next.Parts[sc.key] = b
		if (desc && b > sc.start) || (!desc && b < sc.end) {
			more = true
		}
	}
	if desc {
		slices.Reverse(out)
	}
	if out == nil {
		out = []AuditRecord{}
	}
	resp := AuditResponse{Records: out, More: more}
	if more {
		resp.Next = next.encode()
	}
	return resp, nil
}

// scanAudit reads sc's partition from its frontier, newest first (desc)
// or oldest first, keeping the records q selects, until it has q.Limit of
// them, reaches the end of its window, or the budget of records to read
// is spent.
func (s *Server) scanAudit(ctx context.Context, st *store.Stream, sc *auditScan, q *AuditQuery, desc bool, budget *int) error {
	const chunk = 500
	keep := func(m *store.Message) {
		if !inRange(m, q.RangeQuery) {
			return
		}
		if rec, ok := parseAudit(m); ok && q.matches(&rec) {
			sc.found = append(sc.found, auditFound{rec: rec, off: m.Offset})
		}
	}
	for len(sc.found) < q.Limit && *budget > 0 {
		if desc {
			if sc.frontier <= sc.start {
				return nil
			}
			lo := max(sc.start, sc.frontier-min(sc.frontier-sc.start, uint64(min(chunk, *budget))))
			msgs, err := readSpan(ctx, st, sc.topic, sc.part, lo, sc.frontier)
			if err != nil {
				return err
			}
			*budget -= int(sc.frontier - lo)
			for i := len(msgs) - 1; i >= 0; i-- {
				keep(&msgs[i])
			}
			sc.frontier = lo
			continue
		}
		if sc.frontier >= sc.end {
			return nil
		}
		hi := min(sc.end, sc.frontier+uint64(min(chunk, *budget)))
		msgs, err := readSpan(ctx, st, sc.topic, sc.part, sc.frontier, hi)
		if err != nil {
			return err
		}
		*budget -= int(hi - sc.frontier)
		for i := range msgs {
			keep(&msgs[i])
		}
		sc.frontier = hi
	}
	return nil
}

// auditList serves GET /api/v1/audit?from=&to=&subject=&object=&device=&action=&cursor=&limit=.
func (s *Server) auditList(w http.ResponseWriter, r *http.Request) {
	qv := r.URL.Query()
	rq, err := ParseRange(qv, s.now())
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	q := AuditQuery{RangeQuery: rq, Subject: qv.Get("subject"), Object: qv.Get("object"), Device: qv.Get("device"), Cursor: qv.Get("cursor")}
	for _, v := range qv["action"] {
		for a := range strings.SplitSeq(v, ",") {
			if a = strings.TrimSpace(a); a != "" {
				q.Actions = append(q.Actions, a)
			}
		}
	}
	page, err := s.AuditLog(r.Context(), q)
	if err != nil {
		s.Error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, page)
}
