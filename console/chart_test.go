package console

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/weft-io/weft/api"
	"github.com/weft-io/weft/store"
)

func TestTelemetrySeries(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 11, 0, 0, 0, time.UTC)
	msg := func(topic, value string, at int) store.Message {
		return store.Message{Value: []byte(value), Timestamp: t0.Add(time.Duration(at) * time.Second), Headers: map[string]string{"mqtt_topic": topic}}
	}
	msgs := []store.Message{
		msg("devices/p1/telemetry", `{"ts":"2026-03-01T10:59:00Z","pressure_bar":4.1,"flow_lpm":120,"label":"x"}`, 0),
		msg("devices/p1/telemetry", `{"pressure_bar":4.3,"flow_lpm":"bad"}`, 1),
		msg("devices/p1/telemetry/temp", `45.5`, 2),
		msg("devices/p1/telemetry/motor", `{"rpm":1500}`, 3),
		msg("devices/p1/events/alarm", `{"code":1}`, 4),
		msg("devices/p1/shadow/reported", `{"setpoint":7}`, 5),
		msg("devices/p1/telemetry", `not json`, 6),
		msg("devices/p1/telemetry/temp", `"text"`, 7),
		msg("devices/p10/telemetry", `{"other":1}`, 8),
	}
	got := telemetrySeries("p1", msgs)
	var names []string
	for _, s := range got {
		names = append(names, fmt.Sprintf("%s:%d", s.name, len(s.points)))
	}
	if want := "flow_lpm:1 motor.rpm:1 pressure_bar:2 temp:1"; strings.Join(names, " ") != want {
		t.Fatalf("series %v, want %s", names, want)
	}
	if p := got[2].points[0]; !p.t.Equal(t0.Add(-time.Minute)) || p.v != 4.1 {
		t.Fatalf("first pressure point %+v: want the payload's ts", p)
	}
}

func TestDrawChart(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 11, 0, 0, 0, time.UTC)
	c := drawChart(series{name: "x", points: []point{{t0, 1}, {t0.Add(time.Second), 3}, {t0.Add(3 * time.Second), 2}}})
	if c.Line != "4.0,92.0 108.0,4.0 316.0,48.0" {
		t.Fatalf("line %q", c.Line)
	}
	if c.Area != "4.0,92.0 4.0,92.0 108.0,4.0 316.0,48.0 316.0,92.0" || c.Min != "1.00" || c.Max != "3.00" || c.Last != "2.00" || c.LastX != "316.0" {
		t.Fatalf("chart %+v", c)
	}
	flat := drawChart(series{name: "f", points: []point{{t0, 5}, {t0, 5}}})
	if !flat.Flat || flat.Line != "4.0,48.0 316.0,48.0" {
		t.Fatalf("flat chart %+v", flat)
	}
	if one := drawChart(series{name: "o", points: []point{{t0, 5}}}); one.Line != "316.0,48.0" {
		t.Fatalf("one point %+v", one)
	}
	if empty := drawChart(series{name: "e"}); empty.Line != "" || empty.Count != 0 {
		t.Fatalf("empty %+v", empty)
	}
	for v, want := range map[float64]string{1234.5: "1234", 45.55: "45.5", 4.123: "4.12", 0.01234: "0.0123", -12.34: "-12.3"} {
		if got := formatReading(v); got != want {
			t.Errorf("formatReading(%g) = %s, want %s", v, got, want)
		}
	}
}

// TestDrawMetrics: one chart per metric, a line per series with points
// in it (a null figure is no point), the canary only where it has
// figures, lines over the window's width, the drift threshold marked.
func TestDrawMetrics(t *testing.T) {
	from := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	to := from.Add(time.Hour)
	f := func(v float64) *float64 { return &v }
	v1 := namedSeries{"m@1", api.ModelSeries{Version: 1, Stage: "live", Points: []api.SeriesPoint{
		{T: from, Scored: 10, LatencyMS: f(0.01), Agreement: f(0.9), Drift: f(0.1), DetectionsPerHour: 2},
		{T: from.Add(30 * time.Minute), Scored: 10, LatencyMS: f(0.03), DetectionsPerHour: 4},
		{T: to.Add(-time.Minute), Scored: 10, LatencyMS: f(0.02), Agreement: f(0.8), Drift: f(0.2)},
	}}}
	canary := namedSeries{"canary", api.ModelSeries{Stage: api.StageCanary, Points: []api.SeriesPoint{{T: from, DetectionsPerHour: 6}}}}
	charts := drawMetrics([]namedSeries{v1, canary}, from, to)
	var got []string
	for _, c := range charts {
		var lines []string
		for _, l := range c.Lines {
			lines = append(lines, fmt.Sprintf("%s:%d:%s", l.Label, l.Count, l.Last))
		}
		got = append(got, fmt.Sprintf("%s[%s] %s..%s mark=%v", c.Metric, strings.Join(lines, " "), c.Min, c.Max, c.Mark != ""))
	}
	want := []string{
		"agreement[m@1:2:80.0%] 80.0%..90.0% mark=false",
		"latency[m@1:3:20.0] 0..30.0 mark=false",
		"detections[m@1:3:0 canary:1:6.00] 0..6.00 mark=false",
		"drift[m@1:2:0.2] 0..0.36 mark=true",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("charts\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if l := charts[1].Lines[0]; !strings.HasPrefix(l.Points, "4.0,") || l.LastX != "310.8" || l.Color != 0 || l.Canary {
		t.Fatalf("latency line %+v", l)
	}
	if !charts[2].Lines[1].Canary {
		t.Fatal("the canary's line is not marked")
	}
	if empty := drawMetrics(nil, from, to); len(empty) != 4 || empty[0].Lines != nil {
		t.Fatalf("no series: %+v", empty)
	}
}
