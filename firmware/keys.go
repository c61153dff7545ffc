package firmware

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	sig "github.com/weft-io/weft/internal/signed"
)

// KeyID names a public key: the first 8 bytes of the SHA-256 of the raw
// Ed25519 public key, in hex (16 characters).
func KeyID(pub ed25519.PublicKey) string { return sig.KeyID(pub) }

// Key is one trusted firmware signing key: its id and raw public key
// (sig.Key).
type Key = sig.Key

// KeySet is the set of keys a device (or the core) trusts to sign firmware,
// with the version of the set and the number of its keys that must sign the
// next set.
type KeySet struct {
	// Version grows with every rotation; a device accepts only a set above
	// the one it holds.
	Version uint64 `json:"version" cbor:"version"`
	// Threshold is how many distinct keys of this set must sign the next set
	// (at least 1, at most len(Keys)).
	Threshold int `json:"threshold" cbor:"threshold"`
	// Keys are the trusted keys. A key left out of the next set is revoked:
	// its manifests are refused from then on.
	Keys []Key `json:"keys" cbor:"keys"`
}

// MaxKeys bounds a key set.
const MaxKeys = 64

// Check validates a key set on its own: keys well formed and distinct, ids
// matching, threshold within bounds.
func (s *KeySet) Check() error {
	if len(s.Keys) == 0 || len(s.Keys) > MaxKeys {
		return fmt.Errorf("firmware: key set of %d keys (1 to %d)", len(s.Keys), MaxKeys)
	}
	if s.Threshold < 1 || s.Threshold > len(s.Keys) {
		return fmt.Errorf("firmware: key set threshold %d of %d keys", s.Threshold, len(s.Keys))
	}
	seen := map[string]bool{}
	for _, k := range s.Keys {
		if len(k.Public) != ed25519.PublicKeySize {
			return fmt.Errorf("firmware: key %q: public key of %d bytes", k.ID, len(k.Public))
		}
		if id := KeyID(k.Public); id != k.ID {
			return fmt.Errorf("firmware: key %q: id does not match its public key (%s)", k.ID, id)
		}
		if seen[k.ID] {
			return fmt.Errorf("firmware: key %q listed twice", k.ID)
		}
		seen[k.ID] = true
	}
	return nil
}

// Lookup returns the key with the given id.
func (s *KeySet) Lookup(id string) (Key, bool) {
	for _, k := range s.Keys {
		if k.ID == id {
			return k, true
		}
	}
	return Key{}, false
}

// NewKey returns the Key for a public key.
func NewKey(pub ed25519.PublicKey) Key { return sig.NewKey(pub) }

// GenerateKey makes a new Ed25519 signing key.
func GenerateKey() (ed25519.PrivateKey, error) {
	priv, err := sig.GenerateKey()
	if err != nil {
		return nil, fmt.Errorf("firmware: %w", err)
	}
	return priv, nil
}

// File names written by WriteKeyPair.
const (
	PrivateKeyFile = "firmware.key"
	PublicKeyFile  = "firmware.pub.json"
)

// WriteKeyPair writes priv as PKCS#8 PEM to dir/firmware.key (mode 0600,
// refusing to overwrite) and its public Key as JSON to dir/firmware.pub.json.
func WriteKeyPair(dir string, priv ed25519.PrivateKey) (Key, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Key{}, fmt.Errorf("firmware: %w", err)
	}
	if err := sig.WritePrivateKey(filepath.Join(dir, PrivateKeyFile), priv); err != nil {
		return Key{}, fmt.Errorf("firmware: %w", err)
	}
	k := NewKey(priv.Public().(ed25519.PublicKey))
	b, _ := json.MarshalIndent(k, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, PublicKeyFile), append(b, '\n'), 0o644); err != nil {
		return Key{}, fmt.Errorf("firmware: %w", err)
	}
	return k, nil
}

// ReadPrivateKey reads a PKCS#8 PEM Ed25519 private key.
func ReadPrivateKey(path string) (ed25519.PrivateKey, error) {
	priv, err := sig.ReadPrivateKey(path)
	if err != nil {
		return nil, fmt.Errorf("firmware: %w", err)
	}
	return priv, nil
}

// ReadPublicKey reads a Key written by WriteKeyPair.
func ReadPublicKey(path string) (Key, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Key{}, fmt.Errorf("firmware: %w", err)
	}
	var k Key
	if err := json.Unmarshal(b, &k); err != nil {
		return Key{}, fmt.Errorf("firmware: %s: %w", path, err)
	}
	if len(k.Public) != ed25519.PublicKeySize || KeyID(k.Public) != k.ID {
		return Key{}, fmt.Errorf("firmware: %s: malformed key", path)
	}
	return k, nil
}

