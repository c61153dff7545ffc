package firmware

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	"github.com/veraison/go-cose"
	sig "github.com/weft-io/weft/internal/signed"
)

// Content types in the COSE protected header, so that a key-set document
// can never pass for a manifest or the reverse.
const (
	contentTypeManifest = "application/vnd.weft.firmware-manifest+cbor"
	contentTypeKeySet   = "application/vnd.weft.firmware-keyset+cbor"
)

// sign1 makes a tagged COSE_Sign1 over payload with EdDSA, the key id and
// the content type in the protected header (sig.Sign1).
func sign1(payload []byte, priv ed25519.PrivateKey, contentType string) ([]byte, error) {
	b, err := sig.Sign1(payload, priv, contentType)
	if err != nil {
		return nil, fmt.Errorf("firmware: %w", err)
	}
	return b, nil
}

// signed is a decoded COSE_Sign1 whose signature is not yet checked.
type signed struct {
	msg cose.Sign1Message
	kid string
}

// parseSign1 decodes a tagged COSE_Sign1 and checks its protected header:
// EdDSA, a key id, the expected content type (sig.Parse).
func parseSign1(b []byte, contentType string) (*signed, error) {
	m, err := sig.Parse(b, contentType)
	if err != nil {
		return nil, err
	}
	return &signed{msg: m.Sign1, kid: m.KeyID}, nil
}

func (s *signed) verify(pub ed25519.PublicKey) error {
	return (&sig.Message{Sign1: s.msg, KeyID: s.kid}).Verify(pub)
}

// Sign makes a signed manifest: it sets m.KeyID from priv, checks m and
// returns a COSE_Sign1 over its deterministic CBOR.
func Sign(m Manifest, priv ed25519.PrivateKey) ([]byte, error) {
	m.KeyID = KeyID(priv.Public().(ed25519.PublicKey))
	if err := m.Check(); err != nil {
		return nil, err
	}
	payload, err := m.MarshalCBOR()
	if err != nil {
		return nil, fmt.Errorf("firmware: encode manifest: %w", err)
	}
	return sign1(payload, priv, contentTypeManifest)
}

// Reason says why a manifest or image was refused. Reasons cross the
// network (device status reports, API problems): they are a stable table.
type Reason string

const (
	ReasonOK             Reason = "ok"
	ReasonTooLarge       Reason = "manifest_too_large" // manifest above MaxManifestSize
	ReasonMalformed      Reason = "malformed"          // not a COSE_Sign1, bad header or payload
	ReasonUnknownKey     Reason = "unknown_key"        // key id not in the pinned set (or revoked)
	ReasonBadSignature   Reason = "bad_signature"      // signature does not verify
	ReasonNotYetValid    Reason = "not_yet_valid"      // now before not_before
	ReasonExpired        Reason = "expired"            // now after not_after
	ReasonWrongClass     Reason = "wrong_class"        // class is not the device's
	ReasonNotForDevice   Reason = "not_for_device"     // device list without this device
	ReasonNotNewer       Reason = "not_newer"          // version not above the installed one
	ReasonImageTooLarge  Reason = "image_too_large"    // size above the device's limit
	ReasonSizeMismatch   Reason = "size_mismatch"      // image size differs from the manifest
	ReasonHashMismatch   Reason = "hash_mismatch"      // image SHA-256 differs from the manifest
	ReasonKeySetRejected Reason = "keyset_rejected"    // a key-set document was refused
)

// Image is what is known of an image: its digest and size.
type Image struct {
	SHA256 [32]byte
	Size   int64
}

// Input is everything a verification depends on; nothing else is read.
type Input struct {
	// Manifest is the signed manifest as received.
	Manifest []byte
	// Keys is the pinned key set.
	Keys KeySet
	// DeviceID and Class identify the device. Empty means no device: the
	// core checks a release for every device.
	DeviceID, Class string
	// Installed is the version running now (or, at the core, the newest
	// release of that name and class); the manifest must be above it.
	Installed Version
	// Now is the time of the decision.
	Now time.Time
	// SkipNotBefore lets a release that is not valid yet pass (the core
	// stores releases before their time; a device never sets it).
	SkipNotBefore bool
	// MaxImageSize, when positive, refuses a manifest naming a larger image.
	MaxImageSize int64
	// Image, when set, must match the manifest's digest and size.
	Image *Image
}

// Verdict is the outcome of Verify.
type Verdict struct {
	// Reason is ReasonOK when the manifest is accepted.
	Reason Reason
	// Detail explains the reason for a person.
	Detail string
	// Manifest is the decoded payload once the signature held (zero before).
	Manifest Manifest
}

