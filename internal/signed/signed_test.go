package signed

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func key(n byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{n}, ed25519.SeedSize))
}

const ct = "application/vnd.weft.test+cbor"

func TestSignParseVerify(t *testing.T) {
	k, other := key(1), key(2)
	b, err := Sign1([]byte{0xa0}, k, ct)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Parse(b, ct)
	if err != nil {
		t.Fatal(err)
	}
	if m.KeyID != KeyID(k.Public().(ed25519.PublicKey)) {
		t.Fatalf("key id %q", m.KeyID)
	}
	if !bytes.Equal(m.Payload(), []byte{0xa0}) {
		t.Fatalf("payload %x", m.Payload())
	}
	if err := m.Verify(k.Public().(ed25519.PublicKey)); err != nil {
		t.Fatalf("own key: %v", err)
	}
	if err := m.Verify(other.Public().(ed25519.PublicKey)); err == nil {
		t.Fatal("another key verified the signature")
	}
	if _, err := Parse(b, "application/other"); err == nil {
		t.Fatal("another content type parsed")
	}
	tampered := bytes.Clone(b)
	tampered[len(tampered)-1] ^= 1
	if m, err := Parse(tampered, ct); err != nil || m.Verify(k.Public().(ed25519.PublicKey)) == nil {
		t.Fatalf("tampered signature verified (parse err %v)", err)
	}
	unsigned := append(bytes.Clone(b[:len(b)-66]), 0x40)
	if _, err := Parse(unsigned, ct); !IsUnsigned(err) {
		t.Fatalf("unsigned: %v", err)
	}
}

func TestKeyFiles(t *testing.T) {
	dir := t.TempDir()
	k := key(3)
	path := filepath.Join(dir, "k.key")
	if err := WritePrivateKey(path, k); err != nil {
		t.Fatal(err)
	}
	if err := WritePrivateKey(path, k); !errors.Is(err, os.ErrExist) {
		t.Fatalf("overwrote a key: %v", err)
	}
	got, err := ReadPrivateKey(path)
	if err != nil || !got.Equal(k) {
		t.Fatalf("read %v, %v", got, err)
	}
	pub := NewKey(k.Public().(ed25519.PublicKey))
	if err := pub.Check(); err != nil {
		t.Fatal(err)
	}
	pub.ID = "0000000000000000"
	if pub.Check() == nil {
		t.Fatal("a key with another id checked")
	}
}
