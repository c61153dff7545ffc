package core

import (
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/weft-io/weft/api"
	"github.com/weft-io/weft/models"
)

// nodePage answers a device list as one node's store does: the devices
// after after, in id order, at most limit, reading at most scan of them
// (shadow.List's MaxScan), with the filter keeping ids that do not end in
// skip.
func nodePage(devs []api.DeviceSummary, after string, limit, scan int, skip string) api.DevicesResponse {
	out := api.DevicesResponse{Devices: []api.DeviceSummary{}}
	scanned := 0
	for i, d := range devs {
		if d.ID <= after {
			continue
		}
		scanned++
		if skip == "" || !strings.HasSuffix(d.ID, skip) {
			out.Devices = append(out.Devices, d)
		}
		if len(out.Devices) == limit || scanned == scan {
			if i < len(devs)-1 {
				out.Next = d.ID
			}
			return out
		}
	}
	return out
}

func TestMergeDevicesPages(t *testing.T) {
	// Three nodes: core-1 owns e1, core-2 e2, core-3 e3. core-3 also
	// holds a stale copy of e1's devices (e1 moved from it), at a lower
	// version, and e4's devices, whose owner is down.
	owners := map[string]string{"e1": "core-1", "e2": "core-2", "e3": "core-3", "e4": "core-4"}
	held := map[string][]api.DeviceSummary{}
	var want []string
	add := func(node, edge string, n int, version uint64, listed bool) {
		for i := range n {
			id := fmt.Sprintf("%s-d%03d", edge, i)
			if edge == "e2" {
				id = fmt.Sprintf("d%03d-%s", i, edge) // interleaved with the others
			}
			held[node] = append(held[node], api.DeviceSummary{ID: id, Edge: edge, Version: version})
			if listed {
				want = append(want, id)
			}
		}
	}
	add("core-1", "e1", 37, 5, true)
	add("core-2", "e2", 50, 1, true)
	add("core-3", "e3", 11, 1, true)
	add("core-3", "e1", 30, 2, false)
	add("core-3", "e4", 7, 1, true)
	for n := range held {
		slices.SortFunc(held[n], func(a, b api.DeviceSummary) int { return strings.Compare(a.ID, b.ID) })
	}
	slices.Sort(want)
	for _, tc := range []struct {
		limit, scan int
		skip        string
	}{
		{1, 1000, ""}, {7, 1000, ""}, {100, 1000, ""}, {1000, 1000, ""},
		{10, 4, ""}, {3, 5, "1"}, {25, 9, "7"},
	} {
		t.Run(fmt.Sprintf("limit=%d,scan=%d,skip=%q", tc.limit, tc.scan, tc.skip), func(t *testing.T) {
			var listed []string
			after := ""
			for pages := 0; ; pages++ {
				if pages > 1000 {
					t.Fatal("no end of pages")
				}
				var parts []devicesPart
				for _, n := range []string{"core-1", "core-2", "core-3"} {
					parts = append(parts, devicesPart{node: n, resp: nodePage(held[n], after, tc.limit, tc.scan, tc.skip)})
				}
				page := mergeDevices(parts, owners, tc.limit)
				if len(page.Devices) > tc.limit {
					t.Fatalf("%d devices in a page of %d", len(page.Devices), tc.limit)
				}
				for _, d := range page.Devices {
					if d.Edge == "e1" && d.Version != 5 {
						t.Fatalf("%s from a node that does not own e1 (version %d)", d.ID, d.Version)
					}
					listed = append(listed, d.ID)
				}
				if page.Next == "" {
					break
				}
				if page.Next <= after {
					t.Fatalf("next %q does not move past %q", page.Next, after)
				}
				after = page.Next
			}
			var w []string
			for _, id := range want {
				if tc.skip == "" || !strings.HasSuffix(id, tc.skip) {
					w = append(w, id)
				}
			}
			if !slices.Equal(listed, w) {
				t.Fatalf("listed %d devices:\n%v\nwant %d:\n%v", len(listed), listed, len(w), w)
			}
		})
	}
}

func TestMergeEdges(t *testing.T) {
	owners := map[string]string{"e1": "core-1", "e2": "core-2"}
	row := func(name string, devices int, link string) api.EdgeStatus {
		e := api.EdgeStatus{}
		e.Name, e.Devices = name, devices
		if link != "" {
			e.Link = &api.LinkStatus{Peer: name, State: link}
		}
		return e
	}
	got := mergeEdges([]edgesPart{
		{"core-1", api.EdgesResponse{Edges: []api.EdgeStatus{row("e1", 10, "up"), row("e2", 3, "down"), row("e3", 1, "")}}},
		{"core-2", api.EdgesResponse{Edges: []api.EdgeStatus{row("e2", 5, "up"), row("e3", 2, "")}}},
		{"core-3", api.EdgesResponse{Edges: []api.EdgeStatus{row("e1", 9, "down"), row("e4", 4, "up"), row("e3", 0, "up")}}},
	}, owners)
	var s []string
	for _, e := range got.Edges {
		st := ""
		if e.Link != nil {
			st = e.Link.State
		}
		s = append(s, fmt.Sprintf("%s:%d:%s", e.Name, e.Devices, st))
	}
	want := []string{"e1:10:up", "e2:5:up", "e3:0:up", "e4:4:up"}
	if !slices.Equal(s, want) {
		t.Fatalf("edges %v, want %v", s, want)
	}
}

