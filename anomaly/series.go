package anomaly

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Point is one reading of a series read by ReadSeries.
type Point struct {
	At    time.Time
	Value float64
}

// ReadSeries reads a series in the Numenta Anomaly Benchmark's CSV
// format: a header line, then one "timestamp,value" line per reading,
// the timestamp as "2006-01-02 15:04:05" (UTC). Blank lines are skipped.
func ReadSeries(r io.Reader) ([]Point, error) {
	var out []Point
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if line == 1 || text == "" {
			continue
		}
		ts, val, ok := strings.Cut(text, ",")
		if !ok {
			return nil, fmt.Errorf("anomaly: line %d: want timestamp,value", line)
		}
		at, err := time.Parse(time.DateTime, strings.TrimSpace(ts))
		if err != nil {
			return nil, fmt.Errorf("anomaly: line %d: %w", line, err)
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			return nil, fmt.Errorf("anomaly: line %d: %w", line, err)
		}
		out = append(out, Point{at, v})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("anomaly: line %d: %w", line+1, err)
	}
	return out, nil
}

// ScoreSeries runs a channel with cfg over the points, in order, and returns
// the result of each.
func ScoreSeries(cfg Config, points []Point) []Result {
	c := NewChannel(cfg)
	out := make([]Result, len(points))
	for i, p := range points {
		out[i] = c.Observe(p.At, p.Value)
	}
	return out
}
