package api

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
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

// AuditQuery selects audit records: a time range, and optionally the
// subject (exact) and the object (a path prefix: /shadows/devices/pump-7,
// or /shadows for every shadow).
type AuditQuery struct {
	RangeQuery
	Subject, Object string
}

// AuditResponse is the answer to GET /api/v1/audit.
type AuditResponse struct {
	Records []AuditRecord `json:"records"`
	More    bool          `json:"more"`
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
	if string(rec.Detail) == "null" {
		rec.Detail = nil
	}
	return rec, true
}

// AuditLog returns the audit records q selects, oldest first, from every
// topic of the audit stream (this node's, and those replicated from other
// nodes).
func (s *Server) AuditLog(ctx context.Context, q AuditQuery) ([]AuditRecord, bool, error) {
	st := s.cfg.Store.Stream(store.AuditStream)
	info, err := s.cfg.Store.Stat(ctx, store.AuditStream)
	if err != nil {
		return nil, false, err
	}
	match := func(m *store.Message) bool {
		rec, ok := parseAudit(m)
		return ok && (q.Subject == "" || rec.Subject == q.Subject) && (q.Object == "" || strings.HasPrefix(rec.Object, q.Object))
	}
	var all []store.Message
	more := false
	after := ""
	for {
		topics, err := st.Topics(ctx, "", after, 1000)
		if err != nil {
			return nil, false, err
		}
		for _, t := range topics {
			msgs, m, err := ReadRange(ctx, st, info.Partitions, t, q.RangeQuery, match)
			if err != nil {
				return nil, false, err
			}
			all, more = append(all, msgs...), more || m
		}
		if len(topics) < 1000 {
			break
		}
		after = topics[len(topics)-1]
	}
	recs := make([]AuditRecord, 0, len(all))
	for i := range all {
		if rec, ok := parseAudit(&all[i]); ok {
			recs = append(recs, rec)
		}
	}
	slices.SortStableFunc(recs, func(a, b AuditRecord) int { return a.Time.Compare(b.Time) })
	if len(recs) > q.Limit {
		more = true
		if q.From.IsZero() {
			recs = recs[len(recs)-q.Limit:]
		} else {
			recs = recs[:q.Limit]
		}
	}
	return recs, more, nil
}

// auditList serves GET /api/v1/audit?from=&to=&subject=&object=&limit=.
func (s *Server) auditList(w http.ResponseWriter, r *http.Request) {
	rq, err := ParseRange(r.URL.Query(), s.now())
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	q := AuditQuery{RangeQuery: rq, Subject: r.URL.Query().Get("subject"), Object: r.URL.Query().Get("object")}
	recs, more, err := s.AuditLog(r.Context(), q)
	if err != nil {
		s.Error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, AuditResponse{Records: recs, More: more})
}
