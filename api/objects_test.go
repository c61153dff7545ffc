package api

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/store"
)

func TestTableGet(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tbl := e.st.Table(store.ShadowsTable)
	for _, k := range []string{"dev1", "dev2", "pump/7"} {
		if _, err := tbl.Put(ctx, k, json.RawMessage(`{"reported":{"fw":"1.0"}}`)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tbl.Patch(ctx, "dev1", json.RawMessage(`{"reported":{"fw":"1.1"}}`)); err != nil {
		t.Fatal(err)
	}

	resp, b := e.do("GET", "/api/v1/tables/shadows/devices/dev9", e.token(certs.RoleViewer), "")
	problem(t, resp, b, 404)

	var doc store.Doc
	resp = e.get("/api/v1/tables/shadows/devices/dev1", certs.RoleViewer, 200, &doc)
	if etag := resp.Header.Get("ETag"); etag != `"2"` {
		t.Fatalf("ETag %q, want \"2\"", etag)
	}
	if doc.Key != "dev1" || doc.Version != 2 || doc.Updated.IsZero() || string(doc.Value) != `{"reported":{"fw":"1.1"}}` {
		t.Fatalf("doc %+v", doc)
	}
	req := e.request("GET", "/api/v1/tables/shadows/devices/dev1", certs.RoleViewer)
	req.Header.Set("If-None-Match", `W/"1", "2"`)
	if resp, _ := doReq(t, req); resp.StatusCode != 304 || resp.Header.Get("ETag") != `"2"` {
		t.Fatalf("If-None-Match: status %d, ETag %q; want 304", resp.StatusCode, resp.Header.Get("ETag"))
	}
	// Keys may hold slashes.
	e.get("/api/v1/tables/shadows/devices/pump/7", certs.RoleViewer, 200, &doc)
	if doc.Key != "pump/7" {
		t.Fatalf("doc %+v", doc)
	}

	var scan DocsResponse
	e.get("/api/v1/tables/shadows/devices?limit=2", certs.RoleViewer, 200, &scan)
	if len(scan.Docs) != 2 || scan.Docs[0].Key != "dev1" || scan.Next != "dev2" {
		t.Fatalf("scan page 1 %+v", scan)
	}
	e.get("/api/v1/tables/shadows/devices?limit=2&after=dev2", certs.RoleViewer, 200, &scan)
	if len(scan.Docs) != 1 || scan.Docs[0].Key != "pump/7" || scan.Next != "" {
		t.Fatalf("scan page 2 %+v", scan)
	}
	e.get("/api/v1/tables/shadows/devices?prefix=pump/", certs.RoleViewer, 200, &scan)
	if len(scan.Docs) != 1 {
		t.Fatalf("prefix scan %+v", scan)
	}

	resp, b = e.do("GET", "/api/v1/tables/telemetry/events/k", e.token(certs.RoleViewer), "")
	problem(t, resp, b, 409)
	resp, b = e.do("GET", "/api/v1/tables/shadows/nope", e.token(certs.RoleViewer), "")
	problem(t, resp, b, 404)
}

func TestListAndVolumes(t *testing.T) {
	e := newEnv(t)
	var vols VolumesResponse
	e.get("/api/v1/volumes", certs.RoleViewer, 200, &vols)
	names := map[string]bool{}
	for _, v := range vols.Volumes {
		names[v.Name] = true
	}
	for _, v := range store.WellKnownVolumes {
		if !names[v] {
			t.Errorf("volume %s missing from %v", v, vols.Volumes)
		}
	}
	for _, p := range []string{"/api/v1/ls", "/api/v1/ls/"} {
		var objs ObjectsResponse
		e.get(p, certs.RoleViewer, 200, &objs)
		if len(objs.Objects) != len(vols.Volumes) || objs.Objects[0].Kind != store.KindVolume {
			t.Fatalf("%s: %+v", p, objs)
		}
	}
	var objs ObjectsResponse
	e.get("/api/v1/ls/telemetry", certs.RoleViewer, 200, &objs)
	kinds := map[string]store.Kind{}
	for _, o := range objs.Objects {
		kinds[o.Path] = o.Kind
	}
	if kinds[store.EventsStream] != store.KindStream || kinds[store.ByDeviceStream] != store.KindStream {
		t.Fatalf("ls /telemetry: %+v", objs)
	}
	resp, b := e.do("GET", "/api/v1/ls/nope", e.token(certs.RoleViewer), "")
	problem(t, resp, b, 404)
}

func TestHealthAndMetrics(t *testing.T) {
	e := newEnv(t)
	resp, b := e.do("GET", "/healthz", "", "")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" || strings.TrimSpace(string(b)) != `{"status":"ok"}` {
		t.Fatalf("healthz: %d %q %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	e.get("/api/v1/volumes", certs.RoleViewer, 200, nil)
	resp, b = e.do("GET", "/metrics", "", "")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("metrics: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{
		`weft_api_requests_total{code="200",route="GET /api/v1/volumes"} 1`,
		`weft_api_requests_total{code="200",route="GET /healthz"} 1`,
		`weft_api_request_duration_seconds_count{route="GET /api/v1/volumes"} 1`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("metrics lack %s:\n%s", want, b)
		}
	}
}

func TestNewChecksConfig(t *testing.T) {
	e := newEnv(t)
	if _, err := New(Config{TokenKey: e.srv.cfg.TokenKey}); err == nil {
		t.Error("New without a store: no error")
	}
	if _, err := New(Config{Store: e.st}); err == nil {
		t.Error("New without a token key: no error")
	}
	s, err := New(Config{Store: e.st, TokenKey: e.srv.cfg.TokenKey})
	if err != nil {
		t.Fatal(err)
	}
	if s.cfg.Audience != certs.TokenAudience || s.cfg.MaxBodyBytes != DefaultMaxBodyBytes || s.cfg.Gatherer == nil || s.metrics != nil {
		t.Fatalf("defaults not applied: %+v", s.cfg)
	}
}
