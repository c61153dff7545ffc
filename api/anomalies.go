package api

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"

	"github.com/weft-io/weft/anomaly"
	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/shadow"
	"github.com/weft-io/weft/store"
)

// AnomalyRecord is a detection as GET /api/v1/anomalies lists it: what the
// edge sent up, and which edge.
type AnomalyRecord struct {
	anomaly.Detection
	Edge string `json:"edge"`
}

// AnomaliesResponse is the answer to GET /api/v1/anomalies: detections,
// newest first. More says that the range holds more than were returned.
type AnomaliesResponse struct {
	Anomalies []AnomalyRecord `json:"anomalies"`
	More      bool            `json:"more"`
}

// AnomalyQuery selects detections: a time range and limit, and optionally
// one device or one edge.
type AnomalyQuery struct {
	Range        RangeQuery
	Device, Edge string
}

// Anomalies returns the detections the edges sent up (/uplink/events) in
// q's range, newest first, those of devices the token c may see only.
func (s *Server) Anomalies(ctx context.Context, c *certs.TokenClaims, q AnomalyQuery) ([]AnomalyRecord, bool, error) {
	scope, err := ScopeFilter(c)
	if err != nil {
		return nil, false, err
	}
	info, err := s.cfg.Store.Stat(ctx, store.UplinkStream)
	if err != nil {
		return nil, false, err
	}
	st := s.cfg.Store.Stream(store.UplinkStream)
	topics := []string{q.Edge}
	if q.Edge == "" {
		if topics, err = st.AllTopics(ctx); err != nil {
			return nil, false, err
		}
	}
	visible := map[string]bool{}
	allowed := func(dev string) bool {
		if !scoped(scope) {
			return true
		}
		ok, seen := visible[dev]
		if !seen {
			d, err := shadow.Get(ctx, s.cfg.Store, dev)
			ok = err == nil && scopeMatch(&scope, &d)
			visible[dev] = ok
		}
		return ok
	}
	match := func(m *store.Message) bool {
		dev := string(m.Key)
		return m.Headers[anomaly.RecordHeader] == anomaly.RecordAnomaly && (q.Device == "" || dev == q.Device) && allowed(dev)
	}
	var out []AnomalyRecord
	more := false
	for _, topic := range topics {
		msgs, m, err := ReadRange(ctx, st, info.Partitions, topic, q.Range, match)
		if err != nil {
			return nil, false, err
		}
		more = more || m
		for _, msg := range msgs {
			var d anomaly.Detection
			if json.Unmarshal(msg.Value, &d) != nil {
				continue
			}
			out = append(out, AnomalyRecord{Detection: d, Edge: topic})
		}
	}
	slices.SortStableFunc(out, func(a, b AnomalyRecord) int { return b.At.Compare(a.At) })
	if limit := max(q.Range.Limit, 1); len(out) > limit {
		out, more = out[:limit], true
	}
	return out, more, nil
}

// anomalies serves GET /api/v1/anomalies?from=&to=&limit=&device=&edge=.
func (s *Server) anomalies(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	rq, err := ParseRange(v, s.now())
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	out, more, err := s.Anomalies(r.Context(), Claims(r.Context()), AnomalyQuery{Range: rq, Device: v.Get("device"), Edge: v.Get("edge")})
	if err != nil {
		s.deviceError(w, r, err)
		return
	}
	if out == nil {
		out = []AnomalyRecord{}
	}
	writeJSON(w, http.StatusOK, AnomaliesResponse{Anomalies: out, More: more})
}
