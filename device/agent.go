package device

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/weft-io/weft/firmware"
)

// The agent's MQTT topics. Announcements come down on
// updates/{device/<id>,class/<class>,all}/firmware/<kind>; the agent reports on
// devices/<id>/firmware/status and its running version in the shadow.
const (
	// SubtopicAnnounce carries a rollout's announcement (JSON, see
	// Announcement): the release and where its files are.
	SubtopicAnnounce = "firmware/announce"
	// SubtopicManifest carries a signed manifest itself (COSE_Sign1 bytes).
	SubtopicManifest = "firmware/manifest"
	// SubtopicKeySet carries a signed key-set document (firmware.SignKeySet).
	SubtopicKeySet = "firmware/keyset"
)

// Status steps an agent reports (field state of its status). The rollout
// reads downloading..health_check as in progress, committed as success,
// rolled_back and failed as failure, rejected as a refusal.
const (
	StepVerifying      = "verifying"
	StepDownloading    = "downloading"
	StepDownloaded     = "downloaded"
	StepVerified       = "verified"
	StepInstalling     = "installing"
	StepInstalled      = "installed"
	StepRebooting      = "rebooting"
	StepHealthCheck    = "health_check"
	StepCommitted      = "committed"
	StepRolledBack     = "rolled_back"
	StepFailed         = "failed"
	StepRejected       = "rejected"
	StepKeySetAccepted = "keyset_accepted"
	StepKeySetRejected = "keyset_rejected"
)

// Status is what the agent publishes to devices/<id>/firmware/status at
// every step and every refusal.
type Status struct {
	Rollout string `json:"rollout,omitempty"`
	// Release is NAME@VERSION of the release concerned.
	Release string `json:"release,omitempty"`
	State   string `json:"state"`
	// Reason is a firmware.Reason for a refusal, or download /
	// health_check / install for a failure.
	Reason string `json:"reason,omitempty"`
	Detail string `json:"detail,omitempty"`
	// Running is the version the device runs after this step.
	Running string `json:"running"`
	// KeySet is the pinned key-set version (key-set steps).
	KeySet uint64    `json:"keyset,omitempty"`
	Time   time.Time `json:"ts"`
}

// Announcement is the JSON a rollout sends on
// updates/device/<id>/firmware/announce (firmware.Announcement).
type Announcement = firmware.Announcement

// Source is where an agent fetches releases: its edge (HTTPSource) in
// production.
type Source interface {
	// Manifest returns the signed manifest of a release.
	Manifest(ctx context.Context, name string, v firmware.Version) ([]byte, error)
	// Image writes the image of a release to w from byte off on.
	Image(ctx context.Context, name string, v firmware.Version, off int64, w io.Writer) error
}

// AgentConfig configures an Agent. ID, Class, Dir and (on first start)
// Keys are required.
type AgentConfig struct {
	// ID and Class are the device's, as in its certificate.
	ID, Class string
	// Dir holds the agent's state (agent.json) and its two slots (slot-a,
	// slot-b). Installed version and pinned keys persist there.
	Dir string
	// Keys is the key set pinned on first start (when Dir holds no state);
	// later the pinned set changes only by a signed rotation.
	Keys firmware.KeySet
	// Version is the version running on first start. Default 0.0.0.
	Version firmware.Version
	// Source fetches manifests and images. Required to install.
	Source Source
	// MaxImageSize is the largest image the device takes. Default 64 MiB.
	MaxImageSize int64
	// ReleaseWait is how long the agent keeps asking its Source for an
	// announced release the edge does not hold yet (ErrNotOnEdge): the
	// announcement may arrive before the release's mirror does. Default
	// 10 minutes.
	ReleaseWait time.Duration
	// DigestOnly keeps in a slot the image's digest and size, not its
	// bytes: for simulated fleets, where thousands of devices would
	// otherwise write every image to disk thousands of times. Every check
	// runs as for a real slot. Default false: the slot holds the image.
	DigestOnly bool
	// Health checks the newly booted slot; an error rolls back to the
	// previous one. Nil: every boot is healthy.
	Health func(ctx context.Context, slot string, m firmware.Manifest) error
	// Reboot restarts the device into the trial slot; it need not return.
	// Nil: the agent boots the trial slot in place (Boot), as the simulator
	// and tests do.
	Reboot func(ctx context.Context) error
	// Publish sends an MQTT message (Run sets it). Nil: reports are
	// dropped.
	Publish func(ctx context.Context, topic string, payload []byte) error
	// Now is the clock manifests are checked against. Default time.Now.
	Now func() time.Time
	// Logger receives the agent's logs. Nil discards them.
	Logger *slog.Logger
}

