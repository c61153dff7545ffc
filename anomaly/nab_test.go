package anomaly

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// The Numenta Anomaly Benchmark's standard profile: a detection early in a
// labelled window earns up to 1, a missed window costs 1, a detection
// outside every window up to 0.11. The first 15% of a file (at most 750
// rows) is probation: nothing counts there.
const (
	nabTP        = 1.0
	nabFP        = 0.11
	nabFN        = 1.0
	nabProbation = 0.15
)

// datasets is the directory of the shared data sets: $WEFT_DATASETS, or
// ../../shared/datasets from this package.
func datasets(t testing.TB) string {
	dir := os.Getenv("WEFT_DATASETS")
	if dir == "" {
		dir = filepath.Join("..", "..", "shared", "datasets")
	}
	if _, err := os.Stat(filepath.Join(dir, "nab", "labels", "combined_windows.json")); err != nil {
		t.Skipf("no NAB data set under %s (set WEFT_DATASETS): %v", dir, err)
	}
	return dir
}

type reading struct {
	t time.Time
	v float64
}

func readNAB(t testing.TB, path string) []reading {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	points, err := ReadSeries(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	out := make([]reading, len(points))
	for i, p := range points {
		out[i] = reading{p.At, p.Value}
	}
	return out
}

// scaledSigmoid is NAB's weight of a detection at relative position y to
// a window's end (-1 at its start, 0 at its end, positive after it).
func scaledSigmoid(y float64) float64 {
	if y > 3 {
		return -1
	}
	return 2/(1+math.Exp(5*y)) - 1
}

// nabFile is one file's outcome.
type nabFile struct {
	name                        string
	windows, tp, fp, detections int
	raw, null, perfect          float64
}

// scoreNAB scores the detections (row indexes) of a file with windows.
func scoreNAB(rows []reading, windows [][2]time.Time, detections []int) nabFile {
	var r nabFile
	r.windows = len(windows)
	r.null = -nabFN * float64(len(windows))
	r.perfect = nabTP * scaledSigmoid(-1) * float64(len(windows))
	probation := min(int(nabProbation*float64(len(rows))), int(nabProbation*5000))
	hit := make([]bool, len(windows))
	for _, i := range detections {
		if i < probation {
			continue
		}
		r.detections++
		ts := rows[i].t
		in, prev := -1, -1
		for w, win := range windows {
			if !ts.Before(win[0]) && !ts.After(win[1]) {
				in = w
			}
			if win[1].Before(ts) {
				prev = w
			}
		}
		switch {
		case in >= 0:
			if !hit[in] {
				hit[in] = true
				r.tp++
				win := windows[in]
				y := ts.Sub(win[1]).Seconds() / win[1].Sub(win[0]).Seconds()
				r.raw += nabTP * scaledSigmoid(y)
			}
		case prev >= 0:
			r.fp++
			win := windows[prev]
			y := ts.Sub(win[1]).Seconds() / win[1].Sub(win[0]).Seconds()
			r.raw += nabFP * scaledSigmoid(y)
		default:
			r.fp++
			r.raw -= nabFP
		}
	}
	for _, h := range hit {
		if !h {
			r.raw -= nabFN
		}
	}
	return r
}

// runNAB runs a fresh channel over every file of the data set and returns
// the outcome per file.
func runNAB(t testing.TB, cfg Config) []nabFile {
	dir := filepath.Join(datasets(t), "nab")
	b, err := os.ReadFile(filepath.Join(dir, "labels", "combined_windows.json"))
	if err != nil {
		t.Fatal(err)
	}
	var labels map[string][][2]string
	if err := json.Unmarshal(b, &labels); err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(labels))
	for name := range labels {
		names = append(names, name)
	}
	slices.Sort(names)
	var out []nabFile
	for _, name := range names {
		var windows [][2]time.Time
		for _, w := range labels[name] {
			var win [2]time.Time
			for i, s := range w {
				if win[i], err = time.Parse("2006-01-02 15:04:05.000000", s); err != nil {
					t.Fatalf("%s window %v: %v", name, w, err)
				}
			}
			windows = append(windows, win)
		}
		rows := readNAB(t, filepath.Join(dir, "data", name))
		detections := nabDetections(cfg, rows)
		f := scoreNAB(rows, windows, detections)
		f.name = name
		out = append(out, f)
	}
	return out
}