// OK reports whether the manifest was accepted.
func (v Verdict) OK() bool { return v.Reason == ReasonOK }

func (v Verdict) String() string {
	if v.Detail == "" {
		return string(v.Reason)
	}
	return string(v.Reason) + ": " + v.Detail
}

// Err returns nil for an accepted verdict and a *RefusedError otherwise.
func (v Verdict) Err() error {
	if v.OK() {
		return nil
	}
	return &RefusedError{v}
}

// RefusedError is a refused verdict as an error.
type RefusedError struct{ Verdict Verdict }

func (e *RefusedError) Error() string { return "firmware: refused: " + e.Verdict.String() }

// Verify decides whether a signed manifest (and, when given, an image) may
// be installed. Checks run in a fixed order — size, encoding, key,
// signature, fields, time, class, device list, version, image — and the
// first that fails gives the reason. It is a pure function of in.
func Verify(in Input) Verdict {
	refuse := func(r Reason, format string, args ...any) Verdict {
		return Verdict{Reason: r, Detail: fmt.Sprintf(format, args...)}
	}
	if len(in.Manifest) > MaxManifestSize {
		return refuse(ReasonTooLarge, "%d bytes, at most %d", len(in.Manifest), MaxManifestSize)
	}
	s, err := parseSign1(in.Manifest, contentTypeManifest)
	if errors.Is(err, cose.ErrEmptySignature) {
		return refuse(ReasonBadSignature, "unsigned")
	}
	if err != nil {
		return refuse(ReasonMalformed, "%v", err)
	}
	key, ok := in.Keys.Lookup(s.kid)
	if !ok {
		return refuse(ReasonUnknownKey, "key %q is not pinned (set version %d)", s.kid, in.Keys.Version)
	}
	if err := s.verify(key.Public); err != nil {
		return refuse(ReasonBadSignature, "key %s: %v", s.kid, err)
	}
	var m Manifest
	if err := m.UnmarshalCBOR(s.msg.Payload); err != nil {
		return refuse(ReasonMalformed, "%v", err)
	}
	if err := m.Check(); err != nil {
		return refuse(ReasonMalformed, "%v", err)
	}
	v := func(r Reason, format string, args ...any) Verdict {
		out := refuse(r, format, args...)
		out.Manifest = m
		return out
	}
	if m.KeyID != s.kid {
		return v(ReasonMalformed, "payload key id %q differs from the header's %q", m.KeyID, s.kid)
	}
	if !in.SkipNotBefore && !m.NotBefore.IsZero() && in.Now.Before(m.NotBefore) {
		return v(ReasonNotYetValid, "valid from %s", m.NotBefore.UTC().Format(time.RFC3339))
	}
	if !m.NotAfter.IsZero() && !in.Now.Before(m.NotAfter) {
		return v(ReasonExpired, "expired at %s", m.NotAfter.UTC().Format(time.RFC3339))
	}
	if in.Class != "" && m.Class != in.Class {
		return v(ReasonWrongClass, "class %q, device is %q", m.Class, in.Class)
	}
	if in.DeviceID != "" && !m.ForDevice(in.DeviceID) {
		return v(ReasonNotForDevice, "device %q is not in the manifest's list of %d", in.DeviceID, len(m.Devices))
	}
	if m.Version.Compare(in.Installed) <= 0 {
		return v(ReasonNotNewer, "version %s is not above %s", m.Version, in.Installed)
	}
	if in.MaxImageSize > 0 && m.Size > in.MaxImageSize {
		return v(ReasonImageTooLarge, "image of %d bytes, at most %d", m.Size, in.MaxImageSize)
	}
	if in.Image != nil {
		if in.Image.Size != m.Size {
			return v(ReasonSizeMismatch, "image of %d bytes, manifest says %d", in.Image.Size, m.Size)
		}
		if in.Image.SHA256 != m.SHA256 {
			return v(ReasonHashMismatch, "image sha256 %x, manifest says %x", in.Image.SHA256, m.SHA256)
		}
	}
	return Verdict{Reason: ReasonOK, Manifest: m}
}

// Parse decodes a signed manifest's payload without checking its signature,
// for display only (`weft firmware` listings). Never decide on its result.
func Parse(b []byte) (Manifest, error) {
	if len(b) > MaxManifestSize {
		return Manifest{}, fmt.Errorf("%w: %d bytes", ErrMalformed, len(b))
	}
	s, err := parseSign1(b, contentTypeManifest)
	if err != nil {
		return Manifest{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	var m Manifest
	if err := m.UnmarshalCBOR(s.msg.Payload); err != nil {
		return Manifest{}, err
	}
	return m, nil
}