// ReadKeySet reads a JSON key set (such as certs/firmware-keys.json) and
// checks it.
func ReadKeySet(path string) (KeySet, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return KeySet{}, fmt.Errorf("firmware: %w", err)
	}
	var s KeySet
	if err := json.Unmarshal(b, &s); err != nil {
		return KeySet{}, fmt.Errorf("firmware: %s: %w", path, err)
	}
	if err := s.Check(); err != nil {
		return KeySet{}, fmt.Errorf("%w (%s)", err, path)
	}
	return s, nil
}

// WriteKeySet writes s as indented JSON.
func WriteKeySet(path string, s KeySet) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("firmware: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("firmware: %w", err)
	}
	return nil
}

// keySetPayload is the CBOR a rotation signs. Keys are sorted by id so the
// same set always gives the same bytes.
func keySetPayload(s KeySet) ([]byte, error) {
	c := s
	c.Keys = slices.Clone(s.Keys)
	slices.SortFunc(c.Keys, func(a, b Key) int { return bytes.Compare([]byte(a.ID), []byte(b.ID)) })
	return encMode.Marshal(c)
}

// keySetDoc is a signed key set: one COSE_Sign1 per signer, each over the
// same key-set payload.
type keySetDoc struct {
	Signatures [][]byte `cbor:"signatures"`
}

// SignKeySet makes the rotation document for next: one COSE_Sign1 per
// signer over the same deterministic-CBOR payload. Signers should include a
// threshold of the current set and a threshold of next.
func SignKeySet(next KeySet, signers ...ed25519.PrivateKey) ([]byte, error) {
	if err := next.Check(); err != nil {
		return nil, err
	}
	payload, err := keySetPayload(next)
	if err != nil {
		return nil, fmt.Errorf("firmware: encode key set: %w", err)
	}
	var doc keySetDoc
	for _, priv := range signers {
		sig, err := sign1(payload, priv, contentTypeKeySet)
		if err != nil {
			return nil, err
		}
		doc.Signatures = append(doc.Signatures, sig)
	}
	return encMode.Marshal(doc)
}

// ErrKeySet is wrapped by every refusal of a key-set document.
var ErrKeySet = errors.New("firmware: key set refused")

// VerifyKeySet checks a rotation document against the current set and
// returns the new set. It holds when the payload is a well-formed set whose
// version is above current's, signed by at least current.Threshold distinct
// keys of current and next.Threshold distinct keys of the new set itself.
func VerifyKeySet(doc []byte, current KeySet) (KeySet, error) {
	refuse := func(format string, args ...any) (KeySet, error) {
		return KeySet{}, fmt.Errorf("%w: %s", ErrKeySet, fmt.Sprintf(format, args...))
	}
	if len(doc) > MaxManifestSize {
		return refuse("document of %d bytes, at most %d", len(doc), MaxManifestSize)
	}
	var d keySetDoc
	if err := decMode.Unmarshal(doc, &d); err != nil {
		return refuse("malformed: %v", err)
	}
	if len(d.Signatures) == 0 || len(d.Signatures) > 2*MaxKeys {
		return refuse("%d signatures", len(d.Signatures))
	}
	var payload []byte
	var msgs []*signed
	for i, raw := range d.Signatures {
		s, err := parseSign1(raw, contentTypeKeySet)
		if err != nil {
			return refuse("signature %d: %v", i, err)
		}
		if payload == nil {
			payload = s.msg.Payload
		} else if !bytes.Equal(payload, s.msg.Payload) {
			return refuse("signature %d covers another payload", i)
		}
		msgs = append(msgs, s)
	}
	var next KeySet
	if err := decMode.Unmarshal(payload, &next); err != nil {
		return refuse("malformed payload: %v", err)
	}
	if err := next.Check(); err != nil {
		return refuse("%v", err)
	}
	if next.Version <= current.Version {
		return refuse("version %d is not above the pinned %d", next.Version, current.Version)
	}
	count := func(set KeySet) int {
		ok := map[string]bool{}
		for _, s := range msgs {
			if k, found := set.Lookup(s.kid); found && s.verify(k.Public) == nil {
				ok[s.kid] = true
			}
		}
		return len(ok)
	}
	if n := count(current); n < current.Threshold {
		return refuse("signed by %d of the pinned keys, threshold %d", n, current.Threshold)
	}
	if n := count(next); n < next.Threshold {
		return refuse("signed by %d of its own keys, threshold %d", n, next.Threshold)
	}
	return next, nil
}
