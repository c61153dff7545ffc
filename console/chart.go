package console

import (
	"bytes"
	"encoding/json"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/weft-io/weft/store"
)

// point is one reading of a channel.
type point struct {
	t time.Time
	v float64
}

// series is one telemetry channel over time.
type series struct {
	name   string
	points []point
}

// maxChannels bounds the charts of one device page.
const maxChannels = 12

// telemetrySeries extracts the channels of a device's telemetry messages
// (those it published on devices/<id>/telemetry[/<channel>]), oldest
// first: a JSON object gives one channel per numeric field (its "ts" field,
// if any, is the time of the reading, else the message's timestamp); a
// bare number published on .../telemetry/<channel> is that channel.
func telemetrySeries(id string, msgs []store.Message) []series {
	prefix := "devices/" + id + "/telemetry"
	byName := map[string]*series{}
	var order []string
	add := func(name string, t time.Time, v float64) {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return
		}
		s := byName[name]
		if s == nil {
			if len(byName) == maxChannels {
				return
			}
			s = &series{name: name}
			byName[name] = s
			order = append(order, name)
		}
		s.points = append(s.points, point{t, v})
	}
	for _, m := range msgs {
		topic := m.Headers["mqtt_topic"]
		if topic != prefix && !strings.HasPrefix(topic, prefix+"/") {
			continue
		}
		channel := strings.TrimPrefix(strings.TrimPrefix(topic, prefix), "/")
		dec := json.NewDecoder(bytes.NewReader(m.Value))
		dec.UseNumber()
		var v any
		if dec.Decode(&v) != nil {
			continue
		}
		switch x := v.(type) {
		case json.Number:
			if f, err := x.Float64(); err == nil && channel != "" {
				add(channel, m.Timestamp, f)
			}
		case map[string]any:
			t := m.Timestamp
			if s, ok := x["ts"].(string); ok {
				if pt, err := time.Parse(time.RFC3339Nano, s); err == nil {
					t = pt
				}
			}
			for _, k := range slices.Sorted(maps.Keys(x)) {
				n, ok := x[k].(json.Number)
				if !ok || k == "ts" {
					continue
				}
				f, err := n.Float64()
				if err != nil {
					continue
				}
				name := k
				if channel != "" {
					name = channel + "." + k
				}
				add(name, t, f)
			}
		}
	}
	out := make([]series, 0, len(order))
	for _, n := range order {
		s := byName[n]
		slices.SortStableFunc(s.points, func(a, b point) int { return a.t.Compare(b.t) })
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b series) int { return strings.Compare(a.name, b.name) })
	return out
}

// chart is a series drawn for a page: an SVG polyline in a W x H box with
// the labels around it.
type chart struct {
	Name     string
	W, H     int
	Line     string // polyline points
	Area     string // polygon points: the line closed along the bottom
	LastX    string
	LastY    string
	Min, Max string
	Last     string
	From, To time.Time
	Count    int
	Flat     bool
}

// Chart box, in SVG user units.
const (
	chartW   = 320
	chartH   = 96
	chartPad = 4
)

// drawChart lays a series out in the chart box: time along x, value along
// y, scaled to the series' own range (a flat series draws mid-height).
func drawChart(s series) chart {
	c := chart{Name: s.name, W: chartW, H: chartH, Count: len(s.points)}
	if len(s.points) == 0 {
		return c
	}
	lo, hi := s.points[0].v, s.points[0].v
	for _, p := range s.points {
		lo, hi = math.Min(lo, p.v), math.Max(hi, p.v)
	}
	t0, t1 := s.points[0].t, s.points[len(s.points)-1].t
	c.From, c.To = t0, t1
	c.Min, c.Max, c.Last = formatReading(lo), formatReading(hi), formatReading(s.points[len(s.points)-1].v)
	c.Flat = hi == lo
	span := t1.Sub(t0).Seconds()
	x := func(i int, t time.Time) float64 {
		w := float64(chartW - 2*chartPad)
		if span <= 0 {
			if len(s.points) == 1 {
				return chartPad + w
			}
			return chartPad + w*float64(i)/float64(len(s.points)-1)
		}
		return chartPad + w*t.Sub(t0).Seconds()/span
	}
	y := func(v float64) float64 {
		h := float64(chartH - 2*chartPad)
		if hi == lo {
			return chartPad + h/2
		}
		return chartPad + h*(hi-v)/(hi-lo)
	}
	var line strings.Builder
	for i, p := range s.points {
		if i > 0 {
			line.WriteByte(' ')
		}
		line.WriteString(coord(x(i, p.t)) + "," + coord(y(p.v)))
	}
	c.Line = line.String()
	last := len(s.points) - 1
	c.LastX, c.LastY = coord(x(last, s.points[last].t)), coord(y(s.points[last].v))
	bottom := coord(chartH - chartPad)
	c.Area = coord(x(0, t0)) + "," + bottom + " " + c.Line + " " + c.LastX + "," + bottom
	return c
}

func coord(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) }

// formatReading shows a reading with the precision that matters.
func formatReading(v float64) string {
	a := math.Abs(v)
	switch {
	case a >= 1000:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}
