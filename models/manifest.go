package models

import (
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/fxamacker/cbor/v2"
	sig "github.com/weft-io/weft/internal/signed"
)

// Kinds of model: what the parameters file holds and what scores with it.
const (
	// KindChannel is the edge's channel detectors (anomaly.Channel) with
	// parameters per channel (anomaly.Config).
	KindChannel = "channel"
	// KindVector is the k-means vector detector (anomaly.Vector) over the
	// manifest's channels taken together, with its trained centres.
	KindVector = "vector"
	// KindExternal is a program in any language that the edge runs as a
	// child process and asks for scores over a line protocol
	// (models/external); its executable's SHA-256 and size are in the
	// manifest beside the parameters'.
	KindExternal = "external"
)

// Limits on what a manifest may hold.
const (
	// MaxManifestSize is the largest signed manifest accepted.
	MaxManifestSize = 64 << 10
	// MaxNameLen bounds names, class, channels and key ids.
	MaxNameLen = 128
	// MaxChannels bounds a model's input channels.
	MaxChannels = 64
	// MaxParamsSize is the largest parameters file accepted.
	MaxParamsSize = 4 << 20
	// MaxExecSize is the largest executable of an external model.
	MaxExecSize = 64 << 20
)

// Summary describes one input channel's training data: what drift is
// measured against.
type Summary struct {
	Channel string  `cbor:"channel" json:"channel"`
	Count   int64   `cbor:"count" json:"count"`
	Min     float64 `cbor:"min" json:"min"`
	Max     float64 `cbor:"max" json:"max"`
	Mean    float64 `cbor:"mean" json:"mean"`
	P01     float64 `cbor:"p01" json:"p01"`
	P50     float64 `cbor:"p50" json:"p50"`
	P99     float64 `cbor:"p99" json:"p99"`
}

// Training says what a model was fitted on.
type Training struct {
	// From and To bound the readings' times.
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	// Devices and Readings count what was read.
	Devices  int   `json:"devices"`
	Readings int64 `json:"readings"`
	// Summary has one entry per input channel.
	Summary []Summary `json:"summary,omitempty"`
	// Scores are the quantiles of the model's scores over the training
	// window, at 0, 5, ..., 100% (ScoreQuantiles): what the drift of its
	// scores is measured against. Empty in models made before.
	Scores []float64 `json:"scores,omitempty"`
}

// Manifest describes one version of a model. It is the payload of a
// signed manifest; the parameters file travels beside it.
type Manifest struct {
	// Name of the model; versions grow per name.
	Name string `json:"name"`
	// Version of this model: 1, 2, ... per name.
	Version uint64 `json:"version"`
	// Kind is KindChannel or KindVector.
	Kind string `json:"kind"`
	// Class is the device class the model scores; an edge loads it only
	// for devices of that class.
	Class string `json:"class"`
	// Channels are the input channels (telemetry fields) it scores.
	Channels []string `json:"channels"`
	// SHA256 and Size are the parameters file's digest and length.
	SHA256 [32]byte `json:"-"`
	Size   int64    `json:"size"`
	// ExecSHA256 and ExecSize are, for KindExternal only, the digest and
	// length of the executable (ExecFile) the edge runs: it refuses to
	// run any other bytes.
	ExecSHA256 [32]byte `json:"-"`
	ExecSize   int64    `json:"exec_size,omitempty"`
	// Training is the window and the summary of the training data.
	Training Training `json:"training"`
	// Created is when the model was made.
	Created time.Time `json:"created_at"`
	// KeyID names the signing key; it is also in the COSE protected
	// header, and the two must agree.
	KeyID string `json:"key_id"`
}

// contentType is the COSE content type of a model manifest, so that it
// never passes for a firmware manifest or the reverse.
const contentType = "application/vnd.weft.model-manifest+cbor"

// wireManifest is the CBOR payload: times as Unix seconds, so that the
// encoding is deterministic.
type wireManifest struct {
	Name      string    `cbor:"name"`
	Version   uint64    `cbor:"version"`
	Kind      string    `cbor:"kind"`
	Class     string    `cbor:"class"`
	Channels  []string  `cbor:"channels"`
	SHA256    []byte    `cbor:"sha256"`
	Size      int64     `cbor:"size"`
	ExecSHA   []byte    `cbor:"exec_sha256,omitempty"`
	ExecSize  int64     `cbor:"exec_size,omitempty"`
	From      int64     `cbor:"train_from"`
	To        int64     `cbor:"train_to"`
	Devices   int       `cbor:"train_devices"`
	Readings  int64     `cbor:"train_readings"`
	Summary   []Summary `cbor:"train_summary,omitempty"`
	Scores    []float64 `cbor:"train_scores,omitempty"`
	CreatedAt int64     `cbor:"created_at"`
	KeyID     string    `cbor:"key_id"`
}

