package device

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weft-io/weft/firmware"
)

func agentKey(n byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{n}, ed25519.SeedSize))
}

var (
	fwK1, fwK2, fwK3 = agentKey(1), agentKey(2), agentKey(3)
	fwPinned         = firmware.KeySet{Version: 1, Threshold: 2, Keys: []firmware.Key{fwKey(fwK1), fwKey(fwK2)}}
	fwNow            = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	fwRunning        = firmware.MustVersion("1.1.0")
)

func fwKey(k ed25519.PrivateKey) firmware.Key {
	return firmware.NewKey(k.Public().(ed25519.PublicKey))
}

// release is a signed manifest and the image it names.
type release struct {
	m        firmware.Manifest
	manifest []byte
	image    []byte
}

func newRelease(t testing.TB, version string, signer ed25519.PrivateKey, mod func(*firmware.Manifest)) release {
	t.Helper()
	img := []byte(fmt.Sprintf("sensor firmware %s %s", version, bytes.Repeat([]byte{'.'}, 3000)))
	m := firmware.Manifest{Name: "sensor-fw", Version: firmware.MustVersion(version), Class: "thermo",
		SHA256: sha256.Sum256(img), Size: int64(len(img)), NotAfter: fwNow.Add(24 * time.Hour)}
	if mod != nil {
		mod(&m)
	}
	b, err := firmware.Sign(m, signer)
	if err != nil {
		t.Fatal(err)
	}
	m.KeyID = firmware.KeyID(signer.Public().(ed25519.PublicKey))
	return release{m: m, manifest: b, image: img}
}

// memSource serves images from memory, by name@version.
type memSource struct {
	mu        sync.Mutex
	manifests map[string][]byte
	images    map[string][]byte
}

func newMemSource(rels ...release) *memSource {
	s := &memSource{manifests: map[string][]byte{}, images: map[string][]byte{}}
	for _, r := range rels {
		s.put(r.m.Name+"@"+r.m.Version.String(), r.manifest, r.image)
	}
	return s
}

func (s *memSource) put(key string, manifest, image []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.manifests[key], s.images[key] = manifest, image
}

func (s *memSource) Manifest(_ context.Context, name string, v firmware.Version) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.manifests[name+"@"+v.String()]
	if !ok {
		return nil, errors.New("no such release")
	}
	return b, nil
}

func (s *memSource) Image(_ context.Context, name string, v firmware.Version, off int64, w io.Writer) error {
	s.mu.Lock()
	b, ok := s.images[name+"@"+v.String()]
	s.mu.Unlock()
	if !ok {
		return errors.New("no such release")
	}
	_, err := w.Write(b[off:])
	return err
}

// sent records what an agent publishes.
type sent struct {
	mu   sync.Mutex
	msgs []struct{ topic, payload string }
}

func (s *sent) publish(_ context.Context, topic string, payload []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs = append(s.msgs, struct{ topic, payload string }{topic, string(payload)})
	return nil
}

func (s *sent) statuses(t *testing.T) []Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Status
	for _, m := range s.msgs {
		if m.topic == "devices/dev-a/firmware/status" {
			var st Status
			if err := json.Unmarshal([]byte(m.payload), &st); err != nil {
				t.Fatal(err)
			}
			out = append(out, st)
		}
	}
	return out
}

func (s *sent) states(t *testing.T) []string {
	var out []string
	for _, st := range s.statuses(t) {
		out = append(out, st.State)
	}
	return out
}

func (s *sent) shadow() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, m := range s.msgs {
		if m.topic == "devices/dev-a/shadow/reported" {
			out = append(out, m.payload)
		}
	}
	return out
}

