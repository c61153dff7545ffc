package anomaly

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

var seriesCases = []struct {
	name, in string
	want     int // points; -1: an error
}{
	{"header only", "timestamp,value\n", 0},
	{"two readings", "timestamp,value\n2014-04-01 00:00:00,1.5\n2014-04-01 00:05:00,-2\n", 2},
	{"blank lines and CRLF", "timestamp,value\r\n\r\n2014-04-01 00:00:00,1\r\n", 1},
	{"spaces around fields", "timestamp,value\n 2014-04-01 00:00:00 , 3e2 \n", 1},
	{"no comma", "timestamp,value\n2014-04-01 00:00:00\n", -1},
	{"bad time", "timestamp,value\n2014-04-01T00:00:00Z,1\n", -1},
	{"bad value", "timestamp,value\n2014-04-01 00:00:00,one\n", -1},
}

func TestReadSeries(t *testing.T) {
	for _, tc := range seriesCases {
		got, err := ReadSeries(strings.NewReader(tc.in))
		switch {
		case tc.want < 0 && err == nil:
			t.Errorf("%s: %v, want an error", tc.name, got)
		case tc.want >= 0 && (err != nil || len(got) != tc.want):
			t.Errorf("%s: %d points, %v; want %d", tc.name, len(got), err, tc.want)
		}
	}
	got, _ := ReadSeries(strings.NewReader(seriesCases[1].in))
	if want := (Point{time.Date(2014, 4, 1, 0, 5, 0, 0, time.UTC), -2}); got[1] != want {
		t.Errorf("second point %+v, want %+v", got[1], want)
	}
}

// FuzzReadSeries: no input panics, and what is read is written back and
// read again unchanged.
func FuzzReadSeries(f *testing.F) {
	for _, tc := range seriesCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		points, err := ReadSeries(strings.NewReader(in))
		if err != nil {
			return
		}
		var b strings.Builder
		b.WriteString("timestamp,value\n")
		for _, p := range points {
			fmt.Fprintf(&b, "%s,%s\n", p.At.Format(time.DateTime), strconv.FormatFloat(p.Value, 'g', -1, 64))
		}
		again, err := ReadSeries(strings.NewReader(b.String()))
		if err != nil || len(again) != len(points) {
			t.Fatalf("read back: %d points, %v; want %d", len(again), err, len(points))
		}
		for i := range points {
			same := again[i].Value == points[i].Value || (again[i].Value != again[i].Value && points[i].Value != points[i].Value)
			if !again[i].At.Equal(points[i].At) || !same {
				t.Fatalf("point %d: %+v, read back %+v", i, points[i], again[i])
			}
		}
	})
}
