package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weft-io/weft/api"
	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/firmware"
	"github.com/weft-io/weft/store"
)

// TestFirmwareCommands runs keygen, keyset, sign and publish against a
// node's API, then the refusals publish reports.
func TestFirmwareCommands(t *testing.T) {
	isolate(t)
	dir := t.TempDir()
	k1, k2 := filepath.Join(dir, "k1"), filepath.Join(dir, "k2")
	id1 := strings.TrimSpace(must(t, "firmware", "keygen", "--out", k1))
	must(t, "firmware", "keygen", "--out", k2)
	if st, err := os.Stat(filepath.Join(k1, firmware.PrivateKeyFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", st, err)
	}
	if _, errLine := weft(t, "firmware", "keygen", "--out", k1); errLine == "" {
		t.Fatal("keygen overwrote a key")
	}
	keys := filepath.Join(dir, "firmware-keys.json")
	must(t, "firmware", "keyset", "--pub", filepath.Join(k1, firmware.PublicKeyFile), "--out", keys)
	set, err := firmware.ReadKeySet(keys)
	if err != nil || set.Keys[0].ID != id1 {
		t.Fatalf("key set %+v %v (keygen printed %q)", set, err, id1)
	}

	image := filepath.Join(dir, "fw.bin")
	os.WriteFile(image, []byte(strings.Repeat("firmware!", 500)), 0o644)
	manifest := filepath.Join(dir, "fw.cose")
	must(t, "firmware", "sign", "--key", filepath.Join(k1, firmware.PrivateKeyFile), "--image", image,
		"--name", "sensor-fw", "--version", "1.2.0", "--class", "thermo", "--device", "d1", "--device", "d2",
		"--not-after", "720h", "--out", manifest)
	b, _ := os.ReadFile(manifest)
	m, err := firmware.Parse(b)
	if err != nil || m.Size != 4500 || len(m.Devices) != 2 || m.NotAfter.Before(time.Now().Add(719*time.Hour)) || m.KeyID != id1 {
		t.Fatalf("manifest %+v %v", m, err)
	}

	st, err := store.Open(store.Config{Dir: t.TempDir(), MinFreeBytes: -1, RetentionInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	reg := prometheus.NewRegistry()
	srv, err := api.New(api.Config{Store: st, TokenKey: pub, Gatherer: reg, FirmwareKeys: keys})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	tok, _ := certs.IssueToken(priv, certs.TokenClaims{Subject: "ops", Role: certs.RoleAdmin}, time.Hour)

	out := must(t, "firmware", "publish", "--server", ts.URL, "--token", tok, image, manifest)
	if !strings.Contains(out, "published sensor-fw 1.2.0 class thermo") {
		t.Fatalf("publish said %q", out)
	}
	if _, errLine := weft(t, "firmware", "publish", "--server", ts.URL, "--token", tok, image, manifest); !strings.Contains(errLine, "422 Firmware refused: not_newer") {
		t.Fatalf("second publish: %q", errLine)
	}
	other := filepath.Join(dir, "other.cose")
	must(t, "firmware", "sign", "--key", filepath.Join(k2, firmware.PrivateKeyFile), "--image", image,
		"--name", "sensor-fw", "--version", "1.3.0", "--class", "thermo", "--out", other)
	if _, errLine := weft(t, "firmware", "publish", "--server", ts.URL, "--token", tok, image, other); !strings.Contains(errLine, "422 Firmware refused: unknown_key") {
		t.Fatalf("unknown key: %q", errLine)
	}
	if out := must(t, "firmware", "ls", "--server", ts.URL, "--token", tok); !strings.Contains(out, "sensor-fw") || !strings.Contains(out, id1) {
		t.Fatalf("ls: %q", out)
	}

	// Rotation: k2 joins, signed by k1 (the pinned threshold) and k2.
	next, doc := filepath.Join(dir, "keys-2.json"), filepath.Join(dir, "keys-2.cbor")
	must(t, "firmware", "keyset", "--pub", filepath.Join(k1, firmware.PublicKeyFile), "--pub", filepath.Join(k2, firmware.PublicKeyFile),
		"--version", "2", "--threshold", "1", "--out", next, "--sign", filepath.Join(k1, firmware.PrivateKeyFile), "--doc", doc)
	raw, _ := os.ReadFile(doc)
	if got, err := firmware.VerifyKeySet(raw, set); err != nil || got.Version != 2 || len(got.Keys) != 2 {
		t.Fatalf("rotation: %+v %v", got, err)
	}
}

// TestFirmwareAgentNeedsKeys: an agent starting without state must be
// given the keys to pin.
func TestFirmwareAgentNeedsKeys(t *testing.T) {
	_, errLine := weft(t, "firmware", "agent", "--certs", t.TempDir(), "--id", "d1", "--class", "thermo", "--dir", t.TempDir())
	if !strings.Contains(errLine, "pinned keys") {
		t.Fatalf("agent without keys: %q", errLine)
	}
}

func TestParseNotAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{"": {}, "24h": now.Add(24 * time.Hour), "2026-03-01T00:00:00Z": time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)} {
		got, err := parseNotAfter(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseNotAfter(%q) = %v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"-1h", "tomorrow"} {
		if _, err := parseNotAfter(bad, now); err == nil {
			t.Errorf("parseNotAfter(%q) accepted", bad)
		}
	}
}
