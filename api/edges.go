package api

import (
	"context"
	"net/http"
	"time"

	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/shadow"
	"github.com/weft-io/weft/store"
	"github.com/weft-io/weft/sync/replicate"
)

// LinkStatus is the state of one sync link as the node that holds it sees
// it.
type LinkStatus struct {
	// Peer is the node at the other end: an edge's name on the core, the
	// core's on an edge.
	Peer string `json:"peer"`
	// State is "up", "connecting" or "down".
	State string `json:"state"`
	// LastContact is when the peer was last heard from.
	LastContact time.Time `json:"last_contact,omitzero"`
	// Address is the peer's address: its current one while the link is
	// up (after its path migrated, the new one), else the last it had.
	Address string `json:"address,omitempty"`
	// LagSeconds is how far behind the replica is, in seconds of
	// source time.
	LagSeconds float64 `json:"lag_seconds"`
	// Backlog is how many messages wait to be replicated.
	Backlog int64 `json:"backlog"`
	// Dropped is how many messages the source no longer held when their
	// turn came (retention, or a full backlog that dropped its oldest).
	Dropped int64 `json:"dropped"`
	// Role is the peer's role (certs.EdgeNode, certs.CoreNode); only
	// links to edges are edges.
	Role string `json:"-"`
}

// Links reports the node's sync links. The node that runs sync sets
// Config.Links (MonitorLinks of its monitor); without it, edges are known
// from shadows only.
type Links interface {
	Links(ctx context.Context) []LinkStatus
}

// MonitorLinks reports the links a sync monitor keeps.
func MonitorLinks(m *replicate.Monitor) Links { return monitorLinks{m} }

type monitorLinks struct{ m *replicate.Monitor }

func (a monitorLinks) Links(ctx context.Context) []LinkStatus {
	var out []LinkStatus
	now := time.Now()
	for _, l := range a.m.Links() {
		s := LinkStatus{Peer: l.Peer, Role: l.Role, State: "down", LastContact: l.Since, Address: l.Addr}
		if l.Connected {
			s.State, s.LastContact = "up", now
		}
		for _, st := range l.Streams {
			s.LagSeconds = max(s.LagSeconds, st.LagSeconds)
			s.Backlog += int64(st.LagMessages)
			s.Dropped += st.Dropped
		}
		out = append(out, s)
	}
	return out
}

// EdgeStatus is one edge: its devices, counted from their shadows, and its
// link when the node has one to it.
type EdgeStatus struct {
	shadow.Count
	Link *LinkStatus `json:"link,omitempty"`
}

// EdgesResponse is the answer to GET /api/v1/edges.
type EdgesResponse struct {
	Edges []EdgeStatus `json:"edges"`
}

// Edges returns the edges the token c may see devices of, with their
// links; links to edges without devices are listed for unscoped tokens.
func (s *Server) Edges(ctx context.Context, c *certs.TokenClaims) ([]EdgeStatus, error) {
	sum, err := s.Fleet(ctx, c)
	if err != nil {
		return nil, err
	}
	links := map[string]LinkStatus{}
	if s.cfg.Links != nil {
		for _, l := range s.cfg.Links.Links(ctx) {
			if l.Role != "" && l.Role != certs.EdgeNode {
				continue // an edge's link to its core: the core is no edge
			}
			links[l.Peer] = l
		}
	}
	out := make([]EdgeStatus, 0, len(sum.Edges))
	for _, e := range sum.Edges {
		es := EdgeStatus{Count: e}
		if l, ok := links[e.Name]; ok {
			es.Link = &l
			delete(links, e.Name)
		}
		out = append(out, es)
	}
	scope, _ := ScopeFilter(c)
	if !scoped(scope) {
		for _, l := range links {
			out = append(out, EdgeStatus{Count: shadow.Count{Name: l.Peer}, Link: &l})
		}
	}
	return out, nil
}

// HasLinks reports whether the node reports its sync links.
func (s *Server) HasLinks() bool { return s.cfg.Links != nil }

// edges serves GET /api/v1/edges.
func (s *Server) edges(w http.ResponseWriter, r *http.Request) {
	es, err := s.Edges(r.Context(), Claims(r.Context()))
	if err != nil {
		s.deviceError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, EdgesResponse{Edges: es})
}

// Store is the node's store, which the server reads and writes.
func (s *Server) Store() *store.Store { return s.cfg.Store }

// Verify checks an API token as the routes do (Weft's own tokens, and the
// identity provider's when Config.OIDC is set) and returns its claims.
// The console uses it for the token kept in its session cookie.
func (s *Server) Verify(token string) (*certs.TokenClaims, error) {
	r := &http.Request{Header: http.Header{"Authorization": {"Bearer " + token}}}
	return s.authenticate(r)
}
