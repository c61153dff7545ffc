package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/weft-io/weft/store"
)

// weftBin is the binary built once for the tests that run it.
var weftBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "weft-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	weftBin = filepath.Join(dir, "weft")
	if out, err := exec.Command("go", "build", "-o", weftBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// step is one run of the binary. In args, stdin and the expectations,
// $DIR stands for the scenario's scratch directory; the store is in
// $DIR/data.
type step struct {
	args    []string
	stdin   string
	noData  bool // pass no --data and no WEFT_DATA
	dataEnv bool // pass the data directory as WEFT_DATA instead of --data
	fail    bool // the command must exit non-zero
	stdout  *string
	stderr  string // stderr must contain this
	check   func(t *testing.T, dir, stdout string)
}

func exactly(s string) *string { return &s }

func (s step) run(t *testing.T, dir string) {
	t.Helper()
	args := make([]string, len(s.args))
	for i, a := range s.args {
		args[i] = strings.ReplaceAll(a, "$DIR", dir)
	}
	data := filepath.Join(dir, "data")
	if !s.noData && !s.dataEnv {
		args = append(args, "--data", data)
	}
	cmd := exec.Command(weftBin, args...)
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, dataEnv+"=") {
			cmd.Env = append(cmd.Env, e)
		}
	}
	if s.dataEnv {
		cmd.Env = append(cmd.Env, dataEnv+"="+data)
	}
	cmd.Stdin = strings.NewReader(s.stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatalf("weft %s: %v", strings.Join(s.args, " "), err)
	}
	name := "weft " + strings.Join(s.args, " ")
	switch {
	case s.fail && err == nil:
		t.Fatalf("%s: succeeded, want failure; stdout:\n%s", name, stdout.String())
	case !s.fail && err != nil:
		t.Fatalf("%s: %v; stderr:\n%s", name, err, stderr.String())
	case s.fail && stderr.Len() == 0:
		t.Fatalf("%s: failed without a message on stderr", name)
	}
	if s.stdout != nil {
		if want := strings.ReplaceAll(*s.stdout, "$DIR", dir); stdout.String() != want {
			t.Fatalf("%s: stdout\n%q\nwant\n%q", name, stdout.String(), want)
		}
	}
	if s.stderr != "" && !strings.Contains(stderr.String(), s.stderr) {
		t.Fatalf("%s: stderr %q, want it to contain %q", name, stderr.String(), s.stderr)
	}
	if s.check != nil {
		s.check(t, dir, stdout.String())
	}
}

// decode unmarshals JSON text into a value of type T.
func decode[T any](t *testing.T, text string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(text), &v); err != nil {
		t.Fatalf("decode %q: %v", text, err)
	}
	return v
}

// jsonLines decodes one JSON object per line.
func jsonLines(t *testing.T, text string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		out = append(out, decode[map[string]any](t, sc.Text()))
	}
	return out
}

// wantDoc checks a printed document's version and content.
func wantDoc(version uint64, doc string) func(t *testing.T, dir, stdout string) {
	return func(t *testing.T, _, stdout string) {
		t.Helper()
		d := decode[store.Doc](t, stdout)
		if d.Version != version {
			t.Errorf("version %d, want %d", d.Version, version)
		}
		if !jsonEqual(t, string(d.Value), doc) {
			t.Errorf("doc %s, want %s", d.Value, doc)
		}
		if d.Updated.IsZero() {
			t.Errorf("no update time in %s", stdout)
		}
	}
}

func jsonEqual(t *testing.T, a, b string) bool {
	return reflect.DeepEqual(decode[any](t, a), decode[any](t, b))
}