var (
	encMode cbor.EncMode
	decMode cbor.DecMode
)

func init() {
	var err error
	if encMode, err = cbor.CoreDetEncOptions().EncMode(); err != nil {
		panic(err)
	}
	if decMode, err = (cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
		MaxNestedLevels:   8,
		MaxArrayElements:  MaxChannels,
		MaxMapPairs:       64,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
	}).DecMode(); err != nil {
		panic(err)
	}
}

// ErrMalformed is wrapped by every error about a manifest's encoding or
// fields.
var ErrMalformed = errors.New("models: malformed manifest")

// ValidName reports whether s may be a model name, class, channel or key
// id: not empty, at most MaxNameLen bytes, no '/', '@' or NUL, not "." or "..".
func ValidName(s string) bool {
	return s != "" && s != "." && s != ".." && len(s) <= MaxNameLen && !strings.ContainsAny(s, "/@\x00")
}

// Check validates the fields on their own.
func (m *Manifest) Check() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
	}
	for _, f := range []struct{ name, v string }{{"name", m.Name}, {"class", m.Class}, {"key_id", m.KeyID}} {
		if !ValidName(f.v) {
			return bad("%s %q: empty, longer than %d or holding '/' or '@'", f.name, f.v, MaxNameLen)
		}
	}
	if m.Version == 0 {
		return bad("version 0")
	}
	switch m.Kind {
	case KindChannel, KindVector:
		if m.ExecSize != 0 || m.ExecSHA256 != ([32]byte{}) {
			return bad("an executable in a %s model", m.Kind)
		}
	case KindExternal:
		if m.ExecSize <= 0 || m.ExecSize > MaxExecSize {
			return bad("executable of %d bytes (1 to %d)", m.ExecSize, MaxExecSize)
		}
		if m.ExecSHA256 == ([32]byte{}) {
			return bad("no exec_sha256")
		}
	default:
		return bad("kind %q", m.Kind)
	}
	if len(m.Channels) == 0 || len(m.Channels) > MaxChannels {
		return bad("%d channels (1 to %d)", len(m.Channels), MaxChannels)
	}
	seen := map[string]bool{}
	for _, c := range m.Channels {
		if c == "" || len(c) > MaxNameLen || seen[c] {
			return bad("channel %q empty, too long or listed twice", c)
		}
		seen[c] = true
	}
	if m.Size <= 0 || m.Size > MaxParamsSize {
		return bad("parameters of %d bytes (1 to %d)", m.Size, MaxParamsSize)
	}
	if m.SHA256 == ([32]byte{}) {
		return bad("no sha256")
	}
	if len(m.Training.Summary) > MaxChannels {
		return bad("%d channel summaries", len(m.Training.Summary))
	}
	if n := len(m.Training.Scores); n != 0 && n != ScoreQuantiles {
		return bad("%d score quantiles, want %d", n, ScoreQuantiles)
	}
	for i, q := range m.Training.Scores {
		if garbage(q) || i > 0 && q < m.Training.Scores[i-1] {
			return bad("score quantiles not rising within [0, 1]")
		}
	}
	return nil
}

// MarshalCBOR encodes the manifest as deterministic CBOR.
func (m Manifest) MarshalCBOR() ([]byte, error) {
	var execSHA []byte
	if m.ExecSHA256 != ([32]byte{}) {
		execSHA = m.ExecSHA256[:]
	}
	return encMode.Marshal(wireManifest{ExecSHA: execSHA, ExecSize: m.ExecSize,
		Name: m.Name, Version: m.Version, Kind: m.Kind, Class: m.Class, Channels: m.Channels,
		SHA256: m.SHA256[:], Size: m.Size, From: unix(m.Training.From), To: unix(m.Training.To),
		Devices: m.Training.Devices, Readings: m.Training.Readings, Summary: m.Training.Summary, Scores: m.Training.Scores,
		CreatedAt: unix(m.Created), KeyID: m.KeyID,
	})
}

// UnmarshalCBOR decodes a manifest strictly: unknown or duplicate fields,
// indefinite lengths and tags are refused. It does not run Check.
func (m *Manifest) UnmarshalCBOR(b []byte) error {
	var w wireManifest
	if err := decMode.Unmarshal(b, &w); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if len(w.SHA256) != 32 {
		return fmt.Errorf("%w: sha256 of %d bytes", ErrMalformed, len(w.SHA256))
	}
	if len(w.ExecSHA) != 0 && len(w.ExecSHA) != 32 {
		return fmt.Errorf("%w: exec_sha256 of %d bytes", ErrMalformed, len(w.ExecSHA))
	}
	*m = Manifest{Name: w.Name, Version: w.Version, Kind: w.Kind, Class: w.Class, Channels: w.Channels,
		Size: w.Size, Training: Training{From: fromUnix(w.From), To: fromUnix(w.To), Devices: w.Devices,
			Readings: w.Readings, Summary: w.Summary, Scores: w.Scores}, Created: fromUnix(w.CreatedAt), KeyID: w.KeyID}
	copy(m.SHA256[:], w.SHA256)
	copy(m.ExecSHA256[:], w.ExecSHA)
	m.ExecSize = w.ExecSize
	return nil
}

