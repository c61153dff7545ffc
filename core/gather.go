package core

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/weft-io/weft/api"
	"github.com/weft-io/weft/cluster"
	"github.com/weft-io/weft/models"
)

// gatherTimeout bounds how long a node of a cluster waits for the others'
// answers to a list read; a node that has not answered by then is left
// out and named in the answer's missing nodes.
const gatherTimeout = 3 * time.Second

// missingHeader names, comma-separated, the nodes of the cluster whose
// part of a gathered list is missing: down, or not answering within
// gatherTimeout. The JSON answer says the same in missing_nodes, and
// partial is true.
const missingHeader = "X-Weft-Missing-Nodes"

// A listKind is a list read that a node of a cluster gathers from every
// node up.
type listKind int

const (
	notList listKind = iota
	listDevices
	listEdges
	listModels
	listModel
	listSeriesByEdge
)

// listOf returns the kind of list read a GET of path is.
func listOf(path string) listKind {
	switch path {
	case "/api/v1/devices":
		return listDevices
	case "/api/v1/edges":
		return listEdges
	case "/api/v1/models":
		return listModels
	}
	if name, ok := strings.CutPrefix(path, "/api/v1/models/"); ok && name != "" && !strings.Contains(name, "/") {
		return listModel
	}
	return notList
}

