package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"math"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weft-io/weft/anomaly"
	"github.com/weft-io/weft/api"
	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/models"
	"github.com/weft-io/weft/shadow"
	"github.com/weft-io/weft/store"
)

// modelNode is a core's API with a certificate directory (so a model
// key) and two thermo devices with two days of readings every 10 minutes.
func modelNode(t *testing.T) (url, token, certsDir string, t0 time.Time) {
	t.Helper()
	st, err := store.Open(store.Config{Dir: t.TempDir(), MinFreeBytes: -1, RetentionInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	certsDir = t.TempDir()
	reg := prometheus.NewRegistry()
	srv, err := api.New(api.Config{Store: st, TokenKey: pub, Gatherer: reg, Registerer: reg, FirmwareKeys: filepath.Join(certsDir, "firmware-keys.json")})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	ctx := context.Background()
	t0 = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for _, id := range []string{"th-1", "th-2"} {
		if _, err := shadow.Report(ctx, st, id, json.RawMessage(`{}`), shadow.Source{Class: "thermo", Edge: "truck-7"}, t0, nil); err != nil {
			t.Fatal(err)
		}
		var msgs []store.Message
		for i := range 2 * 144 {
			temp := 20 + 5*math.Sin(2*math.Pi*float64(i)/144)
			msgs = append(msgs, store.Message{Value: fmt.Appendf(nil, `{"temp":%g}`, temp), Timestamp: t0.Add(time.Duration(i) * 10 * time.Minute),
				Headers: map[string]string{"mqtt_topic": "devices/" + id + "/telemetry", "device": id}})
		}
		if _, err := st.Stream(store.ByDeviceStream).Append(ctx, id, msgs...); err != nil {
			t.Fatal(err)
		}
	}
	token, err = certs.IssueToken(priv, certs.TokenClaims{Subject: "op", Role: certs.RoleOperator}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return ts.URL, token, certsDir, t0
}

func TestModelCommands(t *testing.T) {
	isolate(t)
	url, token, certsDir, t0 := modelNode(t)
	remote := []string{"--server", url, "--token", token}
	out := must(t, append([]string{"model", "train", "--class", "thermo", "--name", "thermo-bands",
		"--from", t0.Format(time.RFC3339), "--to", t0.Add(48 * time.Hour).Format(time.RFC3339)}, remote...)...)
	if !strings.Contains(out, "trained thermo-bands@1 (class thermo, 2 devices, 576 readings, unpublished)") || !strings.Contains(out, "temp") {
		t.Fatalf("train printed:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(certsDir, models.KeyFile)); err != nil {
		t.Fatalf("no model key made on first use: %v", err)
	}
	fails(t, "not published", append([]string{"model", "promote", "thermo-bands@1"}, remote...)...)
	fails(t, "want NAME@VERSION", append([]string{"model", "publish", "thermo-bands"}, remote...)...)
	must(t, append([]string{"model", "publish", "thermo-bands@1"}, remote...)...)
	out = must(t, append([]string{"model", "promote", "thermo-bands@1"}, remote...)...)
	if !strings.Contains(out, "live") {
		t.Fatalf("promote printed:\n%s", out)
	}
	var ls []map[string]any
	if err := json.Unmarshal([]byte(must(t, append([]string{"model", "ls", "-o", "json"}, remote...)...)), &ls); err != nil || len(ls) != 1 || ls[0]["name"] != "thermo-bands" {
		t.Fatalf("ls -o json: %v %v", ls, err)
	}
	var got struct {
		Name     string `json:"name"`
		Class    string `json:"class"`
		Versions []struct {
			Version int                       `json:"version"`
			Stage   string                    `json:"stage"`
			Edges   map[string]map[string]any `json:"edges"`
		} `json:"versions"`
	}
	if err := json.Unmarshal([]byte(must(t, append([]string{"model", "get", "thermo-bands", "-o", "json"}, remote...)...)), &got); err != nil {
		t.Fatal(err)
	}
	if got.Name != "thermo-bands" || got.Class != "thermo" || len(got.Versions) != 1 || got.Versions[0].Stage != "live" || got.Versions[0].Edges == nil {
		t.Fatalf("get -o json: %+v", got)
	}
	if out := must(t, append([]string{"model", "get", "thermo-bands@1"}, remote...)...); !strings.Contains(out, "thermo-bands") {
		t.Fatalf("get NAME@VERSION:\n%s", out)
	}

	// Scoring a series with the model, from the node.
	csv := filepath.Join(t.TempDir(), "s.csv")
	var b strings.Builder
	b.WriteString("timestamp,value\n")
	for i := range 300 {
		fmt.Fprintf(&b, "%s,%g\n", t0.Add(time.Duration(i)*10*time.Minute).Format(time.DateTime), 20+5*math.Sin(2*math.Pi*float64(i)/144))
	}
	if err := os.WriteFile(csv, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out = must(t, append([]string{"anomaly", "score", "--model", "thermo-bands@1", csv}, remote...)...)
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 301 || lines[0] != "timestamp,value,score,detection" {
		t.Fatalf("score printed %d lines: %.200s", len(lines), out)
	}
	fails(t, "no channel", append([]string{"anomaly", "score", "--model", "thermo-bands@1", "--channel", "rpm", csv}, remote...)...)
	fails(t, "no version 7", append([]string{"anomaly", "score", "--model", "thermo-bands@7", csv}, remote...)...)
}

// A model read from a directory is verified against the key given, and
// scores as its parameters say: a model whose parameters are the
// defaults gives the defaults' detections.
func TestAnomalyScoreModelFromDir(t *testing.T) {
	dir := t.TempDir()
	priv, err := models.LoadOrCreateKey(filepath.Join(dir, "certs"))
	if err != nil {
		t.Fatal(err)
	}
	params, _ := json.Marshal(models.ParamsFile{Kind: models.KindChannel, Channels: map[string]anomaly.Config{"value": {}}})
	m := models.Manifest{Name: "nab", Version: 1, Kind: models.KindChannel, Class: "any", Channels: []string{"value"},
		SHA256: sha256.Sum256(params), Size: int64(len(params))}
	man, err := models.Sign(m, priv)
	if err != nil {
		t.Fatal(err)
	}
	vdir := filepath.Join(dir, "models", "nab", "1")
	if err := os.MkdirAll(vdir, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(vdir, models.ManifestFile), man, 0o644)
	os.WriteFile(filepath.Join(vdir, models.ParamsName), params, 0o644)
	path := nabFile(t, "realAWSCloudwatch/ec2_cpu_utilization_825cc2.csv")
	want := must(t, "anomaly", "score", path)
	key := filepath.Join(dir, "certs", models.PublicKeyFile)
	if got := must(t, "anomaly", "score", "--model", "nab@1", "--models", filepath.Join(dir, "models"), "--key", key, path); got != want {
		t.Fatal("a model of default parameters scored otherwise than the defaults")
	}
	os.WriteFile(filepath.Join(vdir, models.ParamsName), append(params, ' '), 0o644)
	fails(t, "size_mismatch", "anomaly", "score", "--model", "nab@1", "--models", filepath.Join(dir, "models"), "--key", key, path)
}

// weft model add stores an external model with its executable's digest
// signed in the manifest; weft model schedule sets and shows a class's
// schedule.
func TestModelAddAndSchedule(t *testing.T) {
	isolate(t)
	url, token, _, _ := modelNode(t)
	remote := []string{"--server", url, "--token", token}
	prog := []byte("#!/usr/bin/env python3\nimport sys\n")
	exe := filepath.Join(t.TempDir(), "score.py")
	if err := os.WriteFile(exe, prog, 0o755); err != nil {
		t.Fatal(err)
	}
	fails(t, "at least one channel", append([]string{"model", "add", "--exec", exe, "--class", "thermo", "--name", "py"}, remote...)...)
	fails(t, "add makes external models", append([]string{"model", "add", "--kind", "vector", "--exec", exe, "--class", "thermo", "--name", "py", "--channel", "temp"}, remote...)...)
	out := must(t, append([]string{"model", "add", "--kind", "external", "--exec", exe, "--class", "thermo", "--name", "py", "--channel", "temp", "--arg", "-u"}, remote...)...)
	sum := sha256.Sum256(prog)
	if !strings.Contains(out, fmt.Sprintf("added py@1 (class thermo, external, executable sha256 %x, unpublished)", sum)) {
		t.Fatalf("add printed:\n%s", out)
	}
	var got struct {
		Trained []struct {
			Manifest models.Manifest `json:"manifest"`
		} `json:"trained"`
	}
	if err := json.Unmarshal([]byte(must(t, append([]string{"model", "get", "py", "-o", "json"}, remote...)...)), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Trained) != 1 || got.Trained[0].Manifest.Kind != models.KindExternal || got.Trained[0].Manifest.ExecSHA256 != sum ||
		got.Trained[0].Manifest.ExecSize != int64(len(prog)) {
		t.Fatalf("get: %+v", got)
	}
	must(t, append([]string{"model", "publish", "py@1"}, remote...)...)

	fails(t, "NAME=DURATION", append([]string{"model", "schedule", "thermo", "--model", "py=soon"}, remote...)...)
	fails(t, "deadline", append([]string{"model", "schedule", "thermo", "--deadline", "1m"}, remote...)...)
	out = must(t, append([]string{"model", "schedule", "thermo", "--deadline", "20ms", "--model", "py=50ms", "--model", "bands"}, remote...)...)
	if !strings.Contains(out, "thermo") || !strings.Contains(out, "20ms") || !strings.Contains(out, "py=50ms bands=-") {
		t.Fatalf("schedule printed:\n%s", out)
	}
	var all struct {
		Classes map[string]models.ClassSchedule `json:"classes"`
	}
	if err := json.Unmarshal([]byte(must(t, append([]string{"model", "schedule", "-o", "json"}, remote...)...)), &all); err != nil {
		t.Fatal(err)
	}
	if cs := all.Classes["thermo"]; cs.DeadlineMs != 20 || len(cs.Models) != 2 || cs.Models[0] != (models.ScheduleEntry{Name: "py", DeadlineMs: 50}) {
		t.Fatalf("schedule -o json: %+v", all)
	}
	must(t, append([]string{"model", "schedule", "thermo", "--clear"}, remote...)...)
	if out := must(t, append([]string{"model", "schedule"}, remote...)...); strings.Contains(out, "thermo") {
		t.Fatalf("cleared schedule still shown:\n%s", out)
	}
}
