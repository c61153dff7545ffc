package console

import (
	"fmt"
	"strings"
	"testing"
	"time"

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
