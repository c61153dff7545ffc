package external

import (
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/weft-io/weft/anomaly"
)

// scoreGo is a tiny external model in Go: the distance of each value to
// 20, a tenth a unit.
const scoreGo = `package main

import (
	"bufio"
	"encoding/json"
	"math"
	"os"
)

func main() {
	in := bufio.NewScanner(os.Stdin)
	out := bufio.NewWriter(os.Stdout)
	enc := json.NewEncoder(out)
	for in.Scan() {
		var r struct {
			Seq   uint64  ` + "`json:\"seq\"`" + `
			Value float64 ` + "`json:\"value\"`" + `
		}
		if json.Unmarshal(in.Bytes(), &r) != nil {
			os.Exit(2)
		}
		enc.Encode(map[string]any{"seq": r.Seq, "score": math.Min(1, math.Abs(r.Value-20)/10)})
		out.Flush()
	}
}
`

// buildGo builds scoreGo and returns its source as an executable's bytes.
func buildGo(t testing.TB) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go toolchain")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(scoreGo), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module score\n\ngo 1.22\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(goBin, "build", "-o", "score", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-mod=mod")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(dir, "score"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A Go program built here speaks the protocol too.
func TestProcessGoProgram(t *testing.T) {
	p := launch(t, buildGo(t), "temp")
	for i, v := range []float64{20, 25, 45} {
		res, ok, fault := p.Score("d", t0.Add(time.Duration(i)*time.Minute), map[string]float64{"temp": v}, generous)
		if want := math.Min(1, math.Abs(v-20)/10); !ok || fault != "" || res.Score != want || res.Detected != (want >= 0.8) {
			t.Errorf("%g: %+v ok %v fault %q, want %g", v, res, ok, fault, want)
		}
	}
}

// BenchmarkExternal is the cost per reading of one channel scored by an
// external model over the line protocol — a Go program and the Python
// model of docs/models.md — beside a built-in anomaly.Channel, the cost a
// built-in channel model pays per reading.
//
//	go test ./models/external -run '^$' -bench External -benchmem -count 3
func BenchmarkExternal(b *testing.B) {
	value := func(i int) float64 { return 20 + 5*math.Sin(float64(i)/40) }
	for _, c := range []struct {
		name string
		src  func(b *testing.B) string
	}{
		{"go-program", func(b *testing.B) string { return buildGo(b) }},
		{"python", func(b *testing.B) string { needPython(b); return ScorePy }},
	} {
		b.Run(c.name, func(b *testing.B) {
			p := launch(b, c.src(b), "temp")
			vals := map[string]float64{"temp": 20}
			if _, _, fault := p.Score("d", t0, vals, generous); fault != "" {
				b.Fatal(fault)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				vals["temp"] = value(i)
				if _, _, fault := p.Score("d", t0.Add(time.Duration(i)*time.Minute), vals, generous); fault != "" {
					b.Fatal(fault)
				}
			}
		})
	}
	b.Run("baseline-builtin-channel", func(b *testing.B) {
		c := anomaly.NewChannel(anomaly.Config{})
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			c.Observe(t0.Add(time.Duration(i)*time.Minute), value(i))
		}
	})
}
