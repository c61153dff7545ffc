package console

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weft-io/weft/anomaly"
	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/models"
	"github.com/weft-io/weft/store"
)

// SeedModels (exported for the browser test, package console_test)
// trains thermo-bands 1 (live) and 2 (candidate) into st, appends the
// last hour of edge1's summaries and status of both (SeedModelSeries),
// and then its latest status of both as its model runner would.
func SeedModels(t *testing.T, st *store.Store) {
	t.Helper()
	ctx := context.Background()
	key, err := models.LoadOrCreateKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	var rs []models.Reading
	for i := range 300 {
		rs = append(rs, models.Reading{Device: "th-1", At: t0.Add(time.Duration(i) * 5 * time.Minute), Values: map[string]float64{"temp": 20 + math.Sin(float64(i)/10)}})
	}
	reg := &models.Registry{Store: st, Key: key}
	for range 2 {
		if _, _, err := reg.Train(ctx, models.TrainRequest{Name: "thermo-bands", Class: "thermo"}, rs); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		action string
		v      uint64
	}{{models.ActionPublish, 1}, {models.ActionPromote, 1}, {models.ActionPublish, 2}} {
		if _, err := reg.Change(ctx, "thermo-bands", c.action, c.v); err != nil {
			t.Fatal(err)
		}
	}
	SeedModelSeries(t, st, time.Now().Add(-time.Hour), 60)
	rec, _ := json.Marshal(models.StatusRecord{Type: models.RecordStatus, Edge: st.Name(), Model: "thermo-bands", Class: "thermo", At: t0,
		Versions: map[string]models.EdgeState{
			"1": {State: models.StateRunning, Scored: 1000, Used: 1000, Agreement: 0.99, LatencyMicros: 12, DetectionsPerHour: 0.5, Drift: 0.05},
			"2": {State: models.StateRunning, Scored: 1000, Agreement: 0.97, AgreementLive: 0.95, LatencyMicros: 14, DetectionsPerHour: 0.7, Drift: 0.42, Faults: 3},
		}})
	if _, err := st.Stream(store.UplinkStream).Append(ctx, st.Name(), store.Message{Key: []byte("thermo-bands"), Value: rec,
		Headers: map[string]string{anomaly.RecordHeader: models.RecordStatus}}); err != nil {
		t.Fatal(err)
	}
}

// SeedModelSeries appends to st's /uplink/events (topic: st's name)
// what an edge's model runner (edge.Models) appends for thermo-bands of
// class thermo over n minutes from start: a model_summary per version (1
// and 2) and minute, stamped at the minute's end; a model_status of both
// every 5 min, their cumulative counts growing, version 2's drift rising
// past 0.3; and a detection of the canary every 10 min.
func SeedModelSeries(t *testing.T, st *store.Store, start time.Time, n int) {
	t.Helper()
	start = start.Truncate(time.Minute)
	var msgs []store.Message
	add := func(kind, key string, at time.Time, v any) {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, store.Message{Key: []byte(key), Value: b, Timestamp: at, Headers: map[string]string{"device": key, anomaly.RecordHeader: kind}})
	}
	for i := range n {
		from := start.Add(time.Duration(i) * time.Minute)
		for v, stage := range map[uint64]string{1: models.StageLive, 2: models.StageCandidate} {
			used := int64(0)
			if v == 1 {
				used = 20
			}
			add(models.RecordSummary, "thermo-bands", from.Add(time.Minute), models.SummaryRecord{Type: models.RecordSummary, Edge: st.Name(),
				Class: "thermo", Model: "thermo-bands", Version: v, Stage: stage, From: from, Scored: 20, Used: used,
				Detections: int64(i % int(v+1)), MaxScore: 0.4, Latency: 10 + 2*float64(v) + float64(i%7)})
		}
		if i%10 == 5 {
			add(anomaly.RecordAnomaly, "th-1", from.Add(30*time.Second), anomaly.Detection{Type: anomaly.RecordAnomaly, Device: "th-1",
				Class: "thermo", Channel: "temp", Detector: "bands", Score: 0.9, At: from.Add(30 * time.Second)})
		}
		if i%5 == 4 {
			at := from.Add(time.Minute)
			scored := int64(20 * (i + 1))
			add(models.RecordStatus, "thermo-bands", at, models.StatusRecord{Type: models.RecordStatus, Edge: st.Name(), Model: "thermo-bands",
				Class: "thermo", At: at, Versions: map[string]models.EdgeState{
					"1": {State: models.StateRunning, Scored: scored, Used: scored, Agreement: 0.99 - 0.0005*float64(i), Drift: 0.05},
					"2": {State: models.StateRunning, Scored: scored, Agreement: 0.97 - 0.001*float64(i), AgreementLive: 0.95, Drift: 0.45 * float64(i) / float64(n)},
				}})
		}
	}
	if _, err := st.Stream(store.UplinkStream).Append(context.Background(), st.Name(), msgs...); err != nil {
		t.Fatal(err)
	}
}