func newTestAgent(t *testing.T, dir string, src Source, mod func(*AgentConfig)) (*Agent, *sent) {
	t.Helper()
	out := &sent{}
	cfg := AgentConfig{ID: "dev-a", Class: "thermo", Dir: dir, Keys: fwPinned, Version: fwRunning, Source: src,
		MaxImageSize: 1 << 20, Publish: out.publish, Now: func() time.Time { return fwNow }}
	if mod != nil {
		mod(&cfg)
	}
	a, err := NewAgent(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a, out
}

func TestAgentInstalls(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	rel := newRelease(t, "1.2.0", fwK1, nil)
	a, out := newTestAgent(t, dir, newMemSource(rel), nil)
	res := a.Apply(ctx, Offer{Rollout: "r1", Name: "sensor-fw", Version: rel.m.Version})
	if res.State != StepCommitted || a.Version() != rel.m.Version {
		t.Fatalf("Apply = %+v, running %s", res, a.Version())
	}
	want := "[verifying downloading downloaded verified installing installed rebooting health_check committed]"
	if got := fmt.Sprint(out.states(t)); got != want {
		t.Fatalf("steps %s, want %s", got, want)
	}
	last := out.statuses(t)[len(out.statuses(t))-1]
	if last.Rollout != "r1" || last.Release != "sensor-fw@1.2.0" || last.Running != "1.2.0" {
		t.Fatalf("last status %+v", last)
	}
	if sh := out.shadow(); len(sh) != 1 || sh[0] != `{"firmware":"1.2.0"}` {
		t.Fatalf("shadow reports %v", sh)
	}
	if b, _ := os.ReadFile(a.ActiveSlot()); !bytes.Equal(b, rel.image) {
		t.Fatal("active slot does not hold the image")
	}

	// The version and the keys persist: after a restart the same release,
	// announced again, is "already running", an older one refused.
	a2, out2 := newTestAgent(t, dir, newMemSource(rel, newRelease(t, "1.1.5", fwK1, nil)), func(c *AgentConfig) { c.Keys = firmware.KeySet{} })
	if a2.Version() != rel.m.Version || a2.Keys().Version != 1 {
		t.Fatalf("after restart: %s keys %d", a2.Version(), a2.Keys().Version)
	}
	if res := a2.Apply(ctx, Offer{Manifest: rel.manifest}); res.State != StepCommitted || res.Detail != "already running" {
		t.Fatalf("same release again: %+v", res)
	}
	for _, st := range out2.statuses(t) {
		if st.Release != "sensor-fw@1.2.0" && st.State != StepVerifying {
			t.Fatalf("status without its release: %+v", st)
		}
	}
	if res := a2.Apply(ctx, Offer{Name: "sensor-fw", Version: firmware.MustVersion("1.1.5")}); res.Reason != string(firmware.ReasonNotNewer) {
		t.Fatalf("older release after restart: %+v", res)
	}
}

func TestAgentRollsBackOnFailedHealthCheck(t *testing.T) {
	ctx := context.Background()
	rel := newRelease(t, "1.2.0", fwK1, nil)
	a, out := newTestAgent(t, t.TempDir(), newMemSource(rel), func(c *AgentConfig) {
		c.Health = func(context.Context, string, firmware.Manifest) error { return errors.New("watchdog fired") }
	})
	before := a.ActiveSlot()
	res := a.Apply(ctx, Offer{Manifest: rel.manifest})
	if res.State != StepRolledBack || res.Reason != "health_check" || a.Version() != fwRunning || a.ActiveSlot() != before {
		t.Fatalf("Apply = %+v, running %s from %s", res, a.Version(), a.ActiveSlot())
	}
	if sh := out.shadow(); len(sh) != 1 || sh[0] != `{"firmware":"1.1.0"}` {
		t.Fatalf("shadow reports %v", sh)
	}
}

// TestAgentBootFinishesAnInterruptedUpdate: the device goes down at the
// reboot; the next start boots the trial slot and commits it.
func TestAgentBootFinishesAnInterruptedUpdate(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	rel := newRelease(t, "1.2.0", fwK1, nil)
	down := errors.New("power cut")
	a, _ := newTestAgent(t, dir, newMemSource(rel), func(c *AgentConfig) {
		c.Reboot = func(context.Context) error { return down }
	})
	if res := a.Apply(ctx, Offer{Manifest: rel.manifest}); res.State != StepFailed || a.Version() != fwRunning {
		t.Fatalf("Apply = %+v", res)
	}
	a2, out := newTestAgent(t, dir, nil, nil)
	if res := a2.Boot(ctx); res.State != StepCommitted || a2.Version() != rel.m.Version {
		t.Fatalf("Boot = %+v, running %s", res, a2.Version())
	}
	if got := fmt.Sprint(out.states(t)); got != "[health_check committed]" {
		t.Fatalf("steps %s", got)
	}
	if res := a2.Boot(ctx); res.State != "" {
		t.Fatalf("second Boot = %+v", res)
	}
}

// attack is one row of the attack matrix: what the device is sent and
// what its edge serves; the device must keep running 1.1.0.
type attack struct {
	name string
	// prepare returns what to hand the agent and the source to fetch from.
	prepare func(t *testing.T, a *Agent) (topic string, payload []byte, src *memSource)
	reason  string
}

func announce(rel release) []byte {
	b, _ := json.Marshal(Announcement{Rollout: "r1", Release: rel.m.Name + "@" + rel.m.Version.String(), Name: rel.m.Name, Version: rel.m.Version.String()})
	return b
}

const (
	topicAnnounce = "updates/device/dev-a/firmware/announce"
	topicManifest = "updates/class/thermo/firmware/manifest"
	topicKeySet   = "updates/all/firmware/keyset"
)

// served publishes rel as an announcement with the given manifest and
// image bytes on the edge.
func served(rel release, manifest, image []byte) (string, []byte, *memSource) {
	src := newMemSource()
	src.put(rel.m.Name+"@"+rel.m.Version.String(), manifest, image)
	return topicAnnounce, announce(rel), src
}

var attacks = []attack{
	{"unsigned manifest", func(t *testing.T, _ *Agent) (string, []byte, *memSource) {
		rel := newRelease(t, "1.2.0", fwK1, nil)
		// The signature bytes zeroed: a manifest no key signed.
		b := bytes.Clone(rel.manifest)
		copy(b[len(b)-64:], make([]byte, 64))
		return served(rel, b, rel.image)
	}, string(firmware.ReasonBadSignature)},
	{"signature by an unknown key", func(t *testing.T, _ *Agent) (string, []byte, *memSource) {
		rel := newRelease(t, "1.2.0", fwK3, nil)
		return served(rel, rel.manifest, rel.image)
	}, string(firmware.ReasonUnknownKey)},
	{"valid manifest with another image (mix and match)", func(t *testing.T, _ *Agent) (string, []byte, *memSource) {
		rel := newRelease(t, "1.2.0", fwK1, nil)
		other := newRelease(t, "1.3.0", fwK1, nil)
		img := other.image[:len(rel.image)] // same size, other bytes
		return served(rel, rel.manifest, img)
	}, string(firmware.ReasonHashMismatch)},
	{"old validly signed manifest replayed (rollback)", func(t *testing.T, _ *Agent) (string, []byte, *memSource) {
		rel := newRelease(t, "1.0.0", fwK1, nil)
		return served(rel, rel.manifest, rel.image)
	}, string(firmware.ReasonNotNewer)},
	{"expired manifest", func(t *testing.T, _ *Agent) (string, []byte, *memSource) {
		rel := newRelease(t, "1.2.0", fwK1, func(m *firmware.Manifest) { m.NotAfter = fwNow.Add(-time.Minute) })
		return served(rel, rel.manifest, rel.image)
	}, string(firmware.ReasonExpired)},
	{"wrong class", func(t *testing.T, _ *Agent) (string, []byte, *memSource) {
		rel := newRelease(t, "1.2.0", fwK1, func(m *firmware.Manifest) { m.Class = "valve" })
		return served(rel, rel.manifest, rel.image)
	}, string(firmware.ReasonWrongClass)},
	{"manifest for device B sent to device A", func(t *testing.T, _ *Agent) (string, []byte, *memSource) {
		rel := newRelease(t, "1.2.0", fwK1, func(m *firmware.Manifest) { m.Devices = []string{"dev-b"} })
		return served(rel, rel.manifest, rel.image)
	}, string(firmware.ReasonNotForDevice)},
	{"tampered image on the edge", func(t *testing.T, _ *Agent) (string, []byte, *memSource) {
		rel := newRelease(t, "1.2.0", fwK1, nil)
		img := bytes.Clone(rel.image)
		img[len(img)/2] ^= 0x20
		return served(rel, rel.manifest, img)
	}, string(firmware.ReasonHashMismatch)},
	{"truncated image", func(t *testing.T, _ *Agent) (string, []byte, *memSource) {
		rel := newRelease(t, "1.2.0", fwK1, nil)
		return served(rel, rel.manifest, rel.image[:len(rel.image)-1])
	}, string(firmware.ReasonSizeMismatch)},
	{"oversized image", func(t *testing.T, _ *Agent) (string, []byte, *memSource) {
		rel := newRelease(t, "1.2.0", fwK1, nil)
		return served(rel, rel.manifest, append(bytes.Clone(rel.image), make([]byte, 4<<20)...))
	}, string(firmware.ReasonSizeMismatch)},
	{"image above the device's limit", func(t *testing.T, _ *Agent) (string, []byte, *memSource) {
		img := make([]byte, 2<<20)
		rel := newRelease(t, "1.2.0", fwK1, func(m *firmware.Manifest) { m.SHA256, m.Size = sha256.Sum256(img), int64(len(img)) })
		return served(rel, rel.manifest, img)
	}, string(firmware.ReasonImageTooLarge)},
	{"malformed CBOR", func(t *testing.T, _ *Agent) (string, []byte, *memSource) {
		return topicManifest, []byte{0xd2, 0x84, 0x43, 0xa1, 0x01}, newMemSource()
	}, string(firmware.ReasonMalformed)},
	{"10 MiB manifest", func(t *testing.T, _ *Agent) (string, []byte, *memSource) {
		return topicManifest, bytes.Repeat([]byte{0xd2}, 10<<20), newMemSource()
	}, string(firmware.ReasonTooLarge)},
	{"10 MiB manifest fetched from the edge", func(t *testing.T, _ *Agent) (string, []byte, *memSource) {
		rel := newRelease(t, "1.2.0", fwK1, nil)
		return served(rel, bytes.Repeat([]byte{0xd2}, 10<<20), rel.image)
	}, string(firmware.ReasonTooLarge)},
	{"manifest signed by a key removed by rotation", func(t *testing.T, a *Agent) (string, []byte, *memSource) {
		next := firmware.KeySet{Version: 2, Threshold: 1, Keys: []firmware.Key{fwKey(fwK1)}}
		doc, err := firmware.SignKeySet(next, fwK1, fwK2)
		if err != nil {
			t.Fatal(err)
		}
		if res := a.ApplyKeySet(context.Background(), doc); res.State != StepKeySetAccepted {
			t.Fatalf("rotation: %+v", res)
		}
		rel := newRelease(t, "1.2.0", fwK2, nil)
		return served(rel, rel.manifest, rel.image)
	}, string(firmware.ReasonUnknownKey)},
	{"key-set document signed below threshold", func(t *testing.T, _ *Agent) (string, []byte, *memSource) {
		next := firmware.KeySet{Version: 2, Threshold: 1, Keys: []firmware.Key{fwKey(fwK3)}}
		doc, err := firmware.SignKeySet(next, fwK1, fwK3) // one pinned key of two
		if err != nil {
			t.Fatal(err)
		}
		return topicKeySet, doc, newMemSource()
	}, string(firmware.ReasonKeySetRejected)},
}

// TestAgentAttackMatrix: whatever the device is sent, it keeps running its
// version, reports the refusal with its reason, and still refuses after a
// restart.
func TestAgentAttackMatrix(t *testing.T) {
	ctx := context.Background()
	for _, c := range attacks {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			a, out := newTestAgent(t, dir, nil, nil)
			topic, payload, src := c.prepare(t, a)
			a.cfg.Source = src
			res, ok := a.Handle(ctx, topic, payload)
			if !ok {
				t.Fatalf("topic %s not handled", topic)
			}
			if res.Reason != c.reason || (res.State != StepRejected && res.State != StepKeySetRejected) {
				t.Fatalf("result %+v, want rejected with %s", res, c.reason)
			}
			sts := out.statuses(t)
			last := sts[len(sts)-1]
			if last.Reason != c.reason || last.Running != "1.1.0" || last.Detail == "" {
				t.Fatalf("last status %+v", last)
			}
			for _, st := range sts {
				if st.State == StepInstalling || st.State == StepCommitted {
					t.Fatalf("reached %s: %v", st.State, out.states(t))
				}
			}
			a2, _ := newTestAgent(t, dir, src, nil)
			if a.Version() != fwRunning || a2.Version() != fwRunning {
				t.Fatalf("running %s, after restart %s", a.Version(), a2.Version())
			}
			if b, err := os.ReadFile(a2.ActiveSlot()); err == nil && len(b) > 0 {
				t.Fatalf("active slot written: %d bytes", len(b))
			}
		})
	}
}

