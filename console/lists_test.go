package console

import (
	"encoding/json"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/weft-io/weft/api"
	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/shadow"
)

// fakeLists stands for a core cluster's gathering handler: it answers
// the device and edge lists with its own rows, naming missing as the
// nodes whose part is missing, and keeps the requests it was served.
type fakeLists struct {
	devices []api.DeviceSummary
	edges   []api.EdgeStatus
	models  []api.ModelResponse
	missing []string
	refuse  bool

	mu   sync.Mutex
	reqs []*http.Request
}

func (f *fakeLists) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.reqs = append(f.reqs, r)
	f.mu.Unlock()
	if f.refuse {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusForbidden)
		json.NewEncoder(w).Encode(api.ProblemDetails{Title: "Forbidden", Status: 403, Detail: "Your token may not list these devices."})
		return
	}
	m := struct {
		Partial      bool     `json:"partial,omitempty"`
		MissingNodes []string `json:"missing_nodes,omitempty"`
	}{len(f.missing) > 0, f.missing}
	var body any
	switch r.URL.Path {
	case "/api/v1/devices":
		body = struct {
			api.DevicesResponse
			Partial      bool     `json:"partial,omitempty"`
			MissingNodes []string `json:"missing_nodes,omitempty"`
		}{api.DevicesResponse{Devices: f.devices}, m.Partial, m.MissingNodes}
	case "/api/v1/edges":
		body = struct {
			api.EdgesResponse
			Partial      bool     `json:"partial,omitempty"`
			MissingNodes []string `json:"missing_nodes,omitempty"`
		}{api.EdgesResponse{Edges: f.edges}, m.Partial, m.MissingNodes}
	case "/api/v1/models":
		body = struct {
			api.ModelsResponse
			Partial      bool     `json:"partial,omitempty"`
			MissingNodes []string `json:"missing_nodes,omitempty"`
		}{api.ModelsResponse{Models: f.models}, m.Partial, m.MissingNodes}
	default:
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(body)
}

func (f *fakeLists) last(t *testing.T) *http.Request {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.reqs) == 0 {
		t.Fatal("the lists hook was not asked")
	}
	return f.reqs[len(f.reqs)-1]
}