// ErrNotOnEdge is the error of a Source asked for a release its edge does
// not hold (yet).
var ErrNotOnEdge = errors.New("device: release not on the edge")

// DefaultMaxImageSize is the default of AgentConfig.MaxImageSize.
const DefaultMaxImageSize = 64 << 20

// agentState is what persists in Dir/agent.json.
type agentState struct {
	Name    string           `json:"name,omitempty"`
	Version firmware.Version `json:"version"`
	SHA256  string           `json:"sha256,omitempty"`
	Active  string           `json:"active"` // "a" or "b"
	Keys    firmware.KeySet  `json:"keys"`
	// Trial is the slot being booted for the first time: set before the
	// reboot, cleared by commit or rollback.
	Trial *trial `json:"trial,omitempty"`
	// Partial is the release being downloaded into the inactive slot, so
	// that a download a restart cut off resumes where the slot ends.
	Partial *partial `json:"partial,omitempty"`
}

type partial struct {
	Slot    string           `json:"slot"`
	Name    string           `json:"name"`
	Version firmware.Version `json:"version"`
	SHA256  string           `json:"sha256"`
}

type trial struct {
	Slot     string            `json:"slot"`
	Rollout  string            `json:"rollout,omitempty"`
	Manifest firmware.Manifest `json:"manifest"`
}

// Agent is the device side of firmware updates: it verifies what it is
// offered against its pinned keys, installs into the inactive slot, boots
// it on trial and commits or rolls back, reporting every step. One update
// runs at a time.
type Agent struct {
	cfg AgentConfig
	log *slog.Logger
	mu  sync.Mutex // serialises updates and guards st
	st  agentState

	lastMu sync.Mutex
	last   []byte // the latest status, sent or not (ReportAgain)
}

const stateFile = "agent.json"