// nabDetections are the rows of the readings a fresh channel detects, as
// `weft anomaly score` reports them.
func nabDetections(cfg Config, rows []reading) []int {
	points := make([]Point, len(rows))
	for i, r := range rows {
		points[i] = Point{r.t, r.v}
	}
	var out []int
	for i, res := range ScoreSeries(cfg, points) {
		if res.Detected {
			out = append(out, i)
		}
	}
	return out
}

// nabScore is NAB's normalized score over the files: 0 is the detector
// that never detects, 100 the perfect one.
func nabScore(files []nabFile) float64 {
	var raw, null, perfect float64
	for _, f := range files {
		raw, null, perfect = raw+f.raw, null+f.null, perfect+f.perfect
	}
	return 100 * (raw - null) / (perfect - null)
}

// nabFloor is the NAB score the defaults reach (69.2), less a small
// margin: less is a regression.
const nabFloor = 68

// TestNAB runs the detectors with their defaults over the NAB files of
// the shared data set: together they must score at least nabFloor, and a
// file without anomalies may see at most one false alarm.
func TestNAB(t *testing.T) {
	files := runNAB(t, Config{})
	var windows, hits, falses, clean int
	for _, f := range files {
		windows, hits, falses = windows+f.windows, hits+f.tp, falses+f.fp
		if f.windows == 0 {
			clean += f.fp
		}
		t.Logf("%-60s windows %d  detections %3d  hits %d  false %3d  raw %6.2f", f.name, f.windows, f.detections, f.tp, f.fp, f.raw)
		if f.windows == 0 && f.fp > 1 {
			t.Errorf("%s has no anomaly, yet %d detections", f.name, f.fp)
		}
	}
	score := nabScore(files)
	t.Logf("NAB score (standard profile) %.1f: %d of %d windows detected, %d false alarms (%d on the files without anomalies)", score, hits, windows, falses, clean)
	// The halves (files in name order, even and odd places): a change
	// chosen on one half should hold on the other.
	var halves [2][]nabFile
	for i, f := range files {
		halves[i%2] = append(halves[i%2], f)
	}
	t.Logf("NAB score on the even-numbered files %.1f, on the odd-numbered %.1f", nabScore(halves[0]), nabScore(halves[1]))
	if score <= 0 {
		t.Errorf("NAB score %.1f: no better than never detecting", score)
	}
	if score < nabFloor {
		t.Errorf("NAB score %.1f, below the %d the defaults reached", score, nabFloor)
	}
}

func TestScoreNAB(t *testing.T) {
	day := func(d int) time.Time { return time.Date(2026, 1, d, 0, 0, 0, 0, time.UTC) }
	var rows []reading
	for d := 1; d <= 30; d++ {
		rows = append(rows, reading{t: day(d)})
	}
	windows := [][2]time.Time{{day(20), day(24)}}
	// Early in the window: nearly 1; a second detection there adds nothing.
	if f := scoreNAB(rows, windows, []int{19, 21}); f.tp != 1 || f.fp != 0 || math.Abs(f.raw-scaledSigmoid(-1)) > 1e-9 {
		t.Errorf("early hit: %+v", f)
	}
	// A miss costs 1; a detection in probation counts for nothing.
	if f := scoreNAB(rows, windows, []int{1}); f.raw != -1 || f.detections != 0 {
		t.Errorf("miss: %+v", f)
	}
	// A false alarm before any window costs 0.11.
	if f := scoreNAB(rows, windows, []int{10, 19}); f.fp != 1 || math.Abs(f.raw-(scaledSigmoid(-1)-nabFP)) > 1e-9 {
		t.Errorf("false alarm: %+v", f)
	}
	if got := nabScore([]nabFile{{raw: -1, null: -1, perfect: scaledSigmoid(-1)}}); got != 0 {
		t.Errorf("a miss scores %.1f, want 0", got)
	}
	_ = fmt.Sprint
}
