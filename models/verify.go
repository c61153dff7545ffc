package models

import (
	"fmt"

	sig "github.com/weft-io/weft/internal/signed"
)

// Reason says why a model was refused. Reasons cross the network (edge
// status, API problems): they are a stable table.
type Reason string

const (
	ReasonOK           Reason = "ok"
	ReasonTooLarge     Reason = "manifest_too_large" // manifest above MaxManifestSize
	ReasonMalformed    Reason = "malformed"          // not a COSE_Sign1, bad header or payload
	ReasonUnsigned     Reason = "unsigned"           // a COSE_Sign1 with no signature
	ReasonUnknownKey   Reason = "unknown_key"        // key id not pinned
	ReasonBadSignature Reason = "bad_signature"      // signature does not verify
	ReasonWrongClass   Reason = "wrong_class"        // class is not the one asked for
	ReasonNotNewer     Reason = "not_newer"          // version not above the one held
	ReasonSizeMismatch Reason = "size_mismatch"      // parameters' size differs from the manifest
	ReasonHashMismatch Reason = "hash_mismatch"      // parameters' SHA-256 differs (tampered)
	// An external model's executable is not the one signed for: missing,
	// another size or another SHA-256 (tampered).
	ReasonExecSizeMismatch Reason = "exec_size_mismatch"
	ReasonExecHashMismatch Reason = "exec_hash_mismatch"
	// ReasonUnsupported: a kind this node does not run (an external model
	// where no program may be started).
	ReasonUnsupported Reason = "unsupported"
)

// Params is what is known of a parameters file: its digest and size.
type Params struct {
	SHA256 [32]byte
	Size   int64
}

// Input is everything a verification depends on; nothing else is read.
type Input struct {
	// Manifest is the signed manifest as received.
	Manifest []byte
	// Keys are the pinned model keys.
	Keys []sig.Key
	// Class, when set, must be the manifest's.
	Class string
	// Newest is the newest version of the name already accepted (0:
	// none); the manifest's must be above it. Set AllowSame to accept
	// that version itself again (an edge reloading what it runs).
	Newest    uint64
	AllowSame bool
	// Params, when set, must match the manifest's digest and size.
	Params *Params
	// Exec, when set, is the executable beside the manifest (a zero
	// Params when there is none): an external model's must match the
	// manifest's exec digest and size; any other kind must have none.
	Exec *Params
}

// Verdict is the outcome of Verify.
type Verdict struct {
	// Reason is ReasonOK when the model is accepted.
	Reason Reason
	// Detail explains the reason for a person.
	Detail string
	// Manifest is the decoded payload once the signature held.
	Manifest Manifest
}

// OK reports whether the model was accepted.
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

func (e *RefusedError) Error() string { return "models: refused: " + e.Verdict.String() }

// Verify decides whether a signed model manifest (and, when given, its
// parameters) may be used. Checks run in a fixed order — size, encoding,
// key, signature, fields, class, version, parameters, executable — and
// the first that
// fails gives the reason. It is a pure function of in.
func Verify(in Input) Verdict {
	refuse := func(r Reason, format string, args ...any) Verdict {
		return Verdict{Reason: r, Detail: fmt.Sprintf(format, args...)}
	}
	if len(in.Manifest) > MaxManifestSize {
		return refuse(ReasonTooLarge, "%d bytes, at most %d", len(in.Manifest), MaxManifestSize)
	}
	s, err := sig.Parse(in.Manifest, contentType)
	if sig.IsUnsigned(err) {
		return refuse(ReasonUnsigned, "no signature")
	}
	if err != nil {
		return refuse(ReasonMalformed, "%v", err)
	}
	var key *sig.Key
	for i := range in.Keys {
		if in.Keys[i].ID == s.KeyID {
			key = &in.Keys[i]
			break
		}
	}
	if key == nil {
		return refuse(ReasonUnknownKey, "key %q is not pinned", s.KeyID)
	}
	if err := s.Verify(key.Public); err != nil {
		return refuse(ReasonBadSignature, "key %s: %v", s.KeyID, err)
	}
	var m Manifest
	if err := m.UnmarshalCBOR(s.Payload()); err != nil {
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
	if m.KeyID != s.KeyID {
		return v(ReasonMalformed, "payload key id %q differs from the header's %q", m.KeyID, s.KeyID)
	}
	if in.Class != "" && m.Class != in.Class {
		return v(ReasonWrongClass, "class %q, want %q", m.Class, in.Class)
	}
	if m.Version < in.Newest || (m.Version == in.Newest && !in.AllowSame) {
		return v(ReasonNotNewer, "version %d is not above %d", m.Version, in.Newest)
	}
	if in.Params != nil {
		if in.Params.Size != m.Size {
			return v(ReasonSizeMismatch, "parameters of %d bytes, manifest says %d", in.Params.Size, m.Size)
		}
		if in.Params.SHA256 != m.SHA256 {
			return v(ReasonHashMismatch, "parameters sha256 %x, manifest says %x", in.Params.SHA256, m.SHA256)
		}
	}
	if in.Exec != nil && m.Kind == KindExternal {
		if in.Exec.Size != m.ExecSize {
			return v(ReasonExecSizeMismatch, "executable of %d bytes, manifest says %d", in.Exec.Size, m.ExecSize)
		}
		if in.Exec.SHA256 != m.ExecSHA256 {
			return v(ReasonExecHashMismatch, "executable sha256 %x, manifest says %x", in.Exec.SHA256, m.ExecSHA256)
		}
	}
	return Verdict{Reason: ReasonOK, Manifest: m}
}
