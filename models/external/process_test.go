package external

import (
	"crypto/sha256"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/weft-io/weft/internal/testenv/wait"
	"github.com/weft-io/weft/models"
)

// ScorePy is the documented example of docs/models.md: a score from the
// distance to a running mean per device and channel.
const ScorePy = `#!/usr/bin/env python3
import json, sys

mean = {}
for line in sys.stdin:
    r = json.loads(line)
    key = (r["device"], r["channel"])
    m = mean.get(key, r["value"])
    score = min(1.0, abs(r["value"] - m) / 10.0)
    mean[key] = 0.9 * m + 0.1 * r["value"]
    out = {"seq": r["seq"], "score": score}
    if r["channel"] == "door":
        out["detected"] = r["value"] > 0
    print(json.dumps(out), flush=True)
`

// program writes an executable and returns the manifest and Exec of an
// external model running it over channels.
func program(t testing.TB, src string, channels ...string) (models.Manifest, models.Exec) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, models.ExecFile)
	if err := os.WriteFile(path, []byte(src), 0o700); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(src))
	m := models.Manifest{Name: "ext", Version: 1, Kind: models.KindExternal, Class: "thermo", Channels: channels,
		ExecSHA256: sum, ExecSize: int64(len(src))}
	return m, models.Exec{Path: path, SHA256: sum, Size: int64(len(src))}
}

func needPython(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("no python3")
	}
}

func launch(t testing.TB, src string, channels ...string) *Process {
	t.Helper()
	m, x := program(t, src, channels...)
	p := Launcher(Config{Backoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})(m, models.ExternalParams{}, x).(*Process)
	t.Cleanup(func() { p.Close() })
	return p
}

var t0 = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

// generous is a deadline no healthy program misses, even on a loaded
// machine.
const generous = 20 * time.Second

func TestProcessScores(t *testing.T) {
	needPython(t)
	p := launch(t, ScorePy, "temp", "door")
	for i, c := range []struct {
		values   map[string]float64
		score    float64
		detected bool
	}{
		{map[string]float64{"temp": 20}, 0, false},
		{map[string]float64{"temp": 25, "hum": 3}, 0.5, false},
		{map[string]float64{"temp": 60}, 1, true},             // 0.8 or more: a detection
		{map[string]float64{"door": 1}, 0, true},              // its own decision
		{map[string]float64{"door": 0, "temp": 24}, 0, false}, // temp's mean is 25.5 then
	} {
		res, ok, fault := p.Score("th-1", t0.Add(time.Duration(i)*time.Minute), c.values, generous)
		if !ok || fault != "" {
			t.Fatalf("reading %d: ok %v fault %q", i, ok, fault)
		}
		if i != 4 && (res.Score != c.score || res.Detected != c.detected) {
			t.Errorf("reading %d: %+v, want score %v detected %v", i, res, c.score, c.detected)
		}
	}
	if _, ok, _ := p.Score("th-1", t0, map[string]float64{"hum": 1}, generous); ok {
		t.Error("a reading of none of its channels was scored")
	}
	if p.Starts() != 1 {
		t.Errorf("%d starts", p.Starts())
	}
}

// TestProcessFaults: a program that answers late misses the deadline (its
// late answer is dropped), one that writes garbage or exits is counted
// and started again after the backoff; a tampered executable is never
// run.
func TestProcessFaults(t *testing.T) {
	needPython(t)
	t.Run("slow", func(t *testing.T) {
		p := launch(t, `#!/usr/bin/env python3
import json, sys, time
for line in sys.stdin:
    r = json.loads(line)
    if r["value"] > 100:
        time.sleep(2)
    print(json.dumps({"seq": r["seq"], "score": 0.25}), flush=True)
`, "temp")
		// The first answer after a start has StartGrace; later ones
		// their deadline.
		if _, _, fault := p.Score("d", t0, map[string]float64{"temp": 1}, 50*time.Millisecond); fault != "" {
			t.Fatalf("first answer: fault %q", fault)
		}
		if _, _, fault := p.Score("d", t0, map[string]float64{"temp": 1000}, 50*time.Millisecond); fault != models.FaultSlow {
			t.Fatalf("fault %q, want slow", fault)
		}
		// The late answer to the slow reading comes first: it is dropped.
		res, _, fault := p.Score("d", t0, map[string]float64{"temp": 1}, generous)
		if fault != "" || res.Score != 0.25 || p.Starts() != 1 {
			t.Fatalf("after a slow answer: %+v fault %q, %d starts", res, fault, p.Starts())
		}
	})
	for _, c := range []struct{ name, src, fault string }{
		{"garbage", "#!/bin/sh\nwhile read l; do echo 'not json'; done\n", models.FaultGarbage},
		{"out of range", "#!/bin/sh\nwhile read l; do echo '{\"seq\":1,\"score\":7}'; done\n", models.FaultGarbage},
		{"crash", "#!/bin/sh\nread l\nexit 3\n", models.FaultCrash},
		{"not executable", "not a program", models.FaultCrash},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := launch(t, c.src, "temp")
			if _, _, fault := p.Score("d", t0, map[string]float64{"temp": 1}, generous); fault != c.fault {
				t.Fatalf("fault %q, want %q", fault, c.fault)
			}
			if c.name == "not executable" {
				return
			}
			// Started again once the backoff passed (and failing again).
			wait.For(t, 10*time.Second, "a restart", func() bool {
				p.Score("d", t0, map[string]float64{"temp": 1}, generous)
				return p.Starts() >= 2
			})
		})
	}
	t.Run("tampered", func(t *testing.T) {
		marker := filepath.Join(t.TempDir(), "ran")
		m, x := program(t, "#!/bin/sh\necho '{\"seq\":1,\"score\":0}'\n", "temp")
		if err := os.WriteFile(x.Path, []byte("#!/bin/sh\ntouch "+marker+"\n"), 0o700); err != nil {
			t.Fatal(err)
		}
		p := Launcher(Config{})(m, models.ExternalParams{}, x).(*Process)
		defer p.Close()
		if _, _, fault := p.Score("d", t0, map[string]float64{"temp": 1}, generous); fault != models.FaultCrash {
			t.Fatalf("fault %q, want crash", fault)
		}
		if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) || p.Starts() != 0 {
			t.Fatalf("the tampered executable ran (%v, %d starts)", err, p.Starts())
		}
	})
}

