package api

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/weft-io/weft/anomaly"
	"github.com/weft-io/weft/certs"
	sig "github.com/weft-io/weft/internal/signed"
	"github.com/weft-io/weft/models"
	"github.com/weft-io/weft/store"
)

// modelEnv is an API with a certificate directory (and so a model key)
// and two thermo devices behind edge-a with two days of readings.
func modelEnv(t *testing.T) (*env, string, time.Time) {
	t.Helper()
	dir := t.TempDir()
	e := newEnv(t, func(c *Config) { c.FirmwareKeys = filepath.Join(dir, "firmware-keys.json") })
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for _, id := range []string{"th-1", "th-2"} {
		if _, err := e.st.Table(store.ShadowsTable).Put(ctx, id, json.RawMessage(`{"class":"thermo","edge":"edge-a"}`)); err != nil {
			t.Fatal(err)
		}
		var msgs []store.Message
		for i := range 2 * 144 {
			at := t0.Add(time.Duration(i) * 10 * time.Minute)
			temp := 20 + 5*math.Sin(2*math.Pi*float64(i)/144)
			msgs = append(msgs, store.Message{Value: fmt.Appendf(nil, `{"temp":%g}`, temp), Timestamp: at,
				Headers: map[string]string{headerMQTTTopic: "devices/" + id + "/telemetry", "device": id}})
		}
		if _, err := e.st.Stream(store.ByDeviceStream).Append(ctx, id, msgs...); err != nil {
			t.Fatal(err)
		}
	}
	return e, dir, t0
}

func TestModelsTrainPublishPromote(t *testing.T) {
	e, dir, t0 := modelEnv(t)
	op := e.token(certs.RoleOperator)
	body := fmt.Sprintf(`{"name":"thermo-bands","class":"thermo","from":%q,"to":%q}`, t0.Format(time.RFC3339), t0.Add(48*time.Hour).Format(time.RFC3339))
	if resp, b := e.do("POST", "/api/v1/models/train", e.token(certs.RoleViewer), body); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a viewer trained: %d %s", resp.StatusCode, b)
	}
	resp, b := e.do("POST", "/api/v1/models/train", op, body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("train: %d %s", resp.StatusCode, b)
	}
	var tr ModelTrainResponse
	if err := json.Unmarshal(b, &tr); err != nil {
		t.Fatal(err)
	}
	if tr.Manifest.Version != 1 || tr.Manifest.Training.Devices != 2 || tr.Manifest.Training.Readings != 2*2*144 || len(tr.Report.Channels) != 1 || tr.Report.Channels[0].Epoch != 144 {
		t.Fatalf("trained %s", b)
	}

	// The stored artifact verifies against the key the core made.
	pub, err := models.ReadPublicKey(filepath.Join(dir, models.PublicKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	_, man := e.do("GET", "/api/v1/models/thermo-bands/1/manifest", op, "")
	_, params := e.do("GET", "/api/v1/models/thermo-bands/1/params", op, "")
	if v := models.Verify(models.Input{Manifest: man, Keys: []sig.Key{pub}, Class: "thermo",
		Params: &models.Params{SHA256: sha256.Sum256(params), Size: int64(len(params))}}); !v.OK() {
		t.Fatalf("served artifact: %v", v)
	}

	var m ModelResponse
	e.get("/api/v1/models/thermo-bands", certs.RoleViewer, http.StatusOK, &m)
	if len(m.Versions) != 0 || len(m.Trained) != 1 || m.Class != "thermo" {
		t.Fatalf("before publish %+v", m)
	}
	if resp, b := e.do("POST", "/api/v1/models/thermo-bands/1/promote", op, ""); resp.StatusCode != http.StatusConflict {
		t.Fatalf("promoted an unpublished version: %d %s", resp.StatusCode, b)
	}
	for _, a := range []string{"publish", "promote"} {
		if resp, b := e.do("POST", "/api/v1/models/thermo-bands/1/"+a, op, ""); resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %s", a, resp.StatusCode, b)
		}
	}

	// An edge's status record, as it appends it to its uplink.
	rec, _ := json.Marshal(models.StatusRecord{Type: models.RecordStatus, Edge: "edge-a", Model: "thermo-bands", At: t0,
		Versions: map[string]models.EdgeState{"1": {State: models.StateRunning, Scored: 42, Agreement: 0.99}}})
	if _, err := e.st.Stream(store.UplinkStream).Append(context.Background(), "edge-a", store.Message{Key: []byte("thermo-bands"), Value: rec,
		Headers: map[string]string{anomaly.RecordHeader: models.RecordStatus}}); err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	e.get("/api/v1/models/thermo-bands", certs.RoleViewer, http.StatusOK, &raw)
	v := raw["versions"].([]any)[0].(map[string]any)
	edge := v["edges"].(map[string]any)["edge-a"].(map[string]any)
	if raw["name"] != "thermo-bands" || raw["class"] != "thermo" || v["version"] != 1.0 || v["stage"] != "live" ||
		edge["state"] != "running" || edge["scored"] != 42.0 || edge["agreement"] != 0.99 || edge["drift"] != 0.0 {
		t.Fatalf("model %v", raw)
	}
	var list ModelsResponse
	e.get("/api/v1/models", certs.RoleViewer, http.StatusOK, &list)
	if len(list.Models) != 1 || list.Models[0].Versions[0].Stage != "live" {
		t.Fatalf("list %+v", list)
	}
	if resp, b := e.do("POST", "/api/v1/models/thermo-bands/1/retire", op, ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("retire: %d %s", resp.StatusCode, b)
	}
	if resp, b := e.do("GET", "/api/v1/models/nothing", op, ""); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("get of nothing: %d %s", resp.StatusCode, b)
	}
	// No telemetry of the class in the window.
	empty := fmt.Sprintf(`{"name":"pumps","class":"pump","from":%q}`, t0.Format(time.RFC3339))
	if resp, b := e.do("POST", "/api/v1/models/train", op, empty); resp.StatusCode != http.StatusUnprocessableEntity {
		t.Fatalf("train on nothing: %d %s", resp.StatusCode, b)
	}
}