func TestMergeModel(t *testing.T) {
	owners := map[string]string{"e1": "core-1", "e2": "core-2"}
	st := func(s string, scored int64) models.EdgeState { return models.EdgeState{State: s, Scored: scored} }
	model := func(v2 map[string]models.EdgeState) api.ModelResponse {
		return api.ModelResponse{Name: "m", Class: "c",
			Versions: []api.ModelVersion{{Version: 1, Stage: "retired", Edges: map[string]models.EdgeState{}}, {Version: 2, Stage: "live", Edges: v2}},
			Trained:  []api.ModelVersion{{Version: 3, Edges: map[string]models.EdgeState{}}}}
	}
	got := mergeModel([]modelPart{
		{"core-1", model(map[string]models.EdgeState{"e1": st("running", 10), "e2": st("running", 1)})},
		{"core-2", model(map[string]models.EdgeState{"e2": st("refused", 7)})},
		{"core-3", model(map[string]models.EdgeState{"e3": st("running", 3), "e1": st("stopped", 2)})},
	}, owners)
	v2 := got.Versions[1].Edges
	if len(v2) != 3 || v2["e1"].Scored != 10 || v2["e2"].Scored != 7 || v2["e3"].Scored != 3 {
		t.Fatalf("version 2's edges %+v", v2)
	}
	if len(got.Versions[0].Edges) != 0 || len(got.Trained) != 1 || got.Trained[0].Edges == nil {
		t.Fatalf("model %+v", got)
	}
}

func TestListOf(t *testing.T) {
	for path, want := range map[string]listKind{
		"/api/v1/devices": listDevices, "/api/v1/edges": listEdges, "/api/v1/models": listModels,
		"/api/v1/models/thermo": listModel, "/api/v1/models/thermo/series": notList,
		"/api/v1/devices/d1": notList, "/api/v1/fleet": notList, "/": notList,
	} {
		if got := listOf(path); got != want {
			t.Errorf("%s: %d, want %d", path, got, want)
		}
	}
}

func TestMergeSeriesByEdge(t *testing.T) {
	owners := map[string]string{"e1": "core-1", "e2": "core-2"}
	pts := func(n int) []api.SeriesPoint { return make([]api.SeriesPoint, n) }
	got := mergeSeriesByEdge([]seriesPart{
		{"core-1", api.ModelSeriesResponse{Name: "m", Step: 60, Series: []api.ModelSeries{
			{Version: 2, Edge: "e1", Points: pts(5)}, {Version: 2, Edge: "e2", Points: pts(9)}, {Version: 0, Stage: "canary", Edge: "e1", Points: pts(5)}}}},
		{"core-2", api.ModelSeriesResponse{Name: "m", Step: 60, Truncated: true, Series: []api.ModelSeries{
			{Version: 2, Edge: "e2", Points: pts(4)}, {Version: 0, Stage: "canary", Edge: "e2", Points: pts(4)}}}},
		{"core-3", api.ModelSeriesResponse{Name: "m", Step: 60, Series: []api.ModelSeries{
			{Version: 2, Edge: "e3", Points: pts(1)}, {Version: 2, Edge: "e1", Points: pts(7)}}}},
	}, owners)
	var s []string
	for _, x := range got.Series {
		s = append(s, fmt.Sprintf("%d:%s:%d", x.Version, x.Edge, len(x.Points)))
	}
	want := []string{"2:e1:5", "2:e2:4", "2:e3:1", "0:e1:5", "0:e2:4"}
	if !slices.Equal(s, want) || !got.Truncated || got.Name != "m" || got.Step != 60 {
		t.Fatalf("series %v (truncated %v), want %v", s, got.Truncated, want)
	}
}

func TestListOfRequest(t *testing.T) {
	for target, want := range map[string]listKind{
		"/api/v1/models/thermo/series?by=edge": listSeriesByEdge,
		"/api/v1/models/thermo/series":         notList,
		"/api/v1/models/thermo/2/params":       notList,
		"/api/v1/devices?limit=3":              listDevices,
	} {
		if got := listOfRequest(httptest.NewRequest("GET", target, nil)); got != want {
			t.Errorf("%s: %d, want %d", target, got, want)
		}
	}
}
