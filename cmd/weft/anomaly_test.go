package main

import (
	"bytes"
	"encoding/csv"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/weft-io/weft/anomaly"
)

// nabFile is one file of the shared NAB data set ($WEFT_DATASETS, or
// ../../../shared/datasets from this package), or a skip.
func nabFile(t *testing.T, name string) string {
	dir := os.Getenv("WEFT_DATASETS")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "shared", "datasets")
	}
	path := filepath.Join(dir, "nab", "data", name)
	if _, err := os.Stat(path); err != nil {
		t.Skipf("no NAB data set under %s (set WEFT_DATASETS): %v", dir, err)
	}
	return path
}

// TestAnomalyScoreMatchesNAB runs weft anomaly score over a NAB file and
// compares its detections with those TestNAB scores for the file (a
// fresh channel with the default Config over the file's readings).
func TestAnomalyScoreMatchesNAB(t *testing.T) {
	path := nabFile(t, "realAWSCloudwatch/ec2_cpu_utilization_825cc2.csv")
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"anomaly", "score", path})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&out).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) == 0 || !slices.Equal(rows[0], []string{"timestamp", "value", "score", "detection"}) {
		t.Fatalf("header %v", rows[:min(1, len(rows))])
	}
	var got []string
	for _, r := range rows[1:] {
		if r[3] == "1" {
			got = append(got, r[0])
		}
	}

	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	points, err := anomaly.ReadSeries(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows)-1 != len(points) {
		t.Fatalf("%d rows for %d readings", len(rows)-1, len(points))
	}
	var want []string
	for i, res := range anomaly.ScoreSeries(anomaly.Config{}, points) {
		if res.Detected {
			want = append(want, points[i].At.Format(time.DateTime))
		}
	}
	if len(want) == 0 || !slices.Equal(got, want) {
		t.Fatalf("detections at %v, want %v", got, want)
	}
}
