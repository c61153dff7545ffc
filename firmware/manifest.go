package firmware

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/fxamacker/cbor/v2"
)

// Version is a semantic version X.Y.Z, compared numerically field by field
// (1.10.0 is above 1.9.0). Versions are monotonic per name and class.
type Version struct {
	Major, Minor, Patch uint64
}

// ParseVersion parses "X.Y.Z" (an optional leading "v" is accepted). Each
// field is a decimal number without sign; pre-release and build suffixes are
// refused, so that the order is total and numeric.
func ParseVersion(s string) (Version, error) {
	t := strings.TrimPrefix(s, "v")
	parts := strings.Split(t, ".")
	if len(parts) != 3 {
		return Version{}, fmt.Errorf("firmware: version %q: want X.Y.Z", s)
	}
	var f [3]uint64
	for i, p := range parts {
		if p == "" || (len(p) > 1 && p[0] == '0') || strings.TrimLeft(p, "0123456789") != "" {
			return Version{}, fmt.Errorf("firmware: version %q: field %q is not a decimal number", s, p)
		}
		n, err := strconv.ParseUint(p, 10, 64)
		if err != nil {
			return Version{}, fmt.Errorf("firmware: version %q: %w", s, err)
		}
		f[i] = n
	}
	return Version{f[0], f[1], f[2]}, nil
}

// MustVersion is ParseVersion for constants in tests and tables; it panics
// on a malformed version.
func MustVersion(s string) Version {
	v, err := ParseVersion(s)
	if err != nil {
		panic(err)
	}
	return v
}

func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch) }

// IsZero reports whether v is 0.0.0, the version of a device with nothing
// installed through Weft.
func (v Version) IsZero() bool { return v == Version{} }

// Compare returns -1, 0 or +1 as v is below, equal to or above w.
func (v Version) Compare(w Version) int {
	for _, d := range [3][2]uint64{{v.Major, w.Major}, {v.Minor, w.Minor}, {v.Patch, w.Patch}} {
		switch {
		case d[0] < d[1]:
			return -1
		case d[0] > d[1]:
			return 1
		}
	}
	return 0
}

// Less reports whether v is below w.
func (v Version) Less(w Version) bool { return v.Compare(w) < 0 }

// MarshalText writes "X.Y.Z" (used by JSON and CBOR).
func (v Version) MarshalText() ([]byte, error) { return []byte(v.String()), nil }

// UnmarshalText parses "X.Y.Z".
func (v *Version) UnmarshalText(b []byte) error {
	p, err := ParseVersion(string(b))
	if err != nil {
		return err
	}
	*v = p
	return nil
}

// MarshalCBOR writes the version as a CBOR text string.
func (v Version) MarshalCBOR() ([]byte, error) { return encMode.Marshal(v.String()) }

// UnmarshalCBOR reads a CBOR text string "X.Y.Z".
func (v *Version) UnmarshalCBOR(b []byte) error {
	var s string
	if err := decMode.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("firmware: version: %w", err)
	}
	return v.UnmarshalText([]byte(s))
}

// Limits on what a manifest may hold; a payload beyond them is refused
// before any signature work.
const (
	// MaxManifestSize is the largest signed manifest (COSE bytes) accepted.
	MaxManifestSize = 64 << 10
	// MaxDevices is the longest device list a manifest may carry.
	MaxDevices = 1000
	// MaxNameLen bounds name, class, device ids and key ids.
	MaxNameLen = 128
)

// Manifest describes one firmware release. It is the payload of a signed
// manifest; the image it names travels separately.
type Manifest struct {
	// Name of the firmware (e.g. "sensor-fw"); versions are monotonic per
	// name and class.
	Name string `cbor:"name" json:"name"`
	// Version of this release.
	Version Version `cbor:"version" json:"version"`
	// Class is the hardware class the image is built for; a device of
	// another class refuses it.
	Class string `cbor:"class" json:"class"`
	// Devices, when not empty, lists the only device ids that may install
	// the release.
	Devices []string `cbor:"devices,omitempty" json:"devices,omitempty"`
	// SHA256 is the digest of the image.
	SHA256 [32]byte `cbor:"sha256" json:"sha256"`
	// Size is the image's length in bytes.
	Size int64 `cbor:"size" json:"size"`
	// NotBefore and NotAfter bound when the manifest may be installed; the
	// zero time means no bound. Encoded as Unix seconds.
	NotBefore time.Time `cbor:"-" json:"not_before,omitzero"`
	NotAfter  time.Time `cbor:"-" json:"not_after,omitzero"`
	// KeyID names the signing key (KeyID of its public key). It is also in
	// the COSE protected header, and the two must agree.
	KeyID string `cbor:"key_id" json:"key_id"`
}

// wireManifest is the CBOR payload: times as Unix seconds so that the
// encoding is deterministic and free of time-zone detail.
type wireManifest struct {
	Name      string   `cbor:"name"`
	Version   Version  `cbor:"version"`
	Class     string   `cbor:"class"`
	Devices   []string `cbor:"devices,omitempty"`
	SHA256    []byte   `cbor:"sha256"`
	Size      int64    `cbor:"size"`
	NotBefore int64    `cbor:"not_before,omitempty"`
	NotAfter  int64    `cbor:"not_after,omitempty"`
	KeyID     string   `cbor:"key_id"`
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
		MaxArrayElements:  MaxDevices,
		MaxMapPairs:       64,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
	}).DecMode(); err != nil {
		panic(err)
	}
}

