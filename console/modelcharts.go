package console

import (
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/weft-io/weft/api"
)

// This file draws the models page's charts: per class, agreement with
// the canary, latency, detections per hour and drift of each version over
// time, from api.Server.ModelSeries (the edges' per-minute summaries and
// status records), as inline SVG like the device page's telemetry.

// seriesWindows are the windows the models page offers (?window=).
var seriesWindows = []windowView{{"1h", time.Hour}, {"6h", 6 * time.Hour}, {"24h", 24 * time.Hour}, {"7d", 7 * 24 * time.Hour}}

// defaultWindow is the models page's window without ?window=.
const defaultWindow = "24h"

type windowView struct {
	Name string
	D    time.Duration
}

// windowOf returns the window named name (the default for any other).
func windowOf(name string) windowView {
	for _, w := range seriesWindows {
		if w.Name == name {
			return w
		}
	}
	return windowOf(defaultWindow)
}

// lineView is one series of a chart: a version's, or the canary's.
type lineView struct {
	Label string // name@version, or "canary"
	Stage string
	// Color is the line's palette entry (CSS class c0..c5); the canary
	// is drawn dashed and grey instead.
	Color  int
	Canary bool
	Points string // polyline points
	Count  int
	LastX  string
	LastY  string
	Last   string
}

// metricChart is one figure of a class over time, a line per version.
type metricChart struct {
	Metric, Title string
	W, H          int
	Lines         []lineView
	Min, Max      string
	// Mark is the y of the alarm threshold (drift), empty when none.
	Mark     string
	From, To time.Time
}

// metric is what a chart plots of a point.
type metric struct {
	name, title string
	value       func(api.SeriesPoint) (float64, bool)
	// floor says the axis starts at 0; mark is a threshold to draw.
	floor bool
	mark  float64
	pct   bool
}

func deref(p *float64) (float64, bool) {
	if p == nil {
		return 0, false
	}
	return *p, true
}

var metrics = []metric{
	{name: "agreement", title: "Agreement with canary", pct: true,
		value: func(p api.SeriesPoint) (float64, bool) { return deref(p.Agreement) }},
	{name: "latency", title: "Latency, µs", floor: true,
		value: func(p api.SeriesPoint) (float64, bool) { v, ok := deref(p.LatencyMS); return 1000 * v, ok }},
	{name: "detections", title: "Detections / h", floor: true,
		value: func(p api.SeriesPoint) (float64, bool) { return p.DetectionsPerHour, true }},
	{name: "drift", title: "Drift", floor: true, mark: driftAbove,
		value: func(p api.SeriesPoint) (float64, bool) { return deref(p.Drift) }},
}

// paletteSize is the number of line colours (console.css .c0 to .c5).
const paletteSize = 6

// namedSeries is a series with the label the charts give it.
type namedSeries struct {
	label string
	api.ModelSeries
}

// classSeries returns the series of a class's models (res, answered by
// api.Server.ModelSeriesOf) to chart: every version with records in the
// window, by model and version, and the class's canary once, last.
func classSeries(res []api.ModelSeriesResponse) []namedSeries {
	var out []namedSeries
	var canary *namedSeries
	for _, r := range res {
		for _, se := range r.Series {
			if se.Stage == api.StageCanary {
				if canary == nil {
					canary = &namedSeries{"canary", se}
				}
				continue
			}
			out = append(out, namedSeries{r.Name + "@" + strconv.FormatUint(se.Version, 10), se})
		}
	}
	if canary != nil {
		out = append(out, *canary)
	}
	return out
}

// drawMetrics lays the series out in one chart per metric over [from,
// to): time along x, the metric along y, scaled to its range over every
// line (from 0 for counts and times; the drift threshold always in view).
// A chart with no point has no lines.
func drawMetrics(series []namedSeries, from, to time.Time) []metricChart {
	out := make([]metricChart, 0, len(metrics))
	for _, m := range metrics {
		c := metricChart{Metric: m.name, Title: m.title, W: chartW, H: chartH, From: from, To: to}
		type pt struct {
			t time.Time
			v float64
		}
		var lines [][]pt
		lo, hi, seen := math.Inf(1), math.Inf(-1), false
		for _, se := range series {
			var ps []pt
			for _, p := range se.Points {
				v, ok := m.value(p)
				if !ok || math.IsNaN(v) || math.IsInf(v, 0) {
					continue
				}
				ps = append(ps, pt{p.T, v})
				lo, hi, seen = math.Min(lo, v), math.Max(hi, v), true
			}
			lines = append(lines, ps)
		}
		if !seen {
			out = append(out, c)
			continue
		}
		if m.floor {
			lo = math.Min(lo, 0)
		}
		if m.mark > 0 {
			hi = math.Max(hi, m.mark*1.2)
		}
		span := to.Sub(from).Seconds()
		w, h := float64(chartW-2*chartPad), float64(chartH-2*chartPad)
		x := func(t time.Time) float64 { return chartPad + w*math.Max(0, math.Min(1, t.Sub(from).Seconds()/span)) }
		y := func(v float64) float64 {
			if hi == lo {
				return chartPad + h/2
			}
			return chartPad + h*(hi-v)/(hi-lo)
		}
		format := formatReading
		if m.pct {
			format = func(v float64) string { return strconv.FormatFloat(100*v, 'f', 1, 64) + "%" }
		}
		c.Min, c.Max = format(lo), format(hi)
		if m.mark > 0 {
			c.Mark = coord(y(m.mark))
		}
		color := 0
		for i, se := range series {
			ps := lines[i]
			if len(ps) == 0 {
				continue
			}
			l := lineView{Label: se.label, Stage: se.Stage, Canary: se.Stage == api.StageCanary, Count: len(ps)}
			if !l.Canary {
				l.Color = color % paletteSize
				color++
			}
			var b strings.Builder
			for j, p := range ps {
				if j > 0 {
					b.WriteByte(' ')
				}
				b.WriteString(coord(x(p.t)) + "," + coord(y(p.v)))
			}
			l.Points = b.String()
			last := ps[len(ps)-1]
			l.LastX, l.LastY, l.Last = coord(x(last.t)), coord(y(last.v)), format(last.v)
			c.Lines = append(c.Lines, l)
		}
		out = append(out, c)
	}
	return out
}