func TestAgentKeyRotationPersists(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a, _ := newTestAgent(t, dir, nil, nil)
	next := firmware.KeySet{Version: 2, Threshold: 1, Keys: []firmware.Key{fwKey(fwK1), fwKey(fwK3)}}
	doc, _ := firmware.SignKeySet(next, fwK1, fwK2)
	if res, _ := a.Handle(ctx, topicKeySet, doc); res.State != StepKeySetAccepted {
		t.Fatalf("rotation: %+v", res)
	}
	// Replaying the same document is refused: its version is not above.
	if res := a.ApplyKeySet(ctx, doc); res.State != StepKeySetRejected {
		t.Fatalf("replayed rotation: %+v", res)
	}
	rel := newRelease(t, "1.2.0", fwK3, nil)
	a2, _ := newTestAgent(t, dir, newMemSource(rel), nil)
	if a2.Keys().Version != 2 {
		t.Fatalf("pinned set after restart: %d", a2.Keys().Version)
	}
	if res := a2.Apply(ctx, Offer{Manifest: rel.manifest}); res.State != StepCommitted {
		t.Fatalf("manifest of the new key: %+v", res)
	}
}

func TestAgentIgnoresOtherTopics(t *testing.T) {
	a, out := newTestAgent(t, t.TempDir(), nil, nil)
	for _, topic := range []string{"updates/device/dev-b/firmware/manifest", "updates/class/valve/firmware/manifest",
		"updates/device/dev-a/shadow/delta", "updates/device/dev-a/firmware/other"} {
		if _, ok := a.Handle(context.Background(), topic, []byte("x")); ok {
			t.Errorf("handled %s", topic)
		}
	}
	if res, ok := a.Handle(context.Background(), topicAnnounce, []byte(`{"rollout":"r1","canceled":true}`)); !ok || res.State != "" {
		t.Errorf("canceled announcement: %+v %v", res, ok)
	}
	if len(out.statuses(t)) != 0 {
		t.Fatalf("reports: %v", out.states(t))
	}
}