func TestModelsTrainWithoutKey(t *testing.T) {
	e := newEnv(t)
	resp, b := e.do("POST", "/api/v1/models/train", e.token(certs.RoleOperator), `{"name":"m","class":"c","from":"2026-01-01T00:00:00Z"}`)
	problem(t, resp, b, http.StatusServiceUnavailable)
}

// TestModelsTrainReadsDecoy: training reads, beside the class's
// histories, the readings the edges' decoys archived in /uplink/events,
// once each, of the class only.
func TestModelsTrainReadsDecoy(t *testing.T) {
	e, _, t0 := modelEnv(t)
	ctx := context.Background()
	if _, err := e.st.Table(store.ShadowsTable).Put(ctx, "th-3", json.RawMessage(`{"class":"thermo","edge":"edge-a"}`)); err != nil {
		t.Fatal(err)
	}
	input := func(dev, class string, at time.Time) store.Message {
		b, _ := json.Marshal(models.InputRecord{Type: models.RecordInput, Device: dev, Class: class, At: at, Values: map[string]float64{"temp": 21}})
		return store.Message{Key: []byte(dev), Value: b, Timestamp: at, Headers: map[string]string{anomaly.RecordHeader: models.RecordInput}}
	}
	var msgs []store.Message
	for i := range 10 {
		msgs = append(msgs, input("th-3", "thermo", t0.Add(time.Duration(i)*time.Hour)))
	}
	msgs = append(msgs, input("th-1", "thermo", t0), // already in th-1's history
		input("p-1", "pump", t0.Add(time.Minute)))
	if _, err := e.st.Stream(store.UplinkStream).Append(ctx, "edge-a", msgs...); err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf(`{"name":"thermo-bands","class":"thermo","from":%q,"to":%q}`, t0.Format(time.RFC3339), t0.Add(48*time.Hour).Format(time.RFC3339))
	resp, b := e.do("POST", "/api/v1/models/train", e.token(certs.RoleOperator), body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("train: %d %s", resp.StatusCode, b)
	}
	var tr ModelTrainResponse
	if err := json.Unmarshal(b, &tr); err != nil {
		t.Fatal(err)
	}
	if tr.Manifest.Training.Readings != 2*2*144+10 || tr.Manifest.Training.Devices != 3 {
		t.Fatalf("trained on %d readings of %d devices", tr.Manifest.Training.Readings, tr.Manifest.Training.Devices)
	}
}

