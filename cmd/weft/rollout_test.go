package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/firmware"
	"github.com/weft-io/weft/store"
)

// publishRelease stores a release of name@version for class in st, as
// the core does once it has verified it.
func publishRelease(t *testing.T, st *store.Store, name, version, class string) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	image := bytes.Repeat([]byte("firmware"), 100)
	m := firmware.Manifest{Name: name, Version: firmware.MustVersion(version), Class: class,
		SHA256: sha256.Sum256(image), Size: int64(len(image)), KeyID: firmware.KeyID(pub)}
	signed, err := firmware.Sign(m, priv)
	if err != nil {
		t.Fatal(err)
	}
	reg := &firmware.Registry{Store: st, Keys: func() (firmware.KeySet, error) {
		return firmware.KeySet{Version: 1, Threshold: 1, Keys: []firmware.Key{firmware.NewKey(pub)}}, nil
	}}
	if _, err := reg.Publish(context.Background(), signed, bytes.NewReader(image)); err != nil {
		t.Fatal(err)
	}
}

// rollout runs weft firmware rollout with args and returns its stdout
// and error.
func rollout(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newFirmwareRolloutCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(io.Discard)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func TestFirmwareRollout(t *testing.T) {
	isolate(t)
	n := newTestNode(t)
	n.addDevices(t, 30) // 20 pumps, 10 chillers
	publishRelease(t, n.st, "sensor-fw", "1.2.0", "pump")
	remote := []string{"--server", n.url, "--token", n.token(t, certs.RoleOperator)}

	out, err := rollout(t, append([]string{"create", "--release", "sensor-fw@1.2.0", "--target", "all", "--waves", "10,100",
		"--failure-threshold", "10%", "--min-executed", "2", "--device-timeout", "15m", "--wave-soak", "10m", "-o", "json"}, remote...)...)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	var created firmware.Summary
	if err := json.Unmarshal([]byte(out), &created); err != nil || created.ID == "" {
		t.Fatalf("create printed %q (%v)", out, err)
	}
	if created.Devices != 20 || created.State != firmware.Running || created.Waves[0].Devices != 2 ||
		created.DeviceTimeout != firmware.Duration(15*time.Minute) || created.WaveSoak != firmware.Duration(10*time.Minute) {
		t.Fatalf("created %+v", created)
	}

	// The table shows the rollout, then its waves with their progress.
	out, err = rollout(t, append([]string{"get", created.ID}, remote...)...)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{created.ID, "sensor-fw@1.2.0", "running", "WAVE", "10%", "[....................]", "queued=2"} {
		if !strings.Contains(out, want) {
			t.Errorf("get: no %q in\n%s", want, out)
		}
	}

	out, err = rollout(t, append([]string{"pause", created.ID, "-o", "json"}, remote...)...)
	if err != nil || !strings.Contains(out, `"state": "paused"`) {
		t.Fatalf("pause: %v %s", err, out)
	}
	if _, err := rollout(t, append([]string{"pause", created.ID}, remote...)...); err == nil || !strings.Contains(err.Error(), "409") {
		t.Fatalf("pause twice: %v", err)
	}
	if out, err = rollout(t, append([]string{"resume", created.ID, "-o", "json"}, remote...)...); err != nil || !strings.Contains(out, `"state": "running"`) {
		t.Fatalf("resume: %v %s", err, out)
	}
	out, err = rollout(t, append([]string{"abort", created.ID}, remote...)...)
	if err != nil || !strings.Contains(out, "aborted") || !strings.Contains(out, "canceled=18") {
		t.Fatalf("abort: %v\n%s", err, out)
	}

	out, err = rollout(t, append([]string{"ls", "-o", "json"}, remote...)...)
	var list []firmware.Summary
	if err != nil || json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 || list[0].State != firmware.Aborted {
		t.Fatalf("ls: %v %s", err, out)
	}

	// Bad flags are refused before any request.
	for _, args := range [][]string{
		{"create", "--release", "sensor-fw", "--target", "all"},
		{"create", "--release", "sensor-fw@1.2.0", "--target", "everyone"},
		{"create", "--release", "sensor-fw@1.2.0", "--target", "all", "--waves", "50"},
		{"create", "--release", "sensor-fw@1.2.0", "--target", "all", "--failure-threshold", "ten"},
	} {
		if _, err := rollout(t, append(args, remote...)...); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}

func TestProgressBar(t *testing.T) {
	for _, tt := range []struct {
		c    firmware.Counts
		want string
	}{
		{firmware.Counts{}, "[          ]"},
		{firmware.Counts{Queued: 10}, "[..........]"},
		{firmware.Counts{Succeeded: 5, Failed: 1, TimedOut: 1, Queued: 3}, "[#####xx...]"},
		{firmware.Counts{Succeeded: 1, Canceled: 2}, "[###-------]"},
	} {
		if got := progressBar(tt.c, 10); got != tt.want {
			t.Errorf("%+v: %q, want %q", tt.c, got, tt.want)
		}
	}
}
