// Package signed signs and verifies Weft's signed artifacts: a COSE_Sign1
// (RFC 9052) Ed25519 signature over a CBOR payload, with the signing key's
// id and the payload's content type in the protected header, so that one
// kind of document never passes for another. Firmware manifests, key-set
// documents and model manifests are all made and checked here; what the
// payload means and which keys are pinned belongs to their packages
// (firmware, models).
//
// Keys are Ed25519. A key is named by KeyID, the first 8 bytes of the
// SHA-256 of its raw public key in hex; private keys are stored as PKCS#8
// PEM, public keys as JSON {"id","public_key"} (Key).
package signed

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"github.com/veraison/go-cose"
)

// MaxKeyIDLen bounds the key id of a protected header.
const MaxKeyIDLen = 128

// KeyID names a public key: the first 8 bytes of the SHA-256 of the raw
// Ed25519 public key, in hex (16 characters).
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// Key is one trusted signing key.
type Key struct {
	// ID is KeyID(Public); a key whose id does not match is refused.
	ID string `json:"id" cbor:"id"`
	// Public is the raw 32-byte Ed25519 public key (base64 in JSON).
	Public ed25519.PublicKey `json:"public_key" cbor:"public_key"`
}

// NewKey returns the Key for a public key.
func NewKey(pub ed25519.PublicKey) Key { return Key{ID: KeyID(pub), Public: pub} }

// Check reports whether the key is well formed: 32 bytes, its id matching.
func (k Key) Check() error {
	if len(k.Public) != ed25519.PublicKeySize {
		return fmt.Errorf("signed: key %q: public key of %d bytes", k.ID, len(k.Public))
	}
	if id := KeyID(k.Public); id != k.ID {
		return fmt.Errorf("signed: key %q: id does not match its public key (%s)", k.ID, id)
	}
	return nil
}

// MarshalJSON writes the public key in base64.
func (k Key) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		ID     string `json:"id"`
		Public string `json:"public_key"`
	}{k.ID, base64.StdEncoding.EncodeToString(k.Public)})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (k *Key) UnmarshalJSON(b []byte) error {
	var j struct {
		ID     string `json:"id"`
		Public string `json:"public_key"`
	}
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	pub, err := base64.StdEncoding.DecodeString(j.Public)
	if err != nil {
		return fmt.Errorf("signed: key %q: %w", j.ID, err)
	}
	*k = Key{ID: j.ID, Public: pub}
	return nil
}

// GenerateKey makes a new Ed25519 signing key.
func GenerateKey() (ed25519.PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("signed: generate key: %w", err)
	}
	return priv, nil
}

// WritePrivateKey writes priv as PKCS#8 PEM to path, mode 0600, refusing
// to overwrite a file that exists (os.ErrExist).
func WritePrivateKey(path string, priv ed25519.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return fmt.Errorf("signed: encode key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("signed: %w", err)
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		return fmt.Errorf("signed: write key: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("signed: write key: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("signed: write key: %w", err)
	}
	return nil
}

// ReadPrivateKey reads a PKCS#8 PEM Ed25519 private key.
func ReadPrivateKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("signed: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("signed: %s: no PRIVATE KEY block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("signed: %s: %w", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("signed: %s: not an Ed25519 key", path)
	}
	return priv, nil
}

// ReadPublicKey reads a Key as JSON and checks it.
func ReadPublicKey(path string) (Key, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Key{}, fmt.Errorf("signed: %w", err)
	}
	var k Key
	if err := json.Unmarshal(b, &k); err != nil {
		return Key{}, fmt.Errorf("signed: %s: %w", path, err)
	}
	if err := k.Check(); err != nil {
		return Key{}, fmt.Errorf("signed: %s: malformed key", path)
	}
	return k, nil
}

// Sign1 makes a tagged COSE_Sign1 over payload with EdDSA, the key id of
// priv and contentType in the protected header.
func Sign1(payload []byte, priv ed25519.PrivateKey, contentType string) ([]byte, error) {
	signer, err := cose.NewSigner(cose.AlgorithmEdDSA, priv)
	if err != nil {
		return nil, fmt.Errorf("signed: signer: %w", err)
	}
	hdr := cose.Headers{Protected: cose.ProtectedHeader{
		cose.HeaderLabelAlgorithm:   cose.AlgorithmEdDSA,
		cose.HeaderLabelKeyID:       []byte(KeyID(priv.Public().(ed25519.PublicKey))),
		cose.HeaderLabelContentType: contentType,
	}}
	b, err := cose.Sign1(rand.Reader, signer, hdr, payload, nil)
	if err != nil {
		return nil, fmt.Errorf("signed: sign: %w", err)
	}
	return b, nil
}

// Message is a decoded COSE_Sign1 whose signature is not yet checked.
type Message struct {
	// Sign1 is the decoded message; its payload is to be trusted only
	// after Verify.
	Sign1 cose.Sign1Message
	// KeyID is the key id of the protected header.
	KeyID string
}

// Payload is the signed payload; trust it only after Verify.
func (m *Message) Payload() []byte { return m.Sign1.Payload }

// Parse decodes a tagged COSE_Sign1 and checks its protected header:
// EdDSA, a key id, the expected content type, a payload. A message whose
// signature is empty fails with an error wrapping cose.ErrEmptySignature
// (IsUnsigned).
func Parse(b []byte, contentType string) (*Message, error) {
	var m Message
	if err := m.Sign1.UnmarshalCBOR(b); err != nil {
		return nil, fmt.Errorf("not a COSE_Sign1: %w", err)
	}
	alg, err := m.Sign1.Headers.Protected.Algorithm()
	if err != nil || alg != cose.AlgorithmEdDSA {
		return nil, fmt.Errorf("algorithm %v, want EdDSA", alg)
	}
	kid, ok := m.Sign1.Headers.Protected[cose.HeaderLabelKeyID].([]byte)
	if !ok || len(kid) == 0 || len(kid) > MaxKeyIDLen {
		return nil, fmt.Errorf("no key id in the protected header")
	}
	if ct, _ := m.Sign1.Headers.Protected[cose.HeaderLabelContentType].(string); ct != contentType {
		return nil, fmt.Errorf("content type %q, want %q", ct, contentType)
	}
	if len(m.Sign1.Payload) == 0 {
		return nil, fmt.Errorf("no payload")
	}
	m.KeyID = string(kid)
	return &m, nil
}

// IsUnsigned reports whether err from Parse says the signature is empty.
func IsUnsigned(err error) bool { return errors.Is(err, cose.ErrEmptySignature) }

// Verify checks the signature with pub.
func (m *Message) Verify(pub ed25519.PublicKey) error {
	v, err := cose.NewVerifier(cose.AlgorithmEdDSA, pub)
	if err != nil {
		return err
	}
	return m.Sign1.Verify(nil, v)
}
