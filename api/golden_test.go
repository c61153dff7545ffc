package api

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"flag"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/shadow"
	"github.com/weft-io/weft/store"
)

// takenAt matches the time a fleet summary was counted.
var takenAt = regexp.MustCompile(`"taken": "[^"]*"`)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

// TestGolden checks the API's answers, byte for byte (indented), against
// the files under testdata/golden: what clients and scripts are written
// against. After a deliberate change, rewrite them with
// `go test ./api -run TestGolden -update` and review the diff.
func TestGolden(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	now := t0
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); now = now.Add(time.Second); return now }
	st, err := store.Open(store.Config{Dir: t.TempDir(), Name: "edge1", MinFreeBytes: -1, RetentionInterval: -1, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	src := shadow.Source{Class: "pump", Edge: "edge1", Site: "north"}
	for i, id := range []string{"pump-1", "pump-2"} {
		at := t0.Add(time.Duration(i) * time.Minute)
		msg := store.Message{Key: []byte(id), Value: []byte(`{"setpoint":4,"firmware":"1.2.0"}`), Timestamp: at,
			Headers: map[string]string{"device": id, "class": "pump", "topic": "devices/" + id + "/shadow/reported"}}
		also := []store.AppendRequest{{Path: store.ByDeviceStream, Topic: id, Partition: -1, Messages: []store.Message{msg}}}
		if _, err := shadow.Report(ctx, st, id, msg.Value, src, at, also); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := shadow.SetDesired(ctx, st, "pump-1", json.RawMessage(`{"setpoint":7}`), shadow.SetOptions{Now: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}

	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	srv, err := New(Config{Store: st, TokenKey: pub, Gatherer: reg, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	e := &env{t: t, st: st, srv: srv, url: ts.URL, priv: priv, reg: reg}
	tok := e.token(certs.RoleViewer)
	revoked, err := certs.IssueToken(priv, certs.TokenClaims{Subject: "mallory", Role: certs.RoleViewer, ID: "gold-1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.RevokeToken(ctx, "root", "gold-1"); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		name, path, token string
	}{
		{"device", "/api/v1/devices/pump-1", tok},
		{"devices", "/api/v1/devices?class=pump", tok},
		{"history", "/api/v1/devices/pump-2/history?from=2026-03-01T09:00:00Z&to=2026-03-01T11:00:00Z", tok},
		{"fleet", "/api/v1/fleet", tok},
		{"stream-read", "/api/v1/streams/telemetry/by_device/messages?topic=pump-1&from=0", tok},
		{"no-token", "/api/v1/devices", ""},
		{"unknown-device", "/api/v1/devices/pump-9", tok},
		{"revoked-token", "/api/v1/devices", revoked},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, body := e.do("GET", c.path, c.token, "")
			var out bytes.Buffer
			out.WriteString(resp.Status + "\n" + "Content-Type: " + resp.Header.Get("Content-Type") + "\n\n")
			if err := json.Indent(&out, body, "", "  "); err != nil {
				out.Write(body)
			}
			out.WriteString("\n")
			// When a summary was taken is the only wall-clock time in them.
			scrubbed := takenAt.ReplaceAll(out.Bytes(), []byte(`"taken": "<time>"`))
			out.Reset()
			out.Write(scrubbed)
			file := filepath.Join("testdata", "golden", c.name+".txt")
			if *update {
				if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(file, out.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("%v (run with -update to write it)", err)
			}
			if got := out.String(); got != string(want) {
				t.Fatalf("GET %s differs from %s (run with -update after a deliberate change):\n--- got\n%s\n--- want\n%s", c.path, file, got, want)
			}
		})
	}
}