// TestProcessClose: Close kills the program (and what it started).
func TestProcessClose(t *testing.T) {
	p := launch(t, "#!/bin/sh\nsleep 300 &\nwhile read l; do echo '{\"seq\":'$(echo $l | sed 's/.*\"seq\":\\([0-9]*\\).*/\\1/')',\"score\":0}'; done\n", "temp")
	if _, _, fault := p.Score("d", t0, map[string]float64{"temp": 1}, generous); fault != "" {
		t.Fatalf("fault %q", fault)
	}
	pid := p.cur.cmd.Process.Pid
	p.Close()
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("the program still runs after Close: %v", err)
	}
	// What it started goes too (a zombie until reaped counts as gone).
	wait.For(t, 10*time.Second, "the program's group to end", func() bool { return groupAlive(pid) == 0 })
	if _, _, fault := p.Score("d", t0, map[string]float64{"temp": 1}, generous); fault != models.FaultCrash || p.Starts() != 1 {
		t.Errorf("scored after Close: fault %q, %d starts", fault, p.Starts())
	}
}

// groupAlive counts the live (not zombie) processes of process group
// pgid.
func groupAlive(pgid int) int {
	dirs, _ := os.ReadDir("/proc")
	n := 0
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join("/proc", d.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 2 && f[0] != "Z" && f[2] == strconv.Itoa(pgid) {
			n++
		}
	}
	return n
}

// FuzzDecode: no line the program writes makes Decode panic or accept a
// score outside [0, 1].
func FuzzDecode(f *testing.F) {
	for _, s := range []string{`{"seq":1,"score":0.5}`, `{"seq":2,"score":1,"detected":true}`, `{"seq":0,"score":0}`,
		`{"seq":1,"score":-1}`, `{"seq":1}`, `not json`, `{"seq":1,"score":0.5,"x":[1,2]}`, `[]`, ``} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Decode(b)
		if err == nil && (r.Seq == 0 || r.Score < 0 || r.Score > 1) {
			t.Fatalf("accepted %q as %+v", b, r)
		}
		if err != nil && !errors.Is(err, ErrGarbage) {
			t.Fatalf("error %v not ErrGarbage", err)
		}
	})
}

func TestEncode(t *testing.T) {
	got := string(Encode(nil, Request{Seq: 3, Device: `d"1`, Channel: "temp", T: t0, Value: 20.5}))
	want := `{"seq":3,"device":"d\"1","channel":"temp","t":"2026-03-01T00:00:00Z","value":20.5}` + "\n"
	if got != want {
		t.Errorf("got %s want %s", got, want)
	}
}

// What the program writes to its standard error is logged, a line each.
func TestProcessStderr(t *testing.T) {
	var buf strings.Builder
	m, x := program(t, "#!/bin/sh\necho 'loading weights' >&2\nwhile read l; do echo 'oops' >&2; exit 1; done\n", "temp")
	p := Launcher(Config{Logger: slog.New(slog.NewTextHandler(&lockedWriter{w: &buf}, nil))})(m, models.ExternalParams{}, x).(*Process)
	if _, _, fault := p.Score("d", t0, map[string]float64{"temp": 1}, generous); fault != models.FaultCrash {
		t.Fatalf("fault %q", fault)
	}
	p.Close()
	if out := buf.String(); !strings.Contains(out, `line="loading weights"`) || !strings.Contains(out, "line=oops") || !strings.Contains(out, "external model stopped") {
		t.Errorf("log:\n%s", out)
	}
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// The Python model docs/models.md shows is the one these tests run.
func TestDocumentedExample(t *testing.T) {
	doc, err := os.ReadFile("../../docs/models.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), "```python\n"+ScorePy+"```\n") {
		t.Error("docs/models.md does not show ScorePy as its Python example")
	}
}

// An executable named by a relative path (an edge started with a
// relative data directory) runs in its own directory all the same.
func TestProcessRelativePath(t *testing.T) {
	m, x := program(t, "#!/bin/sh\nwhile read l; do echo '{\"seq\":1,\"score\":0.5}'; done\n", "temp")
	t.Chdir(filepath.Dir(filepath.Dir(x.Path)))
	x.Path = filepath.Join(filepath.Base(filepath.Dir(x.Path)), models.ExecFile)
	p := Launcher(Config{})(m, models.ExternalParams{}, x).(*Process)
	defer p.Close()
	if res, _, fault := p.Score("d", t0, map[string]float64{"temp": 1}, generous); fault != "" || res.Score != 0.5 {
		t.Fatalf("%+v fault %q", res, fault)
	}
}