// listOfRequest is listOf, and a model's series by edge
// (GET /api/v1/models/{name}/series?by=edge), whose series are each
// edge's and so merge as the edges do.
func listOfRequest(r *http.Request) listKind {
	if k := listOf(r.URL.Path); k != notList {
		return k
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/api/v1/models/")
	if name, ok2 := strings.CutSuffix(rest, "/series"); ok && ok2 && name != "" && !strings.Contains(name, "/") && r.URL.Query().Get("by") == "edge" {
		return listSeriesByEdge
	}
	return notList
}

// answer is one node's answer to a gathered read.
type answer struct {
	node   string
	status int
	header http.Header
	body   []byte
}

// gather serves a list read on a node of a cluster: it asks every node up
// (itself through next, the others over HTTP with the forwarded header,
// so that they answer from their own store) and merges their answers.
// This node's answer stands alone when it is not a 200 (a bad query, a
// token refused).
func (m *member) gather(w http.ResponseWriter, r *http.Request, kind listKind, n *cluster.Node, next http.Handler, hc *http.Client, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(r.Context(), gatherTimeout)
	defer cancel()
	nodes, err := n.Nodes(ctx)
	if err != nil {
		log.Debug("not gathered", "path", r.URL.Path, "err", err)
		next.ServeHTTP(w, r)
		return
	}
	owners := map[string]string{}
	var missing []string
	answers := make([]*answer, len(nodes))
	var wg sync.WaitGroup
	for i, ns := range nodes {
		for _, e := range ns.Edges {
			owners[e] = ns.Name
		}
		switch {
		case ns.Name == n.Name():
		case ns.State != "up" || ns.Address == "":
			missing = append(missing, ns.Name)
		default:
			wg.Go(func() {
				a, err := ask(ctx, hc, r, n.Name(), ns.Name, ns.Address)
				if err != nil {
					log.Debug("gather failed", "from", ns.Name, "path", r.URL.Path, "err", err)
					return
				}
				answers[i] = a
			})
		}
	}
	// This node's own answer, while the others are asked: when it is
	// not a 200, it is the answer.
	rec := httptest.NewRecorder()
	next.ServeHTTP(rec, r)
	self := &answer{node: n.Name(), status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
	if self.status != http.StatusOK {
		cancel()
		wg.Wait()
		copyAnswer(w, self)
		return
	}
	wg.Wait()
	got := []*answer{self}
	for i, a := range answers {
		switch {
		case a != nil:
			got = append(got, a)
		case nodes[i].State == "up" && nodes[i].Address != "" && nodes[i].Name != n.Name():
			missing = append(missing, nodes[i].Name)
		}
	}
	slices.Sort(missing)
	body, err := merge(kind, r, got, owners, missing)
	if err != nil {
		log.Debug("not merged", "path", r.URL.Path, "err", err)
		next.ServeHTTP(w, r)
		return
	}
	if len(missing) > 0 {
		w.Header().Set(missingHeader, strings.Join(missing, ","))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write(body)
}

// ask gets r's path and query from the node at addr, which answers it
// from its own store.
func ask(ctx context.Context, hc *http.Client, r *http.Request, self, node, addr string) (*answer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+r.URL.RequestURI(), nil)
	if err != nil {
		return nil, err
	}
	for _, h := range []string{"Authorization", "Cookie", "Accept", "X-Request-Id"} {
		if v := r.Header.Get(h); v != "" {
			req.Header.Set(h, v)
		}
	}
	req.Header.Set(forwardedHeader, self)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &statusError{resp.StatusCode}
	}
	return &answer{node: node, status: resp.StatusCode, header: resp.Header, body: b}, nil
}

type statusError struct{ code int }

func (e *statusError) Error() string { return "core: answered " + http.StatusText(e.code) }

// copyAnswer writes a as the answer.
func copyAnswer(w http.ResponseWriter, a *answer) {
	for k, vs := range a.header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.WriteHeader(a.status)
	w.Write(a.body)
}

// Missing says which nodes' parts a gathered list lacks.
type Missing struct {
	Partial      bool     `json:"partial,omitempty"`
	MissingNodes []string `json:"missing_nodes,omitempty"`
}

func missingOf(nodes []string) Missing { return Missing{Partial: len(nodes) > 0, MissingNodes: nodes} }

// merge decodes the nodes' answers of a kind and encodes their merge.
func merge(kind listKind, r *http.Request, got []*answer, owners map[string]string, missing []string) ([]byte, error) {
	switch kind {
	case listDevices:
		q, err := api.ParseDeviceQuery(r.URL.Query())
		if err != nil {
			return nil, err
		}
		parts := make([]devicesPart, len(got))
		for i, a := range got {
			parts[i].node = a.node
			if err := json.Unmarshal(a.body, &parts[i].resp); err != nil {
				return nil, err
			}
		}
		resp := mergeDevices(parts, owners, q.Limit)
		return json.Marshal(struct {
			api.DevicesResponse
			Missing
		}{resp, missingOf(missing)})
	case listEdges:
		parts := make([]edgesPart, len(got))
		for i, a := range got {
			parts[i].node = a.node
			if err := json.Unmarshal(a.body, &parts[i].resp); err != nil {
				return nil, err
			}
		}
		return json.Marshal(struct {
			api.EdgesResponse
			Missing
		}{mergeEdges(parts, owners), missingOf(missing)})
	case listModels:
		var all []modelPart
		for _, a := range got {
			var resp api.ModelsResponse
			if err := json.Unmarshal(a.body, &resp); err != nil {
				return nil, err
			}
			for _, mr := range resp.Models {
				all = append(all, modelPart{node: a.node, resp: mr})
			}
		}
		var out api.ModelsResponse
		out.Models = []api.ModelResponse{}
		byName := map[string][]modelPart{}
		var names []string
		for _, p := range all {
			if _, ok := byName[p.resp.Name]; !ok {
				names = append(names, p.resp.Name)
			}
			byName[p.resp.Name] = append(byName[p.resp.Name], p)
		}
		slices.Sort(names)
		for _, name := range names {
			out.Models = append(out.Models, mergeModel(byName[name], owners))
		}
		return json.Marshal(struct {
			api.ModelsResponse
			Missing
		}{out, missingOf(missing)})
	case listModel:
		parts := make([]modelPart, len(got))
		for i, a := range got {
			parts[i].node = a.node
			if err := json.Unmarshal(a.body, &parts[i].resp); err != nil {
				return nil, err
			}
		}
		return json.Marshal(struct {
			api.ModelResponse
			Missing
		}{mergeModel(parts, owners), missingOf(missing)})
	case listSeriesByEdge:
		parts := make([]seriesPart, len(got))
		for i, a := range got {
			parts[i].node = a.node
			if err := json.Unmarshal(a.body, &parts[i].resp); err != nil {
				return nil, err
			}
		}
		return json.Marshal(struct {
			api.ModelSeriesResponse
			Missing
		}{mergeSeriesByEdge(parts, owners), missingOf(missing)})
	}
	return nil, errNotList
}

var errNotList = &statusError{http.StatusNotFound}

// devicesPart is one node's page of a device list.
type devicesPart struct {
	node string
	resp api.DevicesResponse
}

// mergeDevices merges the nodes' pages of one device list request (the
// same filter, after and limit) into the cluster's page. Each node's page
// holds every device of its store that the filter selects from after up
// to its next (to the end when next is empty); the merged page is cut at
// the smallest next, where every node's part is known, and at limit, so
// that the next page, asked with the merged next, goes on with no device
// left out or listed twice. A device is listed once: a node's copy of a
// device of an edge another answering node owns is left out (the owner's
// copy, or its absence because the filter left it out, is the answer);
// of the other copies, the highest version.
func mergeDevices(parts []devicesPart, owners map[string]string, limit int) api.DevicesResponse {
	if limit <= 0 {
		limit = api.DefaultLimit
	}
	answered := map[string]bool{}
	cut := ""
	for _, p := range parts {
		answered[p.node] = true
		if p.resp.Next != "" && (cut == "" || p.resp.Next < cut) {
			cut = p.resp.Next
		}
	}
	best := map[string]api.DeviceSummary{}
	for _, p := range parts {
		for _, d := range p.resp.Devices {
			if cut != "" && d.ID > cut {
				continue
			}
			if o := owners[d.Edge]; o != "" && o != p.node && answered[o] {
				continue
			}
			if b, ok := best[d.ID]; !ok || d.Version > b.Version {
				best[d.ID] = d
			}
		}
	}
	out := api.DevicesResponse{Devices: make([]api.DeviceSummary, 0, min(len(best), limit))}
	for _, d := range best {
		out.Devices = append(out.Devices, d)
	}
	slices.SortFunc(out.Devices, func(a, b api.DeviceSummary) int { return strings.Compare(a.ID, b.ID) })
	if len(out.Devices) > limit {
		out.Devices = out.Devices[:limit]
		out.Next = out.Devices[limit-1].ID
		return out
	}
	out.Next = cut
	return out
}

// edgesPart is one node's list of edges.
type edgesPart struct {
	node string
	resp api.EdgesResponse
}

// mergeEdges lists each edge once, by name: its owner's row, or, for an
// edge whose owner did not answer (or that has none), the row with a
// link up, else the one counting the most devices.
func mergeEdges(parts []edgesPart, owners map[string]string) api.EdgesResponse {
	type pick struct {
		row   api.EdgeStatus
		owner bool
	}
	rank := func(p pick) int {
		switch {
		case p.owner:
			return 2
		case p.row.Link != nil && p.row.Link.State == "up":
			return 1
		}
		return 0
	}
	best := map[string]pick{}
	for _, p := range parts {
		for _, e := range p.resp.Edges {
			c := pick{row: e, owner: owners[e.Name] == p.node}
			b, ok := best[e.Name]
			if !ok || rank(c) > rank(b) || (rank(c) == rank(b) && c.row.Devices > b.row.Devices) {
				best[e.Name] = c
			}
		}
	}
	out := api.EdgesResponse{Edges: make([]api.EdgeStatus, 0, len(best))}
	for _, p := range best {
		out.Edges = append(out.Edges, p.row)
	}
	slices.SortFunc(out.Edges, func(a, b api.EdgeStatus) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// modelPart is one node's view of a model.
type modelPart struct {
	node string
	resp api.ModelResponse
}

// mergeModel takes the model as the first node answered it (its versions
// and stages are core-owned, the same on every node) and gives each
// version the state of every edge any node holds, the edge owner's when
// it has one.
func mergeModel(parts []modelPart, owners map[string]string) api.ModelResponse {
	if len(parts) == 0 {
		return api.ModelResponse{}
	}
	out := parts[0].resp
	fill := func(vs []api.ModelVersion, pick func(api.ModelResponse) []api.ModelVersion) {
		for i := range vs {
			edges := map[string]bool{} // edge -> taken from its owner
			merged := make(map[string]models.EdgeState, len(vs[i].Edges))
			for _, p := range parts {
				for _, pv := range pick(p.resp) {
					if pv.Version != vs[i].Version {
						continue
					}
					for e, st := range pv.Edges {
						fromOwner := owners[e] == p.node
						if _, ok := merged[e]; ok && (edges[e] || !fromOwner) {
							continue
						}
						merged[e], edges[e] = st, fromOwner
					}
				}
			}
			vs[i].Edges = merged
		}
	}
	out.Versions = slices.Clone(out.Versions)
	out.Trained = slices.Clone(out.Trained)
	fill(out.Versions, func(m api.ModelResponse) []api.ModelVersion { return m.Versions })
	fill(out.Trained, func(m api.ModelResponse) []api.ModelVersion { return m.Trained })
	return out
}

// seriesPart is one node's series of a model, by edge.
type seriesPart struct {
	node string
	resp api.ModelSeriesResponse
}

// mergeSeriesByEdge takes the window as the first node answered it and
// lists each version's series of each edge once: the edge owner's, else
// the one with the most points. Versions keep the order they first came
// in (the canary's last), edges by name within a version.
func mergeSeriesByEdge(parts []seriesPart, owners map[string]string) api.ModelSeriesResponse {
	if len(parts) == 0 {
		return api.ModelSeriesResponse{}
	}
	out := parts[0].resp
	type key struct {
		version uint64
		edge    string
	}
	type pick struct {
		s     api.ModelSeries
		owner bool
	}
	rank := map[uint64]int{}
	best := map[key]pick{}
	for _, p := range parts {
		out.Truncated = out.Truncated || p.resp.Truncated
		for _, s := range p.resp.Series {
			if _, ok := rank[s.Version]; !ok {
				rank[s.Version] = len(rank)
			}
			k, c := key{s.Version, s.Edge}, pick{s: s, owner: owners[s.Edge] == p.node}
			b, ok := best[k]
			if !ok || (c.owner && !b.owner) || (c.owner == b.owner && len(c.s.Points) > len(b.s.Points)) {
				best[k] = c
			}
		}
	}
	out.Series = make([]api.ModelSeries, 0, len(best))
	for _, p := range best {
		out.Series = append(out.Series, p.s)
	}
	slices.SortFunc(out.Series, func(a, b api.ModelSeries) int {
		if ra, rb := rank[a.Version], rank[b.Version]; ra != rb {
			return ra - rb
		}
		return strings.Compare(a.Edge, b.Edge)
	})
	return out
}
