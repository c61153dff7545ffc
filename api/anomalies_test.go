package api

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/weft-io/weft/anomaly"
	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/store"
)

func TestAnomalies(t *testing.T) {
	e := newEnv(t)
	fillShadows(t, e.st, 12) // even devices behind edge-a (site north), odd behind edge-b
	ctx := context.Background()
	base := time.Now().Add(-time.Hour).UTC()
	// Each edge sends up detections, summaries and readings of its devices.
	for i := range 12 {
		dev := fmt.Sprintf("dev-%06d", i)
		edge := []string{"edge-a", "edge-b"}[i%2]
		at := base.Add(time.Duration(i) * time.Minute)
		d, _ := json.Marshal(anomaly.Detection{Type: anomaly.RecordAnomaly, Device: dev, Channel: "temp", Detector: anomaly.Level, Score: 1, Value: 99, At: at})
		s, _ := json.Marshal(anomaly.Summary{Type: anomaly.RecordSummary, Device: dev, From: at, To: at})
		for _, m := range []store.Message{
			{Key: []byte(dev), Value: s, Timestamp: at, Headers: map[string]string{anomaly.RecordHeader: anomaly.RecordSummary}},
			{Key: []byte(dev), Value: d, Timestamp: at, Headers: map[string]string{anomaly.RecordHeader: anomaly.RecordAnomaly}},
		} {
			if _, err := e.st.Stream(store.UplinkStream).Append(ctx, edge, m); err != nil {
				t.Fatal(err)
			}
		}
	}
	get := func(query, token string) AnomaliesResponse {
		t.Helper()
		var r AnomaliesResponse
		e.getAs("/api/v1/anomalies"+query, token, 200, &r)
		return r
	}
	viewer := e.token(certs.RoleViewer)
	all := get("", viewer)
	if len(all.Anomalies) != 12 || all.Anomalies[0].Device != "dev-000011" || all.Anomalies[0].Edge != "edge-b" || all.Anomalies[11].Device != "dev-000000" {
		t.Fatalf("all anomalies, newest first: %+v", all.Anomalies)
	}
	if r := get("?limit=3", viewer); len(r.Anomalies) != 3 || !r.More || r.Anomalies[0].Device != "dev-000011" {
		t.Fatalf("limit 3: %+v", r)
	}
	if r := get("?device=dev-000004", viewer); len(r.Anomalies) != 1 || r.Anomalies[0].Channel != "temp" || r.Anomalies[0].Edge != "edge-a" {
		t.Fatalf("one device: %+v", r)
	}
	if r := get("?edge=edge-a", viewer); len(r.Anomalies) != 6 {
		t.Fatalf("one edge: %d anomalies", len(r.Anomalies))
	}
	from := base.Add(10 * time.Minute).Format(time.RFC3339Nano)
	if r := get("?from="+from, viewer); len(r.Anomalies) != 2 {
		t.Fatalf("from the tenth minute: %d anomalies", len(r.Anomalies))
	}
	// A scoped token sees the anomalies of its devices only.
	if r := get("", e.scoped(certs.RoleViewer, map[string]string{"site": "north"})); len(r.Anomalies) != 6 || r.Anomalies[0].Device != "dev-000010" {
		t.Fatalf("site scope: %+v", r.Anomalies)
	}
	if r := get("?device=dev-000001", e.scoped(certs.RoleViewer, map[string]string{"site": "north"})); len(r.Anomalies) != 0 {
		t.Fatalf("a device out of scope: %+v", r.Anomalies)
	}
	resp, b := e.do("GET", "/api/v1/anomalies?from=yesterday", viewer, "")
	problem(t, resp, b, 400)
	resp, b = e.do("GET", "/api/v1/anomalies", "", "")
	problem(t, resp, b, 401)
}