// TestModelsSeries: the series of a model's versions and its class's
// canary, summed into steps from the records the edges append to their
// uplinks — per-minute summaries, status records every 5 min (one edge
// restarting its count), the canary's detections beside a model's and
// another class's — summed over the edges, and by edge.
func TestModelsSeries(t *testing.T) {
	e, _, t0 := modelEnv(t)
	ctx := context.Background()
	if _, err := e.st.Table(store.ShadowsTable).Put(ctx, "th-9", json.RawMessage(`{"class":"thermo","edge":"edge-b"}`)); err != nil {
		t.Fatal(err)
	}
	op := e.token(certs.RoleOperator)
	body := fmt.Sprintf(`{"name":"thermo-bands","class":"thermo","from":%q,"to":%q}`, t0.Format(time.RFC3339), t0.Add(48*time.Hour).Format(time.RFC3339))
	for _, step := range []string{"train", "1/publish", "1/promote", "train", "2/publish"} {
		path, b := "/api/v1/models/thermo-bands/"+step, ""
		if step == "train" {
			path, b = "/api/v1/models/train", body
		}
		if resp, got := e.do("POST", path, op, b); resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %s", step, resp.StatusCode, got)
		}
	}
	seedSeries(t, e.st, t0)

	at := func(min int) string { return t0.Add(time.Duration(min) * time.Minute).Format(time.RFC3339) }
	var got ModelSeriesResponse
	e.get("/api/v1/models/thermo-bands/series?from="+at(120)+"&to="+at(240)+"&step=1h", certs.RoleViewer, http.StatusOK, &got)
	if got.Name != "thermo-bands" || got.Class != "thermo" || got.Step != 3600 || !got.From.Equal(t0.Add(2*time.Hour)) || len(got.Series) != 3 {
		t.Fatalf("series %+v", got)
	}
	v1, v2, canary := got.Series[0], got.Series[1], got.Series[2]
	if v1.Version != 1 || v1.Stage != "live" || v2.Version != 2 || v2.Stage != "candidate" || canary.Version != 0 || canary.Stage != "canary" ||
		len(v1.Points) != 2 || len(v2.Points) != 2 || len(canary.Points) != 2 {
		t.Fatalf("series %+v", got.Series)
	}
	f := func(p *float64) float64 {
		if p == nil {
			return -1
		}
		return *p
	}
	for i, want := range []struct {
		agreement, drift float64
	}{{0.9, 0.175}, {0.746809, 0.235}} {
		p := v1.Points[i]
		if !p.T.Equal(t0.Add(time.Duration(2+i)*time.Hour)) || p.Scored != 5400 || p.Used != 5400 || p.Detections != 2 || p.DetectionsPerHour != 2 ||
			f(p.LatencyMS) != 0.02 || f(p.Agreement) != want.agreement || f(p.Drift) != want.drift || p.MaxScore != 0.5 {
			t.Errorf("version 1, point %d: %+v agreement %v drift %v latency %v", i, p, f(p.Agreement), f(p.Drift), f(p.LatencyMS))
		}
	}
	if p := v2.Points[0]; p.Scored != 3600 || p.Used != 0 || p.Detections != 3 || p.Faults != 1 || f(p.LatencyMS) != 0.02 ||
		f(p.Agreement) != 0.97 || f(p.AgreementLive) != 0.95 || f(p.Drift) != 0.42 {
		t.Errorf("version 2: %+v agreement %v live %v drift %v", p, f(p.Agreement), f(p.AgreementLive), f(p.Drift))
	}
	for _, p := range canary.Points {
		if p.Detections != 1 || p.Scored != 0 || p.Agreement != nil || p.LatencyMS != nil || p.Drift != nil {
			t.Errorf("canary: %+v", p)
		}
	}

	// Several models at once, from one read: the same answer each.
	both, err := e.srv.ModelSeriesOf(ctx, []string{"thermo-bands", "thermo-bands"}, SeriesQuery{From: t0.Add(2 * time.Hour), To: t0.Add(4 * time.Hour), Step: time.Hour})
	if err != nil || len(both) != 2 {
		t.Fatalf("series of two: %v %d", err, len(both))
	}
	want, _ := json.Marshal(got)
	for _, r := range both {
		if b, _ := json.Marshal(r); string(b) != string(want) {
			t.Fatalf("series of two:\n%s\nwant\n%s", b, want)
		}
	}
	if _, err := e.srv.ModelSeriesOf(ctx, []string{"thermo-bands", "nothing"}, SeriesQuery{From: t0, To: t0.Add(time.Hour)}); !errors.Is(err, ErrModelNotFound) {
		t.Fatalf("series of an unknown model: %v", err)
	}

	// By edge: version 1 on each edge.
	var byEdge ModelSeriesResponse
	e.get("/api/v1/models/thermo-bands/series?from="+at(120)+"&to="+at(240)+"&step=60m&by=edge", certs.RoleViewer, http.StatusOK, &byEdge)
	var edges []string
	for _, s := range byEdge.Series {
		edges = append(edges, fmt.Sprintf("%d/%s/%d", s.Version, s.Edge, len(s.Points)))
	}
	if fmt.Sprint(edges) != "[1/edge-a/2 1/edge-b/2 2/edge-a/2 0/edge-a/2]" {
		t.Fatalf("by edge: %v", edges)
	}
	if p := byEdge.Series[1].Points[1]; p.Scored != 1800 || f(p.LatencyMS) != 0.04 || f(p.Agreement) != 0.545455 {
		t.Errorf("edge-b after its restart: %+v agreement %v", p, f(p.Agreement))
	}

	// Without a step: at most 120 points (a 2 h window: minutes); a
	// window with no records: no series.
	var fine ModelSeriesResponse
	e.get("/api/v1/models/thermo-bands/series?from="+at(120)+"&to="+at(240), certs.RoleViewer, http.StatusOK, &fine)
	if fine.Step != 60 || len(fine.Series) != 3 || len(fine.Series[0].Points) != 120 {
		t.Fatalf("per minute: step %d, %d series", fine.Step, len(fine.Series))
	}
	var empty ModelSeriesResponse
	e.get("/api/v1/models/thermo-bands/series?from="+at(-600)+"&to="+at(-300), certs.RoleViewer, http.StatusOK, &empty)
	if empty.Step != 300 || empty.Series == nil || len(empty.Series) != 0 {
		t.Fatalf("an empty window: %+v", empty)
	}

	for _, q := range []string{"step=90s", "step=-1h", "step=x", "by=device", "from=" + at(240) + "&to=" + at(120),
		"from=" + at(0) + "&to=" + at(60*24*30) + "&step=1m", "from=yesterday"} {
		resp, b := e.do("GET", "/api/v1/models/thermo-bands/series?"+q, op, "")
		problem(t, resp, b, http.StatusBadRequest)
	}
	resp, b := e.do("GET", "/api/v1/models/nothing/series", op, "")
	problem(t, resp, b, http.StatusNotFound)
}