func TestModelsPage(t *testing.T) {
	e := newEnv(t)
	SeedModels(t, e.st)

	// A viewer sees the class, its live model, candidate and canary, and
	// their figures, without buttons.
	viewer := e.browser()
	viewer.signIn(e.token(certs.RoleViewer, nil))
	page := viewer.get("/models", 200)
	for _, want := range []string{`id="class-thermo"`, `data-model="thermo-bands@1"`, `data-role="live"`, `data-role="candidate"`, `data-role="canary"`,
		"99.0%", "95.0%", "12.0 µs", `<span class="badge bad">0.420</span>`, "1/1"} {
		if !strings.Contains(page, want) {
			t.Errorf("viewer page: no %q", want)
		}
	}
	// Its charts: a line per version and the canary's, in each metric's
	// chart, and the class and window pickers.
	for _, want := range []string{`data-metric="agreement"`, `data-metric="latency"`, `data-metric="detections"`, `data-metric="drift"`,
		`data-series="thermo-bands@1"`, `data-series="thermo-bands@2"`, `data-series="canary"`, `class="mark"`,
		`href="/models?class=thermo&amp;window=24h"`, `data-window="7d"`, `data-live-on="models"`, `data-events="/live/models?window=24h"`} {
		if !strings.Contains(page, want) {
			t.Errorf("viewer page: no %q", want)
		}
	}
	if got := strings.Count(page, `data-series="canary"`); got != 1 {
		t.Errorf("the canary's line is in %d charts, want 1 (detections)", got)
	}
	part := viewer.get("/models?part=live&class=thermo&window=1h", 200)
	if strings.Contains(part, "<html") || !strings.Contains(part, `id="charts-thermo"`) || !strings.Contains(part, `data-series="thermo-bands@2"`) {
		t.Errorf("the live part: %.300s", part)
	}
	if n := pointsOf(part, "agreement", "thermo-bands@1"); n < 10 {
		t.Errorf("agreement of version 1 over an hour: %d points, want one per status report", n)
	}
	if n := pointsOf(part, "latency", "thermo-bands@2"); n < 55 {
		t.Errorf("latency of version 2 over an hour: %d points, want one a minute", n)
	}
	if strings.Contains(page, "/promote") || strings.Contains(page, "style=") {
		t.Error("viewer page has a button, or an inline style the CSP would block")
	}
	resp, _ := viewer.do("POST", "/models/thermo-bands/promote", url.Values{"csrf": {csrfOf(t, page)}, "version": {"2"}}, nil)
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || !strings.Contains(loc, "notice=forbidden") {
		t.Fatalf("viewer promote: %d %s", resp.StatusCode, loc)
	}
	if page := viewer.get("/models?class=pump", 200); !strings.Contains(page, "No published models of class pump") {
		t.Error("a class without models")
	}

	// An operator promotes the candidate, then rolls back.
	op := e.browser()
	op.signIn(e.token(certs.RoleOperator, nil))
	page = op.get("/models", 200)
	if !strings.Contains(page, `action="/models/thermo-bands/promote"`) || !strings.Contains(page, `action="/models/thermo-bands/retire"`) ||
		strings.Contains(page, "/rollback") {
		t.Fatal("operator page: want promote and retire, no rollback yet")
	}
	resp, _ = op.do("POST", "/models/thermo-bands/promote", url.Values{"csrf": {"forged"}, "version": {"2"}}, nil)
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("promote without the CSRF token: %d", resp.StatusCode)
	}
	resp, _ = op.do("POST", "/models/thermo-bands/promote", url.Values{"csrf": {csrfOf(t, page)}, "version": {"2"}}, nil)
	if loc := resp.Header.Get("Location"); !strings.HasPrefix(loc, "/models?notice=promote") {
		t.Fatalf("promote: %d %s", resp.StatusCode, loc)
	}
	page = op.get("/models?notice=promote", 200)
	if !strings.Contains(page, "Version promoted") || !strings.Contains(page, "Roll back thermo-bands to version 1") {
		t.Fatal("after promote: want the notice and a rollback button")
	}
	resp, _ = op.do("POST", "/models/thermo-bands/promote", url.Values{"csrf": {csrfOf(t, page)}, "version": {"2"}}, nil)
	if loc := resp.Header.Get("Location"); !strings.Contains(loc, "notice=stage") {
		t.Fatalf("promote twice: %s", loc)
	}
	resp, _ = op.do("POST", "/models/thermo-bands/rollback", url.Values{"csrf": {csrfOf(t, page)}}, nil)
	if loc := resp.Header.Get("Location"); !strings.Contains(loc, "notice=rollback") {
		t.Fatalf("rollback: %s", loc)
	}
	m, err := e.con.api.Model(context.Background(), "thermo-bands")
	if err != nil || len(m.Versions) != 2 || m.Versions[0].Stage != models.StageLive || m.Versions[1].Stage != models.StageRetired {
		t.Fatalf("after rollback: %+v %v", m.Versions, err)
	}
	resp, _ = op.do("POST", "/models/nothing/retire", url.Values{"csrf": {csrfOf(t, page)}, "version": {"1"}}, nil)
	if loc := resp.Header.Get("Location"); !strings.Contains(loc, "notice=notfound") {
		t.Fatalf("retire of no model: %s", loc)
	}
}

func TestModelsPace(t *testing.T) {
	for window, want := range map[string]time.Duration{"1h": 30 * time.Second, "6h": 150 * time.Second, "24h": 5 * time.Minute, "7d": 5 * time.Minute, "": 5 * time.Minute} {
		if got := modelsPace(window); got != want {
			t.Errorf("pace of %q: %v, want %v", window, got, want)
		}
	}
}

// pointsOf returns the count of points of the line of series in the
// chart of metric on page (-1 when there is none).
func pointsOf(page, metric, series string) int {
	_, fig, ok := strings.Cut(page, `data-metric="`+metric+`"`)
	if !ok {
		return -1
	}
	fig, _, _ = strings.Cut(fig, "</figure>")
	_, line, ok := strings.Cut(fig, `data-series="`+series+`" data-points="`)
	if !ok {
		return -1
	}
	n, _ := strconv.Atoi(line[:strings.IndexByte(line, '"')])
	return n
}