// lateSource is a memSource whose edge does not hold the release for the
// first asks: the announcement came before the mirror.
type lateSource struct {
	*memSource
	mu      sync.Mutex
	missing int
}

func (s *lateSource) Manifest(ctx context.Context, name string, v firmware.Version) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.missing > 0 {
		s.missing--
		return nil, fmt.Errorf("%w: not yet", ErrNotOnEdge)
	}
	return s.memSource.Manifest(ctx, name, v)
}

// TestAgentWaitsForTheRelease announces a release the edge does not hold
// yet: the agent asks again until it does and installs it; with a wait
// shorter than the mirror's delay, it fails with reason download.
func TestAgentWaitsForTheRelease(t *testing.T) {
	ctx := context.Background()
	rel := newRelease(t, "1.2.0", fwK1, nil)
	src := &lateSource{memSource: newMemSource(rel), missing: 2}
	a, _ := newTestAgent(t, t.TempDir(), src, nil)
	if res := a.Apply(ctx, Offer{Name: "sensor-fw", Version: rel.m.Version}); res.State != StepCommitted {
		t.Fatalf("Apply = %+v", res)
	}
	src = &lateSource{memSource: newMemSource(rel), missing: 1 << 30}
	a, _ = newTestAgent(t, t.TempDir(), src, func(c *AgentConfig) { c.ReleaseWait = time.Millisecond })
	if res := a.Apply(ctx, Offer{Name: "sensor-fw", Version: rel.m.Version}); res.State != StepFailed || res.Reason != "download" {
		t.Fatalf("Apply = %+v, want failed download", res)
	}
}