// seedSeries appends to edge-a's and edge-b's /uplink/events what their
// model runners append for thermo-bands (class thermo), as edge.Models
// writes it: from minute 110 to 249 after t0, a model_summary per version
// and minute (version 1 on both edges, 2 on edge-a), a model_status every
// 5 min on edge-a (version 1 since minute 100, agreeing with the canary
// on 90% of its readings before minute 180 and 80% after; version 2 once)
// and two on edge-b (its count starting again between them), and
// detections: the canary's at minutes 130 and 200, a model's at 131 and
// another class's at 132.
func seedSeries(t *testing.T, st *store.Store, t0 time.Time) {
	t.Helper()
	min := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	msgs := map[string][]store.Message{}
	add := func(edge, kind, key string, at time.Time, v any) {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		msgs[edge] = append(msgs[edge], store.Message{Key: []byte(key), Value: b, Timestamp: at,
			Headers: map[string]string{"device": key, anomaly.RecordHeader: kind}})
	}
	summary := func(edge string, v uint64, m int, scored, used, detections, faults int64, latency float64) {
		add(edge, models.RecordSummary, "thermo-bands", min(m+1), models.SummaryRecord{Type: models.RecordSummary, Edge: edge, Class: "thermo",
			Model: "thermo-bands", Version: v, Stage: "live", From: min(m), Scored: scored, Used: used, Detections: detections, Faults: faults,
			MaxScore: 0.5, Latency: latency})
	}
	status := func(edge string, m int, versions map[string]models.EdgeState) {
		add(edge, models.RecordStatus, "thermo-bands", min(m), models.StatusRecord{Type: models.RecordStatus, Edge: edge, Model: "thermo-bands",
			Class: "thermo", At: min(m), Versions: versions})
	}
	detection := func(m int, class, detector string) {
		add("edge-a", anomaly.RecordAnomaly, "th-1", min(m), anomaly.Detection{Type: anomaly.RecordAnomaly, Device: "th-1", Class: class,
			Channel: "temp", Detector: detector, Score: 0.9, At: min(m)})
	}
	agreed := 0
	for m := 100; m < 250; m++ {
		if m%5 == 0 && m >= 110 {
			scored := 60 * (m - 100)
			status("edge-a", m, map[string]models.EdgeState{"1": {State: models.StateRunning, Scored: int64(scored), Used: int64(scored),
				Agreement: float64(agreed) / float64(scored), Drift: float64(m) / 1000}})
		}
		if m < 180 {
			agreed += 54
		} else {
			agreed += 48
		}
		if m < 110 {
			continue
		}
		summary("edge-a", 1, m, 60, 60, int64(b2i(m%30 == 0)), 0, 10)
		summary("edge-b", 1, m, 30, 30, 0, 0, 40)
		summary("edge-a", 2, m, 60, 0, int64(b2i(m%20 == 0)), int64(b2i(m == 150)), 20)
		switch m {
		case 130:
			detection(m, "thermo", "bands")
		case 131:
			detection(m, "thermo", "thermo-bands@1/bands")
		case 132:
			detection(m, "pump", "bands")
		case 150:
			status("edge-a", m, map[string]models.EdgeState{"2": {State: models.StateRunning, Scored: 3000, Agreement: 0.97, AgreementLive: 0.95, Drift: 0.42}})
		case 200:
			detection(m, "thermo", "bands")
			status("edge-b", m, map[string]models.EdgeState{"1": {State: models.StateRunning, Scored: 1000, Agreement: 0.5}})
		case 205:
			status("edge-b", m, map[string]models.EdgeState{"1": {State: models.StateRunning, Scored: 100, Agreement: 1}})
		}
	}
	for edge, ms := range msgs {
		slices.SortStableFunc(ms, func(a, b store.Message) int { return a.Timestamp.Compare(b.Timestamp) })
		if _, err := st.Stream(store.UplinkStream).Append(context.Background(), edge, ms...); err != nil {
			t.Fatal(err)
		}
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// FuzzModelSeries: any query parses to a window of at most
// MaxSeriesPoints whole steps or is refused, and any record an edge sends
// up is summed or skipped, never a panic or a figure out of range.
func FuzzModelSeries(f *testing.F) {
	f.Add("from=2026-03-01T02:00:00Z&to=2026-03-01T04:00:00Z&step=1h&by=edge", byte(0),
		[]byte(`{"type":"model_summary","model":"m","version":1,"from":"2026-03-01T02:00:00Z","scored":60,"latency_us":10}`))
	f.Add("step=5m", byte(1), []byte(`{"type":"model_status","model":"m","at":"2026-03-01T02:30:00Z","versions":{"1":{"state":"running","scored":10,"agreement":2,"drift":0.5}}}`))
	f.Add("to=2026-03-01T04:00:00Z", byte(2), []byte(`{"type":"anomaly","class":"c","detector":"bands","at":"2026-03-01T03:00:00Z"}`))
	f.Add("step=0s&from=x", byte(1), []byte(`{"versions":{"0":{},"x":{}}}`))
	kinds := []string{models.RecordSummary, models.RecordStatus, anomaly.RecordAnomaly}
	f.Fuzz(func(t *testing.T, query string, kind byte, value []byte) {
		now := time.Date(2026, 3, 1, 4, 0, 0, 0, time.UTC)
		vals, err := url.ParseQuery(query)
		if err != nil {
			return
		}
		q, err := ParseSeriesQuery(vals, now)
		if err != nil {
			return
		}
		if q.Step < time.Minute || q.Step%time.Minute != 0 || !q.From.Before(q.To) || q.To.Sub(q.From) > MaxSeriesPoints*q.Step {
			t.Fatalf("query %q gave %+v", query, q)
		}
		in := seriesInput{Class: "c", Stages: map[uint64]string{1: "live"}}
		msg := store.Message{Key: []byte("m"), Value: value, Headers: map[string]string{anomaly.RecordHeader: kinds[int(kind)%len(kinds)]}}
		in.add("edge-a", "m", &msg)
		in.add("edge-a", "m", &msg)
		for _, s := range in.series(q) {
			for _, p := range s.Points {
				if p.T.Before(q.From) || !p.T.Before(q.To) {
					t.Fatalf("point at %v outside [%v, %v)", p.T, q.From, q.To)
				}
				for _, v := range []*float64{p.Agreement, p.AgreementLive} {
					if v != nil && (*v < 0 || *v > 1) {
						t.Fatalf("agreement %v", *v)
					}
				}
			}
		}
	})
}

// BenchmarkModelSeries measures GET /api/v1/models/{name}/series over a
// day of 10 edges' uplinks, each holding, beside a model's per-minute
// summaries of two versions and its status every 5 min, the uplink
// filter's summaries of 100 devices every 5 min (ten times as many
// records). Baselines in the same run: reading the same records without
// decoding them, and GET /api/v1/models/{name} (each edge's latest
// status, what the page showed before).
func BenchmarkModelSeries(b *testing.B) {
	const edges, devices = 10, 100
	e := newBenchEnv(b)
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	key, err := models.LoadOrCreateKey(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	var rs []models.Reading
	for i := range 300 {
		rs = append(rs, models.Reading{Device: "th-1", At: t0.Add(time.Duration(i) * 5 * time.Minute), Values: map[string]float64{"temp": 20 + math.Sin(float64(i)/10)}})
	}
	reg := &models.Registry{Store: e.st, Key: key}
	for range 2 {
		if _, _, err := reg.Train(ctx, models.TrainRequest{Name: "thermo-bands", Class: "thermo"}, rs); err != nil {
			b.Fatal(err)
		}
	}
	for _, c := range []struct {
		action string
		v      uint64
	}{{models.ActionPublish, 1}, {models.ActionPromote, 1}, {models.ActionPublish, 2}} {
		if _, err := reg.Change(ctx, "thermo-bands", c.action, c.v); err != nil {
			b.Fatal(err)
		}
	}
	records := 0
	for i := range edges {
		edge := fmt.Sprintf("edge-%02d", i)
		if _, err := e.st.Table(store.ShadowsTable).Put(ctx, "th-"+edge, json.RawMessage(`{"class":"thermo","edge":"`+edge+`"}`)); err != nil {
			b.Fatal(err)
		}
		var msgs []store.Message
		add := func(kind, key string, at time.Time, v any) {
			body, _ := json.Marshal(v)
			msgs = append(msgs, store.Message{Key: []byte(key), Value: body, Timestamp: at, Headers: map[string]string{"device": key, anomaly.RecordHeader: kind}})
		}
		for m := range 24 * 60 {
			from := t0.Add(time.Duration(m) * time.Minute)
			for v := uint64(1); v <= 2; v++ {
				add(models.RecordSummary, "thermo-bands", from.Add(time.Minute), models.SummaryRecord{Type: models.RecordSummary, Edge: edge, Class: "thermo",
					Model: "thermo-bands", Version: v, Stage: "live", From: from, Scored: 600, Used: 600, Detections: int64(m % 3), MaxScore: 0.4, Latency: 11})
			}
			if m%5 == 4 {
				n := int64(600 * (m + 1))
				add(models.RecordStatus, "thermo-bands", from.Add(time.Minute), models.StatusRecord{Type: models.RecordStatus, Edge: edge, Model: "thermo-bands",
					Class: "thermo", At: from.Add(time.Minute), Versions: map[string]models.EdgeState{
						"1": {State: models.StateRunning, Scored: n, Used: n, Agreement: 0.99, Drift: 0.05},
						"2": {State: models.StateRunning, Scored: n, Agreement: 0.97, AgreementLive: 0.95, Drift: 0.2}}})
				for d := range devices {
					dev := fmt.Sprintf("%s-d%03d", edge, d)
					add(anomaly.RecordSummary, dev, from.Add(time.Minute), anomaly.Summary{Type: anomaly.RecordSummary, Device: dev, From: from.Add(-4 * time.Minute),
						To: from.Add(time.Minute), Readings: 60, Channels: map[string]anomaly.ChannelSummary{"temp": {Count: 60, Min: 19, Max: 21, Mean: 20, P50: 20, P95: 20.8, MaxScore: 0.3}}})
				}
			}
			if len(msgs) >= 5000 || m == 24*60-1 {
				if _, err := e.st.Stream(store.UplinkStream).Append(ctx, edge, msgs...); err != nil {
					b.Fatal(err)
				}
				records += len(msgs)
				msgs = msgs[:0]
			}
		}
	}
	q := SeriesQuery{From: t0, To: t0.Add(24 * time.Hour)}
	b.Logf("%d uplink records over %d edges", records, edges)
	b.Run("series/24h", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			res, err := e.srv.ModelSeries(ctx, "thermo-bands", q)
			if err != nil || len(res.Series) != 2 || len(res.Series[0].Points) != 96 {
				b.Fatalf("%v %+v", err, res.Series)
			}
		}
	})
	b.Run("baseline-read/24h", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			n, budget := 0, MaxSeriesScan
			for i := range edges {
				if err := scanRange(ctx, e.st.Stream(store.UplinkStream), 1, fmt.Sprintf("edge-%02d", i), q.From.Add(-seriesLookback), q.To.Add(time.Minute), &budget,
					func(*store.Message) { n++ }); err != nil {
					b.Fatal(err)
				}
			}
			if n != records {
				b.Fatalf("read %d of %d", n, records)
			}
		}
	})
	b.Run("baseline-latest-status", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := e.srv.Model(ctx, "thermo-bands"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