// ErrMalformed is wrapped by every error about a manifest's encoding or
// fields (as opposed to its signature or its fit for a device).
var ErrMalformed = errors.New("firmware: malformed manifest")

// Check validates the fields on their own: names present and bounded, a
// positive size, a digest, NotBefore before NotAfter.
func (m *Manifest) Check() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
	}
	for _, f := range []struct{ name, v string }{{"name", m.Name}, {"class", m.Class}, {"key_id", m.KeyID}} {
		if f.v == "" || f.v == "." || f.v == ".." || len(f.v) > MaxNameLen || strings.ContainsAny(f.v, "/\x00") {
			return bad("%s %q: empty, longer than %d or holding '/'", f.name, f.v, MaxNameLen)
		}
	}
	if m.Version.IsZero() {
		return bad("version 0.0.0")
	}
	if m.Size <= 0 {
		return bad("size %d", m.Size)
	}
	if m.SHA256 == ([32]byte{}) {
		return bad("no sha256")
	}
	if len(m.Devices) > MaxDevices {
		return bad("%d devices, at most %d", len(m.Devices), MaxDevices)
	}
	for _, d := range m.Devices {
		if d == "" || len(d) > MaxNameLen {
			return bad("device id %q", d)
		}
	}
	if !m.NotBefore.IsZero() && !m.NotAfter.IsZero() && !m.NotBefore.Before(m.NotAfter) {
		return bad("not_before %s is not before not_after %s", m.NotBefore.UTC().Format(time.RFC3339), m.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// MarshalCBOR encodes the manifest as deterministic CBOR (RFC 8949 core
// deterministic encoding): the same manifest always gives the same bytes.
func (m Manifest) MarshalCBOR() ([]byte, error) {
	w := wireManifest{
		Name: m.Name, Version: m.Version, Class: m.Class, Devices: m.Devices,
		SHA256: m.SHA256[:], Size: m.Size, KeyID: m.KeyID,
	}
	if !m.NotBefore.IsZero() {
		w.NotBefore = m.NotBefore.Unix()
	}
	if !m.NotAfter.IsZero() {
		w.NotAfter = m.NotAfter.Unix()
	}
	return encMode.Marshal(w)
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
	*m = Manifest{
		Name: w.Name, Version: w.Version, Class: w.Class, Devices: w.Devices,
		Size: w.Size, KeyID: w.KeyID,
	}
	copy(m.SHA256[:], w.SHA256)
	if w.NotBefore != 0 {
		m.NotBefore = time.Unix(w.NotBefore, 0).UTC()
	}
	if w.NotAfter != 0 {
		m.NotAfter = time.Unix(w.NotAfter, 0).UTC()
	}
	return nil
}

// Digest returns the image digest as lowercase hex.
func (m *Manifest) Digest() string { return fmt.Sprintf("%x", m.SHA256) }

// ForDevice reports whether the device list allows id (an empty list allows
// every device of the class).
func (m *Manifest) ForDevice(id string) bool {
	if len(m.Devices) == 0 {
		return true
	}
	for _, d := range m.Devices {
		if d == id {
			return true
		}
	}
	return false
}

// jsonManifest is the JSON view: the digest as hex.
type jsonManifest struct {
	Name      string    `json:"name"`
	Version   Version   `json:"version"`
	Class     string    `json:"class"`
	Devices   []string  `json:"devices,omitempty"`
	SHA256    string    `json:"sha256"`
	Size      int64     `json:"size"`
	NotBefore time.Time `json:"not_before,omitzero"`
	NotAfter  time.Time `json:"not_after,omitzero"`
	KeyID     string    `json:"key_id"`
}

func (m *Manifest) toJSON() jsonManifest {
	return jsonManifest{
		Name: m.Name, Version: m.Version, Class: m.Class, Devices: m.Devices,
		SHA256: m.Digest(), Size: m.Size, NotBefore: m.NotBefore, NotAfter: m.NotAfter, KeyID: m.KeyID,
	}
}

// MarshalJSON writes the manifest with its digest in hex.
func (m Manifest) MarshalJSON() ([]byte, error) { return json.Marshal(m.toJSON()) }

// UnmarshalJSON reads what MarshalJSON writes.
func (m *Manifest) UnmarshalJSON(b []byte) error {
	var j jsonManifest
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	return m.fromJSON(j)
}

func (m *Manifest) fromJSON(j jsonManifest) error {
	d, err := hex.DecodeString(j.SHA256)
	if err != nil || len(d) != 32 {
		return fmt.Errorf("%w: sha256 %q", ErrMalformed, j.SHA256)
	}
	*m = Manifest{Name: j.Name, Version: j.Version, Class: j.Class, Devices: j.Devices,
		Size: j.Size, NotBefore: j.NotBefore, NotAfter: j.NotAfter, KeyID: j.KeyID}
	copy(m.SHA256[:], d)
	return nil
}