// TestClusterLists: with Config.Lists set (a node of a core cluster), the
// devices, edges, fleet and models pages list what the hook answers,
// asked with the visitor's token, and say which nodes' part is missing.
func TestClusterLists(t *testing.T) {
	e := newEnv(t)
	// This node's store holds one device the hook does not list.
	report(t, e.st, "local-only", "pump", `{"temp":1}`)
	f := &fakeLists{
		devices: []api.DeviceSummary{
			{ID: "far-1", Class: "pump", Edge: "edge-b", Connected: true},
			{ID: "far-2", Class: "valve", Edge: "edge-c"},
		},
		edges:   []api.EdgeStatus{{Count: shadow.Count{Name: "edge-b", Devices: 1}}, {Count: shadow.Count{Name: "edge-c", Devices: 1}}},
		models:  []api.ModelResponse{{Name: "far-model", Class: "valve"}},
		missing: []string{"core-3"},
	}
	e.con.cfg.Lists = f
	tok := e.token(certs.RoleViewer, nil)
	b := e.browser()
	b.signIn(tok)

	page := b.get("/devices?q=far&connected=yes", 200)
	for _, id := range []string{`data-device="far-1"`, `data-device="far-2"`} {
		if !strings.Contains(page, id) {
			t.Errorf("devices page lacks %s", id)
		}
	}
	if strings.Contains(page, "local-only") {
		t.Error("devices page lists this node's own store, not the hook's list")
	}
	if !strings.Contains(page, `id="missing-nodes"`) || !strings.Contains(page, "<strong>core-3</strong>") {
		t.Errorf("devices page has no partial note naming core-3:\n%s", page)
	}
	r := f.last(t)
	if got := r.Header.Get("Authorization"); got != "Bearer "+tok {
		t.Errorf("hook asked with Authorization %q, want the visitor's token", got)
	}
	if r.Method != http.MethodGet || r.URL.Path != "/api/v1/devices" {
		t.Errorf("hook asked %s %s", r.Method, r.URL.Path)
	}
	q, err := api.ParseDeviceQuery(r.URL.Query())
	if err != nil {
		t.Fatal(err)
	}
	if q.Filter.Prefix != "far" || q.Filter.Connected == nil || !*q.Filter.Connected || q.Limit != pageSize {
		t.Errorf("hook asked %+v", q)
	}
	// The live region says the same.
	if part := b.get("/devices?part=live", 200); !strings.Contains(part, `data-device="far-2"`) || !strings.Contains(part, `id="missing-nodes"`) {
		t.Errorf("devices live part:\n%s", part)
	}

	for _, p := range []string{"/edges", "/edges?part=live", "/", "/?part=live"} {
		page := b.get(p, 200)
		if !strings.Contains(page, "edge-c") || !strings.Contains(page, `id="missing-nodes"`) {
			t.Errorf("GET %s: no hook edges or partial note:\n%s", p, page)
		}
		if r := f.last(t); r.URL.Path != "/api/v1/edges" {
			t.Errorf("GET %s asked the hook %s", p, r.URL.Path)
		}
	}

	for _, p := range []string{"/models", "/models?part=live"} {
		page := b.get(p, 200)
		if !strings.Contains(page, `data-class="valve"`) || !strings.Contains(page, `id="missing-nodes"`) {
			t.Errorf("GET %s: no hook models or partial note:\n%s", p, page)
		}
		if r := f.last(t); r.URL.Path != "/api/v1/models" {
			t.Errorf("GET %s asked the hook %s", p, r.URL.Path)
		}
	}

	// Every node answered: no note.
	f.missing = nil
	for _, p := range []string{"/devices", "/edges", "/", "/models"} {
		if page := b.get(p, 200); strings.Contains(page, `id="missing-nodes"`) {
			t.Errorf("GET %s: partial note with every node answering", p)
		}
	}

	// A refusal is the page's error, in the API's words.
	f.refuse = true
	if page := b.get("/devices", 200); !strings.Contains(page, "Your token may not list these devices.") {
		t.Errorf("refused list:\n%s", page)
	}
}

// TestLocalLists: without Config.Lists the pages list this node's store
// and never show the partial note.
func TestLocalLists(t *testing.T) {
	e := newEnv(t)
	report(t, e.st, "local-only", "pump", `{"temp":1}`)
	b := e.browser()
	b.signIn(e.token(certs.RoleViewer, nil))
	if page := b.get("/devices", 200); !strings.Contains(page, `data-device="local-only"`) || strings.Contains(page, `id="missing-nodes"`) {
		t.Errorf("devices page:\n%s", page)
	}
	if page := b.get("/edges", 200); !strings.Contains(page, "edge1") || strings.Contains(page, `id="missing-nodes"`) {
		t.Errorf("edges page:\n%s", page)
	}
}

// TestDeviceQueryValues: the query the console sends Config.Lists reads
// back, through the API's parser, as the query the page meant.
func TestDeviceQueryValues(t *testing.T) {
	yes, no := true, false
	for _, q := range []api.DeviceQuery{
		{Limit: 50},
		{Limit: 50, After: "dev-9", Filter: shadow.Filter{Prefix: "dev", Class: "pump", Edge: "edge b", Site: "x"}},
		{Limit: 50, Filter: shadow.Filter{Connected: &yes, InSync: &no, Anomalous: &yes}},
		{Limit: 10, Filter: shadow.Filter{Anomalous: &no}},
		{Limit: 10, Filter: shadow.Filter{Anomalous: &yes, Threshold: 2.5}},
	} {
		v := deviceQueryValues(q)
		got, err := api.ParseDeviceQuery(url.Values(v))
		if err != nil {
			t.Fatalf("%v: %v", v, err)
		}
		if !reflect.DeepEqual(got, q) {
			t.Errorf("%v read back as %+v, want %+v", v.Encode(), got, q)
		}
	}
}