func writeRandom(t *testing.T, path string, n int) {
	b := make([]byte, n)
	rand.Read(b)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func sameFile(a, b string) func(t *testing.T, dir, stdout string) {
	return func(t *testing.T, dir, _ string) {
		x, err := os.ReadFile(filepath.Join(dir, a))
		if err != nil {
			t.Fatal(err)
		}
		y, err := os.ReadFile(filepath.Join(dir, b))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(x, y) {
			t.Fatalf("%s (%d bytes) and %s (%d bytes) differ", a, len(x), b, len(y))
		}
	}
}

func TestCommands(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string) // before the steps, with the store closed
		steps []step
	}{
		{
			name: "volume create, set and ls",
			steps: []step{
				{args: []string{"volume", "create", "sensors", "--ttl", "72h", "--quota", "10GiB"}, stdout: exactly("")},
				{args: []string{"volume", "ls", "-o", "json"}, check: func(t *testing.T, _, stdout string) {
					for _, v := range decode[[]store.VolumeInfo](t, stdout) {
						if v.Name == "sensors" {
							if v.TTL != 72*time.Hour || v.Quota != 10<<30 {
								t.Fatalf("sensors has ttl %v quota %d, want 72h and 10GiB", v.TTL, v.Quota)
							}
							return
						}
					}
					t.Fatalf("no volume sensors in %s", stdout)
				}},
				{args: []string{"volume", "set", "sensors", "--quota", "512MiB"}, dataEnv: true},
				{args: []string{"volume", "ls"}, check: func(t *testing.T, _, stdout string) {
					if !strings.Contains(strings.Join(strings.Fields(stdout), " "), "sensors 72h 512 MiB 0 B") {
						t.Fatalf("volume ls:\n%s", stdout)
					}
				}},
				{args: []string{"ls", "-o", "json"}, check: func(t *testing.T, _, stdout string) {
					infos := decode[[]store.Info](t, stdout)
					if len(infos) != len(store.WellKnownVolumes)+1 {
						t.Fatalf("ls / lists %d volumes: %s", len(infos), stdout)
					}
				}},
				{args: []string{"volume", "set", "/sensors", "--drop-oldest"}},
				{args: []string{"volume", "ls"}, check: func(t *testing.T, _, stdout string) {
					if !strings.Contains(strings.Join(strings.Fields(stdout), " "), "sensors 72h 512 MiB (drop oldest) 0 B") {
						t.Fatalf("volume ls:\n%s", stdout)
					}
				}},
				{args: []string{"volume", "set", "nosuch", "--ttl", "1h"}, fail: true, stderr: "not found"},
				{args: []string{"volume", "create", "sensors"}, fail: true, stderr: "already exists"},
				{args: []string{"volume", "set", "sensors"}, fail: true, stderr: "nothing to change"},
			},
		},
		{
			name: "a volume that drops its oldest data",
			steps: []step{
				{args: []string{"volume", "create", "backlog", "--quota", "16KiB"}},
				{args: []string{"volume", "set", "backlog", "--drop-oldest"}},
				{args: []string{"stream", "create", "/backlog/raw", "--priority", "0"}},
				{args: []string{"stream", "create", "/backlog/alarms", "--priority", "5"}},
				{args: []string{"stream", "append", "/backlog/alarms", "--topic", "e1"}, stdin: "overheat\n"},
				{args: []string{"stream", "append", "/backlog/raw", "--topic", "e1"}, stdin: strings.Repeat(strings.Repeat("r", 99)+"\n", 100)},
				{args: []string{"stream", "append", "/backlog/raw", "--topic", "e1"}, stdin: strings.Repeat(strings.Repeat("r", 99)+"\n", 100)},
				{args: []string{"volume", "ls"}, check: func(t *testing.T, _, stdout string) {
					if !strings.Contains(strings.Join(strings.Fields(stdout), " "), "backlog - 16 KiB (drop oldest)") {
						t.Fatalf("volume ls:\n%s", stdout)
					}
				}},
				{args: []string{"ls", "/backlog", "-o", "json"}, check: func(t *testing.T, _, stdout string) {
					for _, in := range decode[[]store.Info](t, stdout) {
						switch {
						case in.Path == "/backlog/raw" && in.Dropped == 0:
							t.Errorf("raw dropped nothing: %+v", in)
						case in.Path == "/backlog/alarms" && (in.Dropped != 0 || in.Priority != 5):
							t.Errorf("alarms: %+v", in)
						}
					}
				}},
				{args: []string{"ls", "/backlog"}, check: func(t *testing.T, _, stdout string) {
					if !strings.Contains(stdout, "dropped") {
						t.Fatalf("ls does not show the drop:\n%s", stdout)
					}
				}},
				{args: []string{"stream", "read", "/backlog/alarms", "--topic", "e1"}, stdout: exactly("0\t-\toverheat\n")},
			},
		},
		{
			name: "stream append and read",
			steps: []step{
				{args: []string{"stream", "create", "/telemetry/vib", "--partitions", "1", "--ttl", "1h", "--max-bytes", "1MiB"}},
				{args: []string{"stream", "append", "/telemetry/vib", "--topic", "dev1", "--key", "dev1", "--header", "unit=mm"},
					stdin: "a\r\nb\n\xff\xfe\n", stdout: exactly("0 0\n0 1\n0 2\n")},
				{args: []string{"stream", "append", "/telemetry/vib", "--topic", "dev1", "-o", "json"},
					stdin: "last", stdout: exactly(`{"partition":0,"offset":3}` + "\n")},
				{args: []string{"stream", "read", "/telemetry/vib", "--topic", "dev1", "--from", "0", "--limit", "10", "-o", "json"},
					check: func(t *testing.T, _, stdout string) {
						msgs := jsonLines(t, stdout)
						if len(msgs) != 4 {
							t.Fatalf("read %d messages, want 4:\n%s", len(msgs), stdout)
						}
						for i, m := range msgs {
							if m["offset"] != float64(i) || m["partition"] != float64(0) {
								t.Errorf("message %d at offset %v partition %v", i, m["offset"], m["partition"])
							}
							ts, _ := m["timestamp"].(string)
							if _, err := time.Parse(time.RFC3339Nano, ts); err != nil || len(ts) != len("2006-01-02T15:04:05.000000000Z") {
								t.Errorf("message %d timestamp %q", i, ts)
							}
						}
						for i, want := range []string{"a", "b"} {
							if msgs[i]["value"] != want || msgs[i]["key"] != "dev1" {
								t.Errorf("message %d: %v", i, msgs[i])
							}
							if !reflect.DeepEqual(msgs[i]["headers"], map[string]any{"unit": "mm"}) {
								t.Errorf("message %d headers %v", i, msgs[i]["headers"])
							}
						}
						if msgs[2]["value_b64"] != "//4=" || msgs[2]["value"] != nil {
							t.Errorf("non-UTF-8 value came back as %v", msgs[2])
						}
						if msgs[3]["key"] != nil || msgs[3]["value"] != "last" {
							t.Errorf("keyless message came back as %v", msgs[3])
						}
					}},
				{args: []string{"stream", "read", "/telemetry/vib", "--topic", "dev1", "--from", "1", "--limit", "2"},
					stdout: exactly("1\tdev1\tb\n2\tdev1\t\"\\xff\\xfe\"\n")},
				{args: []string{"stream", "read", "/telemetry/vib", "--topic", "dev1", "--from", "4"}, stdout: exactly("")},
				{args: []string{"stream", "read", "/telemetry/vib", "--topic", "dev1", "--partition", "1"},
					fail: true, stderr: "no such partition"},
				{args: []string{"stream", "append", "/telemetry/vib", "--topic", "dev1", "--partition", "3"},
					stdin: "x\n", fail: true, stderr: "no such partition"},
				{args: []string{"ls", "/telemetry", "-o", "json"}, check: func(t *testing.T, _, stdout string) {
					for _, in := range decode[[]store.Info](t, stdout) {
						if in.Path == "/telemetry/vib" {
							if in.Kind != store.KindStream || in.TTL != time.Hour || in.MaxBytes != 1<<20 {
								t.Fatalf("ls shows %+v", in)
							}
							return
						}
					}
					t.Fatalf("ls /telemetry misses the stream: %s", stdout)
				}},
			},
		},
		{
			name: "topics paging",
			steps: []step{
				{args: []string{"stream", "create", "/uplink/s"}},
				{args: []string{"stream", "append", "/uplink/s", "--topic", "a1"}, stdin: "x\n"},
				{args: []string{"stream", "append", "/uplink/s", "--topic", "a2"}, stdin: "x\n"},
				{args: []string{"stream", "append", "/uplink/s", "--topic", "a3"}, stdin: "x\n"},
				{args: []string{"stream", "append", "/uplink/s", "--topic", "b1"}, stdin: "x\n"},
				{args: []string{"stream", "topics", "/uplink/s", "--limit", "2", "-o", "json"},
					stdout: exactly(`{"topics":["a1","a2"],"next":"a2"}` + "\n")},
				{args: []string{"stream", "topics", "/uplink/s", "--limit", "2", "--after", "a2", "-o", "json"},
					stdout: exactly(`{"topics":["a3","b1"]}` + "\n")},
				{args: []string{"stream", "topics", "/uplink/s", "--prefix", "a"}, stdout: exactly("a1\na2\na3\n")},
				{args: []string{"stream", "topics", "/uplink/s", "--prefix", "a", "--limit", "1", "--after", "a1"},
					stdout: exactly("a2\n"), stderr: `--after "a2"`},
				{args: []string{"stream", "topics", "/uplink/s", "--prefix", "c", "-o", "json"}, stdout: exactly(`{"topics":[]}` + "\n")},
			},
		},
		{
			name: "table documents and versions",
			steps: []step{
				{args: []string{"table", "create", "/shadows/gw", "--change-stream", "/shadows/gw_changes"}},
				{args: []string{"table", "put", "/shadows/gw", "k1", `{"a":1,"b":{"c":2}}`}, check: wantDoc(1, `{"a":1,"b":{"c":2}}`)},
				{args: []string{"table", "patch", "/shadows/gw", "k1", `{"a":null,"b":{"d":3}}`}, check: wantDoc(2, `{"b":{"c":2,"d":3}}`)},
				{args: []string{"table", "put", "/shadows/gw", "k1", "--if-version", "1", `{}`}, fail: true, stderr: "version mismatch"},
				{args: []string{"table", "put", "/shadows/gw", "k1", "--if-version", "2"}, stdin: `{"e":5}`, check: wantDoc(3, `{"e":5}`)},
				{args: []string{"table", "get", "/shadows/gw", "k1"}, check: wantDoc(3, `{"e":5}`)},
				{args: []string{"table", "put", "/shadows/gw", "k2", "--if-version", "0", `[1,2]`}, check: wantDoc(1, `[1,2]`)},
				{args: []string{"table", "put", "/shadows/gw", "k2", "--if-version", "0", `{}`}, fail: true, stderr: "version mismatch"},
				{args: []string{"table", "put", "/shadows/gw", "k3", `{"a":`}, fail: true,
					stderr: "weft: the document (argument 3) is not valid JSON: at line 1, column 6, the JSON ends before it is complete"},
				{args: []string{"table", "put", "/shadows/gw", "k3", `{bad}`}, fail: true,
					stderr: "weft: the document (argument 3) is not valid JSON: at line 1, column 2, found 'b' where a member name in double quotes should start"},
				{args: []string{"table", "patch", "/shadows/gw", "k3"}, stdin: "{\n  \"a\": 1\n  \"b\": 2\n}\n", fail: true,
					stderr: "weft: the merge patch on stdin is not valid JSON: at line 3, column 3, found '\"' after a member, where ',' or '}' should be\n    \"b\": 2\n    ^"},
				{args: []string{"table", "patch", "/shadows/gw", "k3"}, stdin: "", fail: true, stderr: "weft: the merge patch on stdin is empty, not JSON"},
				{args: []string{"table", "get", "/shadows/gw", "k3"}, fail: true, stderr: "not found"},
				{args: []string{"table", "scan", "/shadows/gw", "--limit", "1", "-o", "json"}, check: func(t *testing.T, _, stdout string) {
					page := decode[struct {
						Docs []store.Doc
						Next string
					}](t, stdout)
					if len(page.Docs) != 1 || page.Docs[0].Key != "k1" || page.Next != "k1" {
						t.Fatalf("first page %s", stdout)
					}
				}},
				{args: []string{"table", "scan", "/shadows/gw", "--after", "k1", "-o", "json"}, check: func(t *testing.T, _, stdout string) {
					page := decode[map[string]json.RawMessage](t, stdout)
					if _, ok := page["next"]; ok || !strings.Contains(string(page["docs"]), `"key":"k2"`) {
						t.Fatalf("last page %s", stdout)
					}
				}},
				{args: []string{"table", "delete", "/shadows/gw", "k1", "--if-version", "2"}, fail: true, stderr: "version mismatch"},
				{args: []string{"table", "delete", "/shadows/gw", "k1", "--if-version", "3"}, stdout: exactly("")},
				{args: []string{"table", "get", "/shadows/gw", "k1"}, fail: true, stderr: "not found"},
				{args: []string{"table", "delete", "/shadows/gw", "k1"}, fail: true, stderr: "not found"},
				{args: []string{"stream", "read", "/shadows/gw_changes", "--topic", "local", "-o", "json"}, check: func(t *testing.T, _, stdout string) {
					if n := len(jsonLines(t, stdout)); n != 5 {
						t.Fatalf("%d change records, want 5:\n%s", n, stdout)
					}
				}},
			},
		},
		{
			name: "fs put and get",
			setup: func(t *testing.T, dir string) {
				writeRandom(t, filepath.Join(dir, "in"), 1<<20)
				writeRandom(t, filepath.Join(dir, "small"), 1000)
			},
			steps: []step{
				{args: []string{"fs", "put", "$DIR/in", "/models/vision/v1.onnx", "-o", "json"}, check: func(t *testing.T, dir, stdout string) {
					info := decode[store.Info](t, stdout)
					if info.Size != 1<<20 || info.Kind != store.KindFile || len(info.SHA256) != 64 {
						t.Fatalf("fs put gave %s", stdout)
					}
				}},
				{args: []string{"fs", "get", "/models/vision/v1.onnx", "$DIR/out"}, check: sameFile("in", "out")},
				{args: []string{"ls", "/models/vision"}, check: func(t *testing.T, _, stdout string) {
					if !strings.Contains(stdout, "/models/vision/v1.onnx") || !strings.Contains(stdout, "1 MiB") {
						t.Fatalf("ls:\n%s", stdout)
					}
				}},
				{args: []string{"fs", "put", "-", "/models/vision/v1.onnx"}, stdin: "replaced\n"},
				{args: []string{"fs", "get", "/models/vision/v1.onnx", "-"}, stdout: exactly("replaced\n")},
				{args: []string{"fs", "get", "/models/none", "$DIR/none"}, fail: true, stderr: "not found", check: func(t *testing.T, dir, _ string) {
					if _, err := os.Stat(filepath.Join(dir, "none")); !os.IsNotExist(err) {
						t.Fatalf("failed get left a local file: %v", err)
					}
				}},
				{args: []string{"rm", "/models/vision/v1.onnx"}},
				{args: []string{"ls", "/models", "-o", "json"}, stdout: exactly("[]\n")},
				{args: []string{"fs", "put", "$DIR/missing", "/models/x"}, fail: true, stderr: "missing"},
			},
		},
		{
			name: "snapshots",
			steps: []step{
				{args: []string{"table", "create", "/shadows/cfg"}},
				{args: []string{"fs", "put", "-", "/shadows/notes"}, stdin: "old"},
				{args: []string{"table", "put", "/shadows/cfg", "k", `{"v":1}`}},
				{args: []string{"snapshot", "create", "shadows", "before", "-o", "json"}, check: func(t *testing.T, _, stdout string) {
					if sn := decode[store.Snapshot](t, stdout); sn.Name != "before" || sn.Volume != "shadows" {
						t.Fatalf("snapshot create printed %s", stdout)
					}
				}},
				{args: []string{"table", "put", "/shadows/cfg", "k", `{"v":2}`}, check: wantDoc(2, `{"v":2}`)},
				{args: []string{"fs", "put", "-", "/shadows/notes"}, stdin: "new"},
				{args: []string{"table", "get", "--snapshot", "before", "/shadows/cfg", "k"}, check: wantDoc(1, `{"v":1}`)},
				{args: []string{"table", "get", "/shadows/cfg", "k"}, check: wantDoc(2, `{"v":2}`)},
				{args: []string{"fs", "get", "--snapshot", "before", "/shadows/notes", "-"}, stdout: exactly("old")},
				{args: []string{"table", "scan", "--snapshot", "before", "/shadows/cfg", "-o", "json"}, check: func(t *testing.T, _, stdout string) {
					if !strings.Contains(stdout, `"doc":{"v":1}`) {
						t.Fatalf("scan of snapshot: %s", stdout)
					}
				}},
				{args: []string{"table", "put", "--snapshot", "before", "/shadows/cfg", "k", `{}`}, fail: true, stderr: "unknown flag"},
				{args: []string{"snapshot", "ls", "/shadows", "-o", "json"}, check: func(t *testing.T, _, stdout string) {
					if snaps := decode[[]store.Snapshot](t, stdout); len(snaps) != 1 || snaps[0].Name != "before" {
						t.Fatalf("snapshot ls: %s", stdout)
					}
				}},
				{args: []string{"snapshot", "create", "shadows", "before"}, fail: true, stderr: "already exists"},
				{args: []string{"snapshot", "delete", "shadows", "before"}},
				{args: []string{"snapshot", "ls", "shadows", "-o", "json"}, stdout: exactly("[]\n")},
				{args: []string{"table", "get", "--snapshot", "before", "/shadows/cfg", "k"}, fail: true, stderr: "snapshot before of /shadows"},
			},
		},
		{
			name: "errors",
			setup: func(t *testing.T, dir string) {
				// Trim a stream so that its low-water mark moves past 0.
				s, err := store.Open(store.Config{Dir: filepath.Join(dir, "data"), MinFreeBytes: -1, RetentionInterval: -1})
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				ctx := context.Background()
				if err := s.CreateStream(ctx, "/metrics/capped", store.StreamOptions{MaxBytes: 3000}); err != nil {
					t.Fatal(err)
				}
				for range 10 {
					if _, err := s.Stream("/metrics/capped").Append(ctx, "t", store.Message{Value: bytes.Repeat([]byte("x"), 500)}); err != nil {
						t.Fatal(err)
					}
				}
				if err := s.EnforceRetention(ctx); err != nil {
					t.Fatal(err)
				}
			},
			steps: []step{
				{args: []string{"ls"}, noData: true, fail: true, stderr: "no data directory"},
				{args: []string{"volume", "ls"}, dataEnv: true, check: func(t *testing.T, _, stdout string) {
					if !strings.Contains(stdout, "telemetry") {
						t.Fatalf("volume ls with WEFT_DATA:\n%s", stdout)
					}
				}},
				{args: []string{"stream", "create", "telemetry/x"}, fail: true, stderr: "bad path"},
				{args: []string{"ls", "/nosuchvolume"}, fail: true, stderr: "not found"},
				{args: []string{"stream", "read", "/metrics/capped", "--topic", "t", "--from", "0"}, fail: true, stderr: "low-water mark"},
				{args: []string{"stream", "read", "/metrics/capped", "--topic", "t", "--from", "9"}, stdout: exactly("9\t-\t" + strings.Repeat("x", 500) + "\n")},
				{args: []string{"stream", "read", "/shadows/devices", "--topic", "t"}, fail: true, stderr: "is a table, not a stream"},
				{args: []string{"stream", "read", "/metrics/capped"}, fail: true, stderr: `"topic" not set`},
				{args: []string{"volume", "create", "small", "--quota", "1KB"}},
				{args: []string{"stream", "create", "/small/s"}},
				{args: []string{"stream", "append", "/small/s", "--topic", "t"}, stdin: strings.Repeat("y", 2000) + "\n", fail: true, stderr: "quota exceeded"},
				{args: []string{"stream", "read", "/small/s", "--topic", "t"}, stdout: exactly("")},
				{args: []string{"volume", "create", "big", "--quota", "10XB"}, fail: true, stderr: "unknown unit"},
				{args: []string{"volume", "ls", "-o", "yaml"}, fail: true, stderr: "want text or json"},
				{args: []string{"rm", "/telemetry/events"}, fail: true, stderr: "well-known"},
				{args: []string{"rm", "/telemetry"}, fail: true, stderr: "is a volume"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			if tt.setup != nil {
				tt.setup(t, dir)
			}
			for _, s := range tt.steps {
				s.run(t, dir)
			}
		})
	}
}