// NewAgent loads the agent's state from cfg.Dir, or starts it with cfg.Keys
// and cfg.Version.
func NewAgent(cfg AgentConfig) (*Agent, error) {
	if cfg.ID == "" || cfg.Class == "" || cfg.Dir == "" {
		return nil, errors.New("device: agent needs an id, a class and a directory")
	}
	if cfg.MaxImageSize <= 0 {
		cfg.MaxImageSize = DefaultMaxImageSize
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.ReleaseWait <= 0 {
		cfg.ReleaseWait = 10 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	a := &Agent{cfg: cfg, log: cfg.Logger.With("component", "firmware-agent", "device", cfg.ID)}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("device: agent: %w", err)
	}
	b, err := os.ReadFile(filepath.Join(cfg.Dir, stateFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := cfg.Keys.Check(); err != nil {
			return nil, fmt.Errorf("device: agent: pinned keys: %w", err)
		}
		a.st = agentState{Version: cfg.Version, Active: "a", Keys: cfg.Keys}
		if err := a.save(); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, fmt.Errorf("device: agent: %w", err)
	default:
		if err := json.Unmarshal(b, &a.st); err != nil {
			return nil, fmt.Errorf("device: agent: %s: %w", stateFile, err)
		}
		if err := a.st.Keys.Check(); err != nil {
			return nil, fmt.Errorf("device: agent: pinned keys: %w", err)
		}
	}
	return a, nil
}

// save writes the state durably: a temporary file, fsync, rename, fsync of
// the directory, so that a power cut leaves the old state or the new.
func (a *Agent) save() error {
	b, err := json.MarshalIndent(a.st, "", "  ")
	if err != nil {
		return fmt.Errorf("device: agent: %w", err)
	}
	path := filepath.Join(a.cfg.Dir, stateFile)
	if err := writeDurable(path, b); err != nil {
		return fmt.Errorf("device: agent: save state: %w", err)
	}
	return nil
}

func writeDurable(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Version returns the running version.
func (a *Agent) Version() firmware.Version {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.st.Version
}

// Keys returns the pinned key set.
func (a *Agent) Keys() firmware.KeySet {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.st.Keys
}

// ActiveSlot returns the path of the slot the device runs from.
func (a *Agent) ActiveSlot() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.slotPath(a.st.Active)
}

func (a *Agent) slotPath(s string) string { return filepath.Join(a.cfg.Dir, "slot-"+s) }

func other(slot string) string {
	if slot == "a" {
		return "b"
	}
	return "a"
}

// report publishes a status; a failure to publish is logged, not returned:
// the update goes on and later reports carry the state.
func (a *Agent) report(ctx context.Context, s Status) {
	s.Running = a.st.Version.String()
	s.Time = a.cfg.Now().UTC()
	a.log.Info("firmware status", "state", s.State, "release", s.Release, "reason", s.Reason, "detail", s.Detail)
	if a.cfg.Publish == nil {
		return
	}
	b, _ := json.Marshal(s)
	a.lastMu.Lock()
	a.last = b
	a.lastMu.Unlock()
	if err := a.cfg.Publish(ctx, "devices/"+a.cfg.ID+"/firmware/status", b); err != nil {
		a.log.Warn("status not sent", "state", s.State, "err", err)
	}
}

// ReportAgain publishes the latest status once more. Call it on every
// new connection: a device that lost its connection between its last
// steps (its final report with it) would otherwise stay "in progress" for
// its rollout until the device timeout. A report that does not move the
// device forward is ignored, so the repeat is harmless. It does not wait
// for an update in progress.
func (a *Agent) ReportAgain(ctx context.Context) error {
	a.lastMu.Lock()
	b := a.last
	a.lastMu.Unlock()
	if b == nil || a.cfg.Publish == nil {
		return nil
	}
	return a.cfg.Publish(ctx, "devices/"+a.cfg.ID+"/firmware/status", b)
}

// reportShadow publishes the running version in the shadow's reported
// state.
func (a *Agent) reportShadow(ctx context.Context) {
	if a.cfg.Publish == nil {
		return
	}
	b, _ := json.Marshal(map[string]string{"firmware": a.st.Version.String()})
	if err := a.cfg.Publish(ctx, "devices/"+a.cfg.ID+"/shadow/reported", b); err != nil {
		a.log.Warn("shadow report not sent", "err", err)
	}
}

// Offer is a release offered to the device: a signed manifest, or the
// name and version to fetch it by.
type Offer struct {
	Rollout string
	// Manifest is the signed manifest; nil fetches it from the Source by
	// Name and Version.
	Manifest []byte
	Name     string
	Version  firmware.Version
}

// Result is the outcome of an offer.
type Result struct {
	// State is the last step: committed, rolled_back, rejected or failed.
	State  string
	Reason string
	Detail string
}

// Apply runs one update: verify the manifest, fetch the image into the
// inactive slot, verify it, boot it on trial, commit or roll back. Every
// step and refusal is reported. The running version changes only on
// commit.
func (a *Agent) Apply(ctx context.Context, o Offer) Result {
	a.mu.Lock()
	defer a.mu.Unlock()
	release := ""
	if o.Name != "" {
		release = o.Name + "@" + o.Version.String()
	}
	st := Status{Rollout: o.Rollout, Release: release}
	end := func(state, reason, format string, args ...any) Result {
		st.State, st.Reason, st.Detail = state, reason, fmt.Sprintf(format, args...)
		a.report(ctx, st)
		return Result{State: state, Reason: reason, Detail: st.Detail}
	}
	st.State = StepVerifying
	a.report(ctx, st)
	manifest := o.Manifest
	if manifest == nil {
		if a.cfg.Source == nil {
			return end(StepFailed, "download", "no source to fetch the manifest from")
		}
		b, err := a.fetchManifest(ctx, o.Name, o.Version)
		if err != nil {
			return end(StepFailed, "download", "manifest: %v", err)
		}
		manifest = b
	}
	in := firmware.Input{Manifest: manifest, Keys: a.st.Keys, DeviceID: a.cfg.ID, Class: a.cfg.Class,
		Installed: a.st.Version, Now: a.cfg.Now(), MaxImageSize: a.cfg.MaxImageSize}
	v := firmware.Verify(in)
	if v.Manifest.Name != "" {
		st.Release = v.Manifest.Name + "@" + v.Manifest.Version.String()
	}
	if !v.OK() {
		if v.Reason == firmware.ReasonNotNewer && a.running(v.Manifest) {
			// The release already running, announced again (a retained
			// announcement after a reconnect): say so again.
			return end(StepCommitted, "", "already running")
		}
		return end(StepRejected, string(v.Reason), "%s", v.Detail)
	}
	m := v.Manifest
	if o.Manifest == nil && (m.Name != o.Name || m.Version != o.Version) {
		return end(StepRejected, string(firmware.ReasonMalformed), "announced %s, manifest is %s@%s", release, m.Name, m.Version)
	}
	if a.cfg.Source == nil {
		return end(StepFailed, "download", "no source to fetch the image from")
	}

	st.State = StepDownloading
	a.report(ctx, st)
	slot := other(a.st.Active)
	img, resumed, err := a.download(ctx, m, slot, true)
	if err == nil && resumed {
		// What the slot held before a restart may be torn: a resumed image
		// that does not match is fetched again whole before it is refused.
		in.Image = &img
		if v := firmware.Verify(in); v.Reason == firmware.ReasonHashMismatch || v.Reason == firmware.ReasonSizeMismatch {
			img, _, err = a.download(ctx, m, slot, false)
		}
	}
	if err != nil {
		return end(StepFailed, "download", "%v", err)
	}
	st.State = StepDownloaded
	a.report(ctx, st)
	in.Image = &img
	if v := firmware.Verify(in); !v.OK() {
		os.Remove(a.slotPath(slot))
		a.st.Partial = nil
		if err := a.save(); err != nil {
			a.log.Warn("state not saved", "err", err)
		}
		return end(StepRejected, string(v.Reason), "%s", v.Detail)
	}
	st.State = StepVerified
	a.report(ctx, st)
	st.State = StepInstalling
	a.report(ctx, st)
	st.State = StepInstalled
	a.report(ctx, st)

	a.st.Trial, a.st.Partial = &trial{Slot: slot, Rollout: o.Rollout, Manifest: m}, nil
	if err := a.save(); err != nil {
		a.st.Trial = nil
		return end(StepFailed, "install", "%v", err)
	}
	st.State = StepRebooting
	a.report(ctx, st)
	if a.cfg.Reboot != nil {
		if err := a.cfg.Reboot(ctx); err != nil {
			// The device did not go down: the trial stays recorded and the
			// next Boot decides.
			return end(StepFailed, "reboot", "%v", err)
		}
	}
	return a.boot(ctx)
}

// fetchManifest fetches a release's manifest, asking again, with growing
// pauses, while the edge does not hold it yet, for up to ReleaseWait.
func (a *Agent) fetchManifest(ctx context.Context, name string, v firmware.Version) ([]byte, error) {
	deadline := time.Now().Add(a.cfg.ReleaseWait)
	pause := 250 * time.Millisecond
	for {
		b, err := a.cfg.Source.Manifest(ctx, name, v)
		if !errors.Is(err, ErrNotOnEdge) || time.Now().Add(pause).After(deadline) {
			return b, err
		}
		a.log.Debug("release not on the edge yet", "release", name+"@"+v.String(), "retry_in", pause)
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		pause = min(2*pause, 15*time.Second)
	}
}

// running reports whether m is the release the device runs.
func (a *Agent) running(m firmware.Manifest) bool {
	return m.Version == a.st.Version && m.Name == a.st.Name && m.Digest() == a.st.SHA256
}

// download writes the image to the slot, hashing it and reading at most
// one byte past the manifest's size, so that an oversized image is seen
// without being stored whole. With resume, a slot that holds the start of
// the same release (recorded in the state before a download starts) is
// hashed and the download goes on from its end; resumed says it did.
func (a *Agent) download(ctx context.Context, m firmware.Manifest, slot string, resume bool) (img firmware.Image, resumed bool, err error) {
	path := a.slotPath(slot)
	h := sha256.New()
	var dst io.Writer = h
	var off int64
	var f *os.File
	if !a.cfg.DigestOnly {
		p := partial{Slot: slot, Name: m.Name, Version: m.Version, SHA256: m.Digest()}
		if resume && a.st.Partial != nil && *a.st.Partial == p {
			off = hashPrefix(path, m.Size, h)
		}
		if a.st.Partial == nil || *a.st.Partial != p {
			a.st.Partial = &p
			if err := a.save(); err != nil {
				return img, false, err
			}
		}
		if f, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o600); err != nil {
			return img, false, err
		}
		defer f.Close()
		if err := f.Truncate(off); err != nil {
			return img, false, err
		}
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			return img, false, err
		}
		dst = io.MultiWriter(f, h)
	}
	w := &limitWriter{w: dst, n: m.Size + 1, written: off}
	err = a.cfg.Source.Image(ctx, m.Name, m.Version, off, w)
	if err != nil && !errors.Is(err, errLimit) {
		return img, off > 0, err
	}
	copy(img.SHA256[:], h.Sum(nil))
	img.Size = w.written
	if f == nil {
		return img, false, writeDurable(path, fmt.Appendf(nil, "sha256 %x size %d\n", img.SHA256, img.Size))
	}
	return img, off > 0, f.Sync()
}

