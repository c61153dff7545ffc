package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"

	"github.com/weft-io/weft/core"
	"github.com/weft-io/weft/device"
	"github.com/weft-io/weft/edge"
	"github.com/weft-io/weft/internal/testenv"
	"github.com/weft-io/weft/store"
)

// metricNames are the names of Weft's metrics (weft_...) a PromQL
// expression uses: identifiers starting with weft_ followed by a
// selector, a range, a parenthesis, a comma, a space or the end,
// outside quoted strings.
func metricNames(expr string) []string {
	var out []string
	isIdent := func(c byte, first bool) bool {
		return c == '_' || c == ':' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (!first && c >= '0' && c <= '9')
	}
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			j := i + 1
			for j < len(expr) && expr[j] != c {
				if expr[j] == '\\' && c != '`' {
					j++
				}
				j++
			}
			i = j + 1
		case isIdent(c, true):
			j := i
			for j < len(expr) && isIdent(expr[j], j == i) {
				j++
			}
			word := expr[i:j]
			next := byte(' ')
			if j < len(expr) {
				next = expr[j]
			}
			if strings.HasPrefix(word, "weft_") && strings.IndexByte("{([), \t\n", next) >= 0 && !slices.Contains(out, word) {
				out = append(out, word)
			}
			i = j
		default:
			i++
		}
	}
	return out
}

func TestMetricNames(t *testing.T) {
	for _, c := range []struct {
		expr string
		want []string
	}{
		{`sum(rate(weft_gateway_messages_in_total[5m])) by (instance)`, []string{"weft_gateway_messages_in_total"}},
		{`histogram_quantile(0.99, sum by (le) (rate(weft_gateway_append_seconds_bucket{job="weft"}[5m])))`, []string{"weft_gateway_append_seconds_bucket"}},
		{`weft_sync_link_up == 0`, []string{"weft_sync_link_up"}},
		{`max(weft_sync_lag_seconds{stream="weft_not_a_metric"})`, []string{"weft_sync_lag_seconds"}},
		{`weft_a / on(instance) weft_b,weft_c`, []string{"weft_a", "weft_b", "weft_c"}},
		{`label_values(weft_sync_link_up, peer)`, []string{"weft_sync_link_up"}},
		{`node_filesystem_avail_bytes / 2`, nil},
	} {
		if got := metricNames(c.expr); !slices.Equal(got, c.want) {
			t.Errorf("metricNames(%q) = %q, want %q", c.expr, got, c.want)
		}
	}
}

// queries are the PromQL expressions of the dashboard (every "expr" and
// templating "query") and of the alerts, by where they are.
func queries(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	b, err := os.ReadFile("grafana/weft.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash any
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("grafana/weft.json: %v", err)
	}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if s, ok := e.(string); ok && (k == "expr" || k == "query") && s != "" {
					out["grafana/weft.json "+path+"."+k] = s
				}
				walk(path+"."+k, e)
			}
		case []any:
			for i, e := range x {
				walk(fmt.Sprintf("%s[%d]", path, i), e)
			}
		}
	}
	walk("", dash)

	b, err = os.ReadFile("prometheus/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Name  string
			Rules []struct {
				Alert, Record, Expr, For string
				Labels, Annotations      map[string]string
			}
		}
	}
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&rules); err != nil {
		t.Fatalf("prometheus/alerts.yaml: %v", err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || r.Expr == "" || r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				t.Errorf("prometheus/alerts.yaml: rule %+v wants alert, expr, a severity and a summary", r)
			}
			if r.For != "" {
				if _, err := model.ParseDuration(r.For); err != nil {
					t.Errorf("prometheus/alerts.yaml: %s: for: %v", r.Alert, err)
				}
			}
			out["prometheus/alerts.yaml "+r.Alert] = r.Expr
		}
	}
	return out
}

// scrape returns the names of the series /metrics at addr serves: a
// histogram's _bucket, _sum and _count, a summary's _sum and _count.
func scrape(t *testing.T, addr string) map[string]bool {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("%s/metrics: %v", addr, err)
	}
	names := map[string]bool{}
	for name, f := range fams {
		names[name] = true
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			names[name+"_bucket"], names[name+"_sum"], names[name+"_count"] = true, true, true
		case dto.MetricType_SUMMARY:
			names[name+"_sum"], names[name+"_count"] = true, true
		}
	}
	return names
}

// TestDashboardMetrics runs a core and an edge linked to it, has a device
// publish through the edge until the core holds its messages, scrapes
// both nodes' /metrics and fails if a query of the Grafana dashboard or
// of the Prometheus alerts names a Weft metric neither serves.
func TestDashboardMetrics(t *testing.T) {
	qs := queries(t)
	if len(qs) < 10 {
		t.Fatalf("only %d queries found", len(qs))
	}

	f := testenv.New(t)
	c := f.StartCore("core1", core.Config{})
	e := f.StartEdge("edge1", edge.Config{Core: c.SyncAddr().String(), Replicate: []string{store.EventsStream}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	creds, pool, err := device.Credentials(f.Certs, []string{"pump-1"}, "pump")
	if err != nil {
		t.Fatal(err)
	}
	dev, err := device.Connect(ctx, device.DialConfig{Addr: e.MQTTAddr().String(), Roots: pool}, "pump-1", creds[0], true, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Disconnect(&paho.Disconnect{})
	for i := range 5 {
		if _, err := dev.Publish(ctx, &paho.Publish{Topic: "devices/pump-1/telemetry", QoS: 1, Payload: fmt.Appendf(nil, `{"pressure_bar":%d}`, 3+i%2)}); err != nil {
			t.Fatal(err)
		}
	}
	testenv.WaitEqual(t, e.Store(), c.Store(), 30*time.Second, store.EventsStream)

	// The second scrape of a node also holds the API's figures of the
	// first, as Prometheus would see them.
	served := map[string]bool{}
	for range 2 {
		for _, addr := range []string{e.HTTPAddr().String(), c.HTTPAddr().String()} {
			for name := range scrape(t, addr) {
				served[name] = true
			}
		}
	}
	if os.Getenv("WEFT_TEST_LOG") != "" {
		var all []string
		for n := range served {
			if strings.HasPrefix(n, "weft_") {
				all = append(all, n)
			}
		}
		slices.Sort(all)
		t.Logf("served: %s", strings.Join(all, " "))
	}
	used := 0
	for where, q := range qs {
		for _, name := range metricNames(q) {
			used++
			if !served[name] {
				t.Errorf("%s: %s is served by neither node (query %q)", where, name, q)
			}
		}
	}
	if used == 0 {
		t.Fatal("no query names a weft_ metric")
	}
}