var sizeTests = []struct {
	in   string
	want int64 // -1: an error
}{
	{"0", 0},
	{"1234", 1234},
	{"100B", 100},
	{"100KB", 100_000},
	{"5MB", 5_000_000},
	{"2GB", 2_000_000_000},
	{"1TB", 1_000_000_000_000},
	{"1KiB", 1024},
	{"512MiB", 512 << 20},
	{"10GiB", 10 << 30},
	{"2TiB", 2 << 40},
	{"10 gib", 10 << 30},
	{"1.5KiB", 1536},
	{"0.5MB", 500_000},
	{" 7 ", 7},
	{"8388607TiB", 8388607 << 40},
	{"8388608TiB", -1},
	{"9223372036854775807", 1<<63 - 1},
	{"9223372036854775808", -1},
	{"", -1},
	{"GiB", -1},
	{"-1", -1},
	{"-1KiB", -1},
	{"+1", -1},
	{"10XB", -1},
	{"10K", -1},
	{"1e3", -1},
	{"0x10", -1},
	{"1.2.3MB", -1},
	{"NaN", -1},
	{"Inf", -1},
	{"1_000", -1},
}

func TestParseSize(t *testing.T) {
	for _, tt := range sizeTests {
		got, err := parseSize(tt.in)
		switch {
		case tt.want < 0 && err == nil:
			t.Errorf("parseSize(%q) = %d, want an error", tt.in, got)
		case tt.want >= 0 && err != nil:
			t.Errorf("parseSize(%q): %v", tt.in, err)
		case tt.want >= 0 && got != tt.want:
			t.Errorf("parseSize(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func FuzzParseSize(f *testing.F) {
	for _, tt := range sizeTests {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseSize(s)
		if err != nil {
			return
		}
		if n < 0 {
			t.Fatalf("parseSize(%q) = %d", s, n)
		}
		if m, err := parseSize(strconv.FormatInt(n, 10)); err != nil || m != n {
			t.Fatalf("parseSize(%d) = %d, %v", n, m, err)
		}
	})
}

func TestFormatSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1 KiB", 1536: "1.5 KiB", 10 << 30: "10 GiB", 1<<63 - 1: "8 EiB"} {
		if got := formatSize(n); got != want {
			t.Errorf("formatSize(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestHelpAndDocs checks that every command has help and is registered,
// and that docs/cli.md describes it.
func TestHelpAndDocs(t *testing.T) {
	docs, err := os.ReadFile("../../docs/cli.md")
	if err != nil {
		t.Fatal(err)
	}
	root := newRootCmd()
	for _, c := range storeCommands() {
		walk(c, func(c *cobra.Command) {
			path := c.CommandPath() // the tree is not under the root yet
			if c.Short == "" || c.Long == "" {
				t.Errorf("weft %s lacks Short or Long help", path)
			}
			if c.Runnable() && c.Example == "" {
				t.Errorf("weft %s has no example", path)
			}
			if found, _, err := root.Find(strings.Fields(path)); err != nil || found.Name() != c.Name() {
				t.Errorf("weft %s is not registered", path)
			}
			if !bytes.Contains(docs, []byte("weft "+path)) {
				t.Errorf("docs/cli.md does not mention weft %s", path)
			}
			if c.Runnable() && c.PersistentFlags().Lookup("data") == nil && c.InheritedFlags().Lookup("data") == nil {
				t.Errorf("weft %s has no --data", path)
			}
		})
	}
}

// storeCommands are the commands that open a store, for the checks above.
func storeCommands() []*cobra.Command {
	return []*cobra.Command{newLsCmd(), newRmCmd(), newVolumeCmd(), newStreamCmd(), newTableCmd(), newFsCmd(), newSnapshotCmd()}
}

func walk(cmd *cobra.Command, fn func(*cobra.Command)) {
	fn(cmd)
	for _, c := range cmd.Commands() {
		walk(c, fn)
	}
}

// TestStoreInUse runs a store command on a data directory that this
// process holds open, as a running node would.
func TestStoreInUse(t *testing.T) {
	dir := t.TempDir()
	s, err := store.Open(store.Config{Dir: filepath.Join(dir, "data"), MinFreeBytes: -1, RetentionInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	want := filepath.Join(dir, "data") + " is in use by a running node (weft edge or weft core)"
	for _, args := range [][]string{{"ls"}, {"volume", "set", "telemetry", "--ttl", "1h"}} {
		step{args: args, fail: true, stderr: want}.run(t, dir)
	}
}