// hashPrefix hashes the bytes of the file at path into h and returns how
// many, or 0 (and h untouched) when the file is missing, unreadable or
// longer than size.
func hashPrefix(path string, size int64, h hash.Hash) int64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size() > size {
		return 0
	}
	n, err := io.Copy(h, f)
	if err != nil || n != fi.Size() {
		h.Reset()
		return 0
	}
	return n
}

var errLimit = errors.New("device: image longer than its manifest says")

// limitWriter takes n bytes and then fails with errLimit.
type limitWriter struct {
	w       io.Writer
	n       int64
	written int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	room := l.n - l.written
	if room <= 0 {
		return 0, errLimit
	}
	short := false
	if int64(len(p)) > room {
		p, short = p[:room], true
	}
	n, err := l.w.Write(p)
	l.written += int64(n)
	if err == nil && short {
		err = errLimit
	}
	return n, err
}

// Boot finishes an update interrupted by a reboot: when a trial slot is
// recorded, it runs the health check and commits or rolls back. Call it
// once at start (Run does). It reports the running version to the shadow.
func (a *Agent) Boot(ctx context.Context) Result {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.st.Trial == nil {
		a.reportShadow(ctx)
		return Result{State: ""}
	}
	return a.boot(ctx)
}

func (a *Agent) boot(ctx context.Context) Result {
	t := a.st.Trial
	st := Status{Rollout: t.Rollout, Release: t.Manifest.Name + "@" + t.Manifest.Version.String(), State: StepHealthCheck}
	a.report(ctx, st)
	var herr error
	if a.cfg.Health != nil {
		herr = a.cfg.Health(ctx, a.slotPath(t.Slot), t.Manifest)
	}
	prev := a.st
	a.st.Trial = nil
	if herr == nil {
		a.st.Active, a.st.Version, a.st.Name, a.st.SHA256 = t.Slot, t.Manifest.Version, t.Manifest.Name, t.Manifest.Digest()
	}
	if err := a.save(); err != nil {
		a.st = prev
		st.State, st.Reason, st.Detail = StepFailed, "install", err.Error()
		a.report(ctx, st)
		return Result{State: StepFailed, Reason: "install", Detail: err.Error()}
	}
	if herr != nil {
		st.State, st.Reason, st.Detail = StepRolledBack, "health_check", herr.Error()
	} else {
		st.State = StepCommitted
	}
	a.report(ctx, st)
	a.reportShadow(ctx)
	return Result{State: st.State, Reason: st.Reason, Detail: st.Detail}
}

