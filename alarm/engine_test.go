package alarm

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weft-io/weft/anomaly"
	"github.com/weft-io/weft/internal/testenv/wait"
	"github.com/weft-io/weft/store"
)

// TestEngineCheck drives an edge's engine by hand with its own clock:
// which devices are offline, the clear when one is heard from, and the
// pruning of alarms cleared past the retention.
func TestEngineCheck(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(store.Config{Dir: t.TempDir(), Name: "edge1", MinFreeBytes: -1, RetentionInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := st.Now().UTC()
	clock := func() time.Time { return now }
	shadowAt := func(id string, connected bool, seen time.Time) {
		t.Helper()
		doc := fmt.Appendf(nil, `{"edge":"edge1","connected":%t,"last_seen":%q}`, connected, seen.Format(time.RFC3339Nano))
		if _, err := st.Table(store.ShadowsTable).Put(ctx, id, doc); err != nil {
			t.Fatal(err)
		}
	}
	// quiet-but-talking connected an hour ago and sent telemetry a minute
	// ago; gone has not been seen for an hour; fresh a minute ago;
	// elsewhere is another edge's.
	shadowAt("quiet-but-talking", true, now.Add(-time.Hour))
	if _, err := st.Stream(store.ByDeviceStream).Append(ctx, "quiet-but-talking", store.Message{Value: []byte(`{"t":1}`), Timestamp: now.Add(-time.Minute)}); err != nil {
		t.Fatal(err)
	}
	shadowAt("gone", false, now.Add(-time.Hour))
	shadowAt("fresh", true, now.Add(-time.Minute))
	if _, err := st.Table(store.ShadowsTable).Put(ctx, "elsewhere", fmt.Appendf(nil, `{"edge":"edge2","last_seen":%q}`, now.Add(-time.Hour).Format(time.RFC3339Nano))); err != nil {
		t.Fatal(err)
	}
	e, err := New(Config{Store: st, Edge: true, Now: clock, Retention: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := Ensure(ctx, st); err != nil {
		t.Fatal(err)
	}
	offline := func() string {
		t.Helper()
		if err := e.Check(ctx); err != nil {
			t.Fatal(err)
		}
		l, err := List(ctx, st, Filter{Type: DeviceOffline})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, a := range l {
			out = append(out, a.Device+":"+a.State)
		}
		return strings.Join(out, " ")
	}
	if got := offline(); got != "gone:active" {
		t.Fatalf("offline: %q, want gone:active", got)
	}
	if got := offline(); got != "gone:active" {
		t.Fatalf("checked again: %q, want the same one alarm", got)
	}
	now = now.Add(time.Minute)
	shadowAt("gone", true, now)
	if got := offline(); got != "gone:cleared" {
		t.Fatalf("heard from: %q, want gone:cleared", got)
	}
	now = now.Add(25 * time.Hour)
	shadowAt("gone", true, now)
	shadowAt("quiet-but-talking", true, now)
	shadowAt("fresh", true, now)
	if got := offline(); got != "" {
		t.Fatalf("past the retention: %q, want nothing kept", got)
	}
}

// TestEngineConditions checks the core's other conditions by hand:
// links, rollouts, certificates.
func TestEngineConditions(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(store.Config{Dir: t.TempDir(), Name: "core1", MinFreeBytes: -1, RetentionInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := st.Now().UTC()
	links := []Link{{Peer: "edge1", Up: false, Since: now.Add(-time.Hour)}, {Peer: "edge2", Up: false, Since: now.Add(-time.Second)}, {Peer: "edge3", Up: true}}
	// A certificate that expires in three days.
	certFile := filepath.Join(t.TempDir(), "core1.crt")
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "core1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(72 * time.Hour)}, &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "core1"}}, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	const rollouts = "/updates/rollouts"
	if err := st.CreateTable(ctx, rollouts, store.TableOptions{}); err != nil {
		t.Fatal(err)
	}
	rollout := func(state string) {
		t.Helper()
		if _, err := st.Table(rollouts).Put(ctx, "r1", []byte(`{"id":"r1","release":"fw@1.2.0","state":"`+state+`","halt_reason":"3 of 4 failed"}`)); err != nil {
			t.Fatal(err)
		}
	}
	rollout("halted")
	e, err := New(Config{Store: st, Links: func() []Link { return links }, CertFiles: []string{certFile}, Rollouts: rollouts,
		Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	if err := Ensure(ctx, st); err != nil {
		t.Fatal(err)
	}
	open := func() string {
		t.Helper()
		if err := e.Check(ctx); err != nil {
			t.Fatal(err)
		}
		l, err := List(ctx, st, Filter{})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, a := range l {
			out = append(out, a.Type+":"+a.Edge+":"+a.Severity+":"+a.State)
		}
		slices.Sort(out)
		return strings.Join(out, " ")
	}
	want := "cert_expiring::major:active link_down:edge1:major:active rollout_halted::major:active"
	if got := open(); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	links[0].Up, links[0].Since = true, now
	rollout("running")
	want = "cert_expiring::major:active link_down:edge1:major:cleared rollout_halted::major:cleared"
	if got := open(); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

// TestEngineAnomalies raises an anomaly alarm from a detection on the
// uplink, makes it worse with a higher score, and clears it after a quiet
// period.
func TestEngineAnomalies(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(store.Config{Dir: t.TempDir(), Name: "edge1", MinFreeBytes: -1, RetentionInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var now atomic.Int64
	now.Store(st.Now().UnixNano())
	e, err := New(Config{Store: st, Edge: true, Tick: 10 * time.Millisecond, AnomalyQuiet: 15 * time.Minute,
		Now: func() time.Time { return time.Unix(0, now.Load()) }})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- e.Run(rctx) }()
	defer func() { cancel(); <-done }()
	detect := func(topic string, score float64) {
		t.Helper()
		d, _ := json.Marshal(anomaly.Detection{Type: anomaly.RecordAnomaly, Device: "pump-1", Channel: "temp", Detector: "quantile", Score: score,
			At: time.Unix(0, now.Load()).UTC()})
		if _, err := st.Stream(store.UplinkStream).Append(ctx, topic, store.Message{Key: []byte("pump-1"), Value: d,
			Headers: map[string]string{anomaly.RecordHeader: anomaly.RecordAnomaly}}); err != nil {
			t.Fatal(err)
		}
	}
	one := func(what string, ok func(a Alarm) bool) {
		t.Helper()
		wait.For(t, 0, what, func() bool {
			l, err := List(ctx, st, Filter{Type: Anomaly})
			return err == nil && len(l) == 1 && ok(l[0])
		})
	}
	detect("edge1", 0.85)
	one("a minor anomaly alarm", func(a Alarm) bool {
		return a.State == Active && a.Severity == Minor && a.Device == "pump-1" && a.Edge == "edge1"
	})
	detect("edge2", 0.99) // another edge's topic: not this edge's to raise
	detect("edge1", 0.97)
	one("the alarm made critical", func(a Alarm) bool { return a.Severity == Critical && a.State == Active })
	now.Add(int64(16 * time.Minute))
	one("the alarm cleared after a quiet quarter of an hour", func(a Alarm) bool { return a.State == Cleared })
}

// TestEngineModelDrift raises model_drift for a model version whose drift
// is past the threshold and clears it when it comes back.
func TestEngineModelDrift(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(store.Config{Dir: t.TempDir(), Name: "core1", MinFreeBytes: -1, RetentionInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	drift := map[string]float64{"bands@1": 0.45, "bands@2": 0.1}
	e, err := New(Config{Store: st, ModelDrift: func() map[string]float64 { return drift }})
	if err != nil {
		t.Fatal(err)
	}
	if err := Ensure(ctx, st); err != nil {
		t.Fatal(err)
	}
	drifting := func() []Alarm {
		t.Helper()
		if err := e.Check(ctx); err != nil {
			t.Fatal(err)
		}
		l, err := List(ctx, st, Filter{Type: ModelDrift})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	l := drifting()
	if len(l) != 1 || l[0].State != Active || l[0].Severity != Warning || !strings.Contains(string(l[0].Details), `"model":"bands@1"`) {
		t.Fatalf("alarms %+v", l)
	}
	drift["bands@1"] = 0.2
	if l := drifting(); len(l) != 1 || l[0].State != Cleared {
		t.Fatalf("after the drift went down: %+v", l)
	}
}