// cutSource serves images, cutting the first transfer after cut bytes,
// and records the offsets asked for.
type cutSource struct {
	*memSource
	mu   sync.Mutex
	cut  int
	offs []int64
}

func (s *cutSource) Image(ctx context.Context, name string, v firmware.Version, off int64, w io.Writer) error {
	s.mu.Lock()
	s.offs = append(s.offs, off)
	cut := s.cut
	s.cut = 0
	s.mu.Unlock()
	if cut == 0 {
		return s.memSource.Image(ctx, name, v, off, w)
	}
	img := s.images[name+"@"+v.String()]
	if _, err := w.Write(img[off : off+int64(cut)]); err != nil {
		return err
	}
	return errors.New("link lost")
}

// TestAgentResumesADownload cuts a download, restarts the agent and
// offers the release again: the download goes on from where the slot
// ends. When what the slot held was torn, the resumed image does not
// match and is fetched again whole, then installed.
func TestAgentResumesADownload(t *testing.T) {
	ctx := context.Background()
	rel := newRelease(t, "1.2.0", fwK1, nil)
	for _, torn := range []bool{false, true} {
		dir := t.TempDir()
		src := &cutSource{memSource: newMemSource(rel), cut: 1000}
		a, _ := newTestAgent(t, dir, src, nil)
		offer := Offer{Rollout: "r1", Name: "sensor-fw", Version: rel.m.Version}
		if res := a.Apply(ctx, offer); res.State != StepFailed || res.Reason != "download" {
			t.Fatalf("cut download: %+v", res)
		}
		slot := filepath.Join(dir, "slot-b")
		if torn {
			if err := os.WriteFile(slot, bytes.Repeat([]byte{0}, 1000), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		a, _ = newTestAgent(t, dir, src, nil) // a restart
		if res := a.Apply(ctx, offer); res.State != StepCommitted {
			t.Fatalf("torn %v: resumed download: %+v", torn, res)
		}
		want := "[0 1000]"
		if torn {
			want = "[0 1000 0]"
		}
		if got := fmt.Sprint(src.offs); got != want {
			t.Fatalf("torn %v: offsets asked %s, want %s", torn, got, want)
		}
		if b, _ := os.ReadFile(a.ActiveSlot()); !bytes.Equal(b, rel.image) {
			t.Fatalf("torn %v: the active slot does not hold the image", torn)
		}
	}
}

// TestAgentReportsAgainAfterALostConnection loses the connection between
// the verified and committed steps: the statuses after it are lost, and
// on the next connection ReportAgain sends the final one.
func TestAgentReportsAgainAfterALostConnection(t *testing.T) {
	ctx := context.Background()
	rel := newRelease(t, "1.2.0", fwK1, nil)
	var mu sync.Mutex
	online := true
	out := &sent{}
	a, _ := newTestAgent(t, t.TempDir(), newMemSource(rel), func(c *AgentConfig) {
		c.Publish = func(ctx context.Context, topic string, payload []byte) error {
			mu.Lock()
			defer mu.Unlock()
			if !online {
				return errors.New("not connected")
			}
			if err := out.publish(ctx, topic, payload); err != nil {
				return err
			}
			if strings.Contains(string(payload), `"state":"verified"`) {
				online = false
			}
			return nil
		}
	})
	if res := a.Apply(ctx, Offer{Rollout: "r1", Name: "sensor-fw", Version: rel.m.Version}); res.State != StepCommitted {
		t.Fatalf("Apply = %+v", res)
	}
	if got := out.states(t); got[len(got)-1] != StepVerified {
		t.Fatalf("sent before the cut: %v", got)
	}
	mu.Lock()
	online = true
	mu.Unlock()
	if err := a.ReportAgain(ctx); err != nil {
		t.Fatal(err)
	}
	last := out.statuses(t)[len(out.statuses(t))-1]
	if last.State != StepCommitted || last.Rollout != "r1" || last.Running != "1.2.0" {
		t.Fatalf("reported again: %+v", last)
	}
}