// ApplyKeySet checks a key-set document against the pinned set and pins
// the new set when it holds (a threshold of the pinned keys and of its
// own signed it, at a higher version). Keys it leaves out are refused
// from then on.
func (a *Agent) ApplyKeySet(ctx context.Context, doc []byte) Result {
	a.mu.Lock()
	defer a.mu.Unlock()
	next, err := firmware.VerifyKeySet(doc, a.st.Keys)
	if err != nil {
		s := Status{State: StepKeySetRejected, Reason: string(firmware.ReasonKeySetRejected), Detail: err.Error(), KeySet: a.st.Keys.Version}
		a.report(ctx, s)
		return Result{State: s.State, Reason: s.Reason, Detail: s.Detail}
	}
	prev := a.st.Keys
	a.st.Keys = next
	if err := a.save(); err != nil {
		a.st.Keys = prev
		s := Status{State: StepKeySetRejected, Reason: "install", Detail: err.Error(), KeySet: prev.Version}
		a.report(ctx, s)
		return Result{State: s.State, Reason: s.Reason, Detail: s.Detail}
	}
	a.report(ctx, Status{State: StepKeySetAccepted, KeySet: next.Version})
	return Result{State: StepKeySetAccepted}
}

// MaxAnnouncementSize bounds a message the agent takes from MQTT.
const MaxAnnouncementSize = firmware.MaxManifestSize