func unix(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

func fromUnix(s int64) time.Time {
	if s == 0 {
		return time.Time{}
	}
	return time.Unix(s, 0).UTC()
}

// Digest returns the parameters' digest as lowercase hex.
func (m *Manifest) Digest() string { return hex.EncodeToString(m.SHA256[:]) }

// Ref is NAME@VERSION.
func (m *Manifest) Ref() string { return Ref{m.Name, m.Version}.String() }

// ExecDigest returns the executable's digest as lowercase hex ("" when
// the model has none).
func (m *Manifest) ExecDigest() string {
	if m.ExecSHA256 == ([32]byte{}) {
		return ""
	}
	return hex.EncodeToString(m.ExecSHA256[:])
}

// MarshalJSON writes the manifest with its digests in hex.
func (m Manifest) MarshalJSON() ([]byte, error) {
	type plain Manifest
	return json.Marshal(struct {
		plain
		SHA256     string `json:"sha256"`
		ExecSHA256 string `json:"exec_sha256,omitempty"`
	}{plain(m), m.Digest(), m.ExecDigest()})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (m *Manifest) UnmarshalJSON(b []byte) error {
	type plain Manifest
	var j struct {
		plain
		SHA256     string `json:"sha256"`
		ExecSHA256 string `json:"exec_sha256"`
	}
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	d, err := hex.DecodeString(j.SHA256)
	if err != nil || len(d) != 32 {
		return fmt.Errorf("%w: sha256 %q", ErrMalformed, j.SHA256)
	}
	*m = Manifest(j.plain)
	copy(m.SHA256[:], d)
	if j.ExecSHA256 != "" {
		e, err := hex.DecodeString(j.ExecSHA256)
		if err != nil || len(e) != 32 {
			return fmt.Errorf("%w: exec_sha256 %q", ErrMalformed, j.ExecSHA256)
		}
		copy(m.ExecSHA256[:], e)
	}
	return nil
}

// Ref names one version of a model: NAME@VERSION.
type Ref struct {
	Name    string
	Version uint64
}

func (r Ref) String() string { return r.Name + "@" + strconv.FormatUint(r.Version, 10) }

// ParseRef parses NAME@VERSION (VERSION a positive decimal number).
func ParseRef(s string) (Ref, error) {
	name, v, ok := strings.Cut(s, "@")
	if !ok || !ValidName(name) {
		return Ref{}, fmt.Errorf("models: %q: want NAME@VERSION", s)
	}
	n, err := ParseVersion(v)
	if err != nil {
		return Ref{}, fmt.Errorf("models: %q: %w", s, err)
	}
	return Ref{name, n}, nil
}

// ParseVersion parses a version: a positive decimal number.
func ParseVersion(s string) (uint64, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == 0 || (len(s) > 1 && s[0] == '0') {
		return 0, fmt.Errorf("version %q: want a positive decimal number", s)
	}
	return n, nil
}

// Sign makes a signed manifest: it sets m.KeyID from priv, checks m and
// returns a COSE_Sign1 over its deterministic CBOR.
func Sign(m Manifest, priv ed25519.PrivateKey) ([]byte, error) {
	m.KeyID = sig.KeyID(priv.Public().(ed25519.PublicKey))
	if err := m.Check(); err != nil {
		return nil, err
	}
	payload, err := m.MarshalCBOR()
	if err != nil {
		return nil, fmt.Errorf("models: encode manifest: %w", err)
	}
	b, err := sig.Sign1(payload, priv, contentType)
	if err != nil {
		return nil, fmt.Errorf("models: %w", err)
	}
	return b, nil
}

// Parse decodes a signed manifest's payload without checking its
// signature, for display only. Never decide on its result.
func Parse(b []byte) (Manifest, error) {
	if len(b) > MaxManifestSize {
		return Manifest{}, fmt.Errorf("%w: %d bytes", ErrMalformed, len(b))
	}
	s, err := sig.Parse(b, contentType)
	if err != nil {
		return Manifest{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	var m Manifest
	if err := m.UnmarshalCBOR(s.Payload()); err != nil {
		return Manifest{}, err
	}
	return m, nil
}