// Handle acts on one message of the device's updates topics: an
// announcement, a manifest or a key-set document. Other topics are
// ignored (and report false).
func (a *Agent) Handle(ctx context.Context, topic string, payload []byte) (Result, bool) {
	kind, ok := a.subtopic(topic)
	if !ok {
		return Result{}, false
	}
	if len(payload) > MaxAnnouncementSize {
		st := Status{State: StepRejected, Reason: string(firmware.ReasonTooLarge), Detail: fmt.Sprintf("%s message of %d bytes, at most %d", kind, len(payload), MaxAnnouncementSize)}
		a.mu.Lock()
		a.report(ctx, st)
		a.mu.Unlock()
		return Result{State: st.State, Reason: st.Reason, Detail: st.Detail}, true
	}
	switch kind {
	case SubtopicAnnounce:
		var ann Announcement
		if err := json.Unmarshal(payload, &ann); err != nil {
			return a.refuse(ctx, "", fmt.Sprintf("announcement: %v", err)), true
		}
		if ann.Canceled {
			return Result{}, true
		}
		v, err := firmware.ParseVersion(ann.Version)
		if err != nil {
			return a.refuse(ctx, ann.Rollout, fmt.Sprintf("announcement: %v", err)), true
		}
		return a.Apply(ctx, Offer{Rollout: ann.Rollout, Name: ann.Name, Version: v}), true
	case SubtopicManifest:
		return a.Apply(ctx, Offer{Manifest: payload}), true
	case SubtopicKeySet:
		return a.ApplyKeySet(ctx, payload), true
	}
	return Result{}, false
}

func (a *Agent) refuse(ctx context.Context, rollout, detail string) Result {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := Status{Rollout: rollout, State: StepRejected, Reason: string(firmware.ReasonMalformed), Detail: detail}
	a.report(ctx, st)
	return Result{State: st.State, Reason: st.Reason, Detail: detail}
}

// subtopic returns the firmware subtopic of an updates topic addressed to
// this device, its class or all.
func (a *Agent) subtopic(topic string) (string, bool) {
	for _, p := range a.filters() {
		if rest, ok := strings.CutPrefix(topic, strings.TrimSuffix(p, "#")); ok {
			switch k := "firmware/" + rest; k {
			case SubtopicAnnounce, SubtopicManifest, SubtopicKeySet:
				return k, true
			}
		}
	}
	return "", false
}

// isFirmware reports whether topic carries a firmware message for the
// agent (Handle acts on it).
func (a *Agent) isFirmware(topic string) bool {
	_, ok := a.subtopic(topic)
	return ok
}

// filters are the MQTT subscriptions of the agent.
func (a *Agent) filters() []string {
	return []string{
		"updates/device/" + a.cfg.ID + "/firmware/#",
		"updates/class/" + a.cfg.Class + "/firmware/#",
		"updates/all/firmware/#",
	}
}
