package firmware

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var updateCorpus = flag.Bool("update-corpus", false, "rewrite the fuzz seed corpus under testdata/fuzz")

// testKey is a deterministic key, so that signed seeds in testdata stay valid.
func testKey(n byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{n}, ed25519.SeedSize))
}

func pub(priv ed25519.PrivateKey) ed25519.PublicKey { return priv.Public().(ed25519.PublicKey) }

var (
	k1, k2, k3, kOut = testKey(1), testKey(2), testKey(3), testKey(9)
	pinned           = KeySet{Version: 1, Threshold: 2, Keys: []Key{NewKey(pub(k1)), NewKey(pub(k2))}}
	now              = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	image            = []byte("firmware image v1.2.0 for thermo")
	imageSum         = sha256.Sum256(image)
)

func baseManifest() Manifest {
	return Manifest{
		Name: "sensor-fw", Version: MustVersion("1.2.0"), Class: "thermo",
		SHA256: imageSum, Size: int64(len(image)),
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(30 * 24 * time.Hour),
	}
}

func mustSign(t testing.TB, m Manifest, k ed25519.PrivateKey) []byte {
	t.Helper()
	b, err := Sign(m, k)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func baseInput(manifest []byte) Input {
	return Input{
		Manifest: manifest, Keys: pinned, DeviceID: "dev-a", Class: "thermo",
		Installed: MustVersion("1.1.0"), Now: now, MaxImageSize: 1 << 20,
		Image: &Image{SHA256: imageSum, Size: int64(len(image))},
	}
}

type verifyCase struct {
	name   string
	input  func(t testing.TB) Input
	reason Reason
}

func with(m func(*Manifest), k ed25519.PrivateKey, in func(*Input)) func(t testing.TB) Input {
	return func(t testing.TB) Input {
		mf := baseManifest()
		if m != nil {
			m(&mf)
		}
		i := baseInput(mustSign(t, mf, k))
		if in != nil {
			in(&i)
		}
		return i
	}
}

func raw(b []byte) func(testing.TB) Input {
	return func(testing.TB) Input { return baseInput(b) }
}

// unsignedManifest is a COSE_Sign1 with the right header and an empty
// signature.
func unsignedManifest(t testing.TB) []byte {
	b := mustSign(t, baseManifest(), k1)
	var s signed
	if err := s.msg.UnmarshalCBOR(b); err != nil {
		t.Fatal(err)
	}
	s.msg.Signature = nil
	out, err := s.msg.MarshalCBOR()
	if err != nil {
		// go-cose refuses to encode an empty signature: splice the bstr.
		i := bytes.LastIndex(b, append([]byte{0x58, 0x40}, b[len(b)-64:]...))
		return append(append([]byte{}, b[:i]...), 0x40)
	}
	return out
}

// verifyCases is the attack matrix at the level of the pure decision; the
// device agent's tests run the same attacks end to end.
var verifyCases = []verifyCase{
	{"valid", with(nil, k1, nil), ReasonOK},
	{"valid second key", with(nil, k2, nil), ReasonOK},
	{"valid without image yet", with(nil, k1, func(i *Input) { i.Image = nil }), ReasonOK},
	{"valid for listed device", with(func(m *Manifest) { m.Devices = []string{"dev-b", "dev-a"} }, k1, nil), ReasonOK},
	{"core check without device", with(func(m *Manifest) { m.NotBefore = now.Add(time.Hour) }, k1, func(i *Input) {
		i.DeviceID, i.Class, i.SkipNotBefore = "", "", true
	}), ReasonOK},
	{"unsigned", func(t testing.TB) Input { return baseInput(unsignedManifest(t)) }, ReasonBadSignature},
	{"unknown key", with(nil, k3, nil), ReasonUnknownKey},
	{"key removed by rotation", with(nil, k2, func(i *Input) {
		i.Keys = KeySet{Version: 2, Threshold: 1, Keys: []Key{NewKey(pub(k1))}}
	}), ReasonUnknownKey},
	{"signature by another key under a pinned id", func(t testing.TB) Input {
		// k3 signs but claims k1's id.
		mf := baseManifest()
		mf.KeyID = KeyID(pub(k1))
		payload, _ := mf.MarshalCBOR()
		b := forgeKid(t, payload, k3, KeyID(pub(k1)))
		return baseInput(b)
	}, ReasonBadSignature},
	{"mix and match image", with(nil, k1, func(i *Input) {
		other := sha256.Sum256([]byte("another image"))
		i.Image = &Image{SHA256: other, Size: int64(len(image))}
	}), ReasonHashMismatch},
	{"rollback replay", with(func(m *Manifest) { m.Version = MustVersion("1.0.9") }, k1, nil), ReasonNotNewer},
	{"same version replay", with(func(m *Manifest) { m.Version = MustVersion("1.1.0") }, k1, nil), ReasonNotNewer},
	{"numeric compare", with(func(m *Manifest) { m.Version = MustVersion("1.10.0") }, k1, func(i *Input) {
		i.Installed = MustVersion("1.9.0")
	}), ReasonOK},
	{"expired", with(nil, k1, func(i *Input) { i.Now = now.Add(31 * 24 * time.Hour) }), ReasonExpired},
	{"not yet valid", with(nil, k1, func(i *Input) { i.Now = now.Add(-2 * time.Hour) }), ReasonNotYetValid},
	{"wrong class", with(func(m *Manifest) { m.Class = "valve" }, k1, nil), ReasonWrongClass},
	{"manifest for device B sent to A", with(func(m *Manifest) { m.Devices = []string{"dev-b"} }, k1, nil), ReasonNotForDevice},
	{"tampered image", with(nil, k1, func(i *Input) {
		bad := bytes.Clone(image)
		bad[0] ^= 1
		i.Image = &Image{SHA256: sha256.Sum256(bad), Size: int64(len(bad))}
	}), ReasonHashMismatch},
	{"truncated image", with(nil, k1, func(i *Input) {
		i.Image = &Image{SHA256: sha256.Sum256(image[:10]), Size: 10}
	}), ReasonSizeMismatch},
	{"oversized image", with(nil, k1, func(i *Input) {
		big := append(bytes.Clone(image), 0)
		i.Image = &Image{SHA256: sha256.Sum256(big), Size: int64(len(big))}
	}), ReasonSizeMismatch},
	{"image above the device limit", with(func(m *Manifest) { m.Size = 2 << 20 }, k1, func(i *Input) { i.Image = nil }), ReasonImageTooLarge},
	{"malformed cbor", raw([]byte{0xd2, 0x84, 0xff, 0x00}), ReasonMalformed},
	{"not cbor", raw([]byte("hello")), ReasonMalformed},
	{"empty", raw(nil), ReasonMalformed},
	{"10 MiB manifest", raw(bytes.Repeat([]byte{0xd2}, 10<<20)), ReasonTooLarge},
	{"key set document as manifest", func(t testing.TB) Input {
		doc, err := SignKeySet(pinned, k1, k2)
		if err != nil {
			t.Fatal(err)
		}
		var d keySetDoc
		if err := decMode.Unmarshal(doc, &d); err != nil {
			t.Fatal(err)
		}
		return baseInput(d.Signatures[0])
	}, ReasonMalformed},
	{"bad field: zero size", with(func(m *Manifest) { m.Size = 0 }, k1, nil), ReasonMalformed},
}

// Sign refuses a zero size, so that case is signed by hand.
func init() {
	for i, c := range verifyCases {
		if c.name == "bad field: zero size" {
			verifyCases[i].input = func(t testing.TB) Input {
				mf := baseManifest()
				mf.Size = 0
				mf.KeyID = KeyID(pub(k1))
				payload, _ := mf.MarshalCBOR()
				b, err := sign1(payload, k1, contentTypeManifest)
				if err != nil {
					t.Fatal(err)
				}
				return baseInput(b)
			}
		}
	}
}

func forgeKid(t testing.TB, payload []byte, signer ed25519.PrivateKey, kid string) []byte {
	t.Helper()
	b, err := sign1(payload, signer, contentTypeManifest)
	if err != nil {
		t.Fatal(err)
	}
	real := []byte(KeyID(pub(signer)))
	// The key id sits in the protected header; swap it (same length) to
	// claim another key. The signature then covers other bytes.
	return bytes.Replace(b, real, []byte(kid), 1)
}

func TestVerify(t *testing.T) {
	for _, c := range verifyCases {
		t.Run(c.name, func(t *testing.T) {
			in := c.input(t)
			got := Verify(in)
			if got.Reason != c.reason {
				t.Fatalf("Verify = %v, want %s", got, c.reason)
			}
			if got.OK() != (got.Err() == nil) {
				t.Fatalf("OK and Err disagree: %v", got)
			}
			if got.OK() && got.Manifest.Name != "sensor-fw" {
				t.Fatalf("accepted manifest %+v", got.Manifest)
			}
		})
	}
}

func TestSignKeepsKeyID(t *testing.T) {
	b := mustSign(t, baseManifest(), k1)
	m, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if m.KeyID != KeyID(pub(k1)) {
		t.Fatalf("key id %q", m.KeyID)
	}
	again := mustSign(t, baseManifest(), k1)
	if !bytes.Equal(b, again) {
		t.Fatal("signing the same manifest twice gave different bytes (Ed25519 and deterministic CBOR should not)")
	}
}

// FuzzVerifyManifest feeds arbitrary manifest bytes to Verify: it must never
// panic, and whatever it accepts must satisfy every rule.
func FuzzVerifyManifest(f *testing.F) {
	for _, c := range verifyCases {
		in := c.input(f)
		if len(in.Manifest) <= MaxManifestSize {
			f.Add(in.Manifest)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		in := baseInput(b)
		v := Verify(in)
		if !v.OK() {
			if v.Reason == "" {
				t.Fatal("refusal without a reason")
			}
			return
		}
		m := v.Manifest
		if _, ok := pinned.Lookup(m.KeyID); !ok {
			t.Fatalf("accepted unknown key %q", m.KeyID)
		}
		if m.Class != in.Class || !m.ForDevice(in.DeviceID) || !in.Installed.Less(m.Version) ||
			m.SHA256 != in.Image.SHA256 || m.Size != in.Image.Size || m.Check() != nil {
			t.Fatalf("accepted %+v", m)
		}
		if !m.NotAfter.IsZero() && !in.Now.Before(m.NotAfter) {
			t.Fatalf("accepted expired %+v", m)
		}
	})
}

// TestWriteFuzzCorpus writes the seeds of FuzzVerifyManifest and
// FuzzVerifyKeySet to testdata/fuzz (run with -update-corpus) so that
// `go test` replays them without -fuzz, and checks they are there.
func TestWriteFuzzCorpus(t *testing.T) {
	seeds := map[string]map[string][]byte{"FuzzVerifyManifest": {}, "FuzzVerifyKeySet": {}}
	for _, c := range verifyCases {
		if in := c.input(t); len(in.Manifest) <= MaxManifestSize {
			seeds["FuzzVerifyManifest"][c.name] = in.Manifest
		}
	}
	for _, c := range rotationCases {
		if doc, err := c.doc(); err == nil && len(doc) <= MaxManifestSize {
			seeds["FuzzVerifyKeySet"][c.name] = doc
		}
	}
	for target, files := range seeds {
		dir := filepath.Join("testdata", "fuzz", target)
		if *updateCorpus {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			for name, b := range files {
				name = strings.NewReplacer(" ", "_", ":", "").Replace(name)
				body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
				if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
		ents, err := os.ReadDir(dir)
		if err != nil || len(ents) == 0 {
			t.Fatalf("no committed corpus in %s (run go test -run TestWriteFuzzCorpus -update-corpus): %v", dir, err)
		}
	}
}

var rotationNext = KeySet{Version: 2, Threshold: 1, Keys: []Key{NewKey(pub(k1)), NewKey(pub(k3))}}

// rotationCase is one key-set document and whether the pinned set takes it.
type rotationCase struct {
	name    string
	doc     func() ([]byte, error)
	current KeySet
	ok      bool
}

// rotationCases feed TestKeySetRotation and FuzzVerifyKeySet.
var rotationCases = func() []rotationCase {
	next := rotationNext
	return []rotationCase{
		{"threshold of old and new", func() ([]byte, error) { return SignKeySet(next, k1, k2) }, pinned, true},
		{"below threshold", func() ([]byte, error) { return SignKeySet(next, k1) }, pinned, false},
		{"same key twice is one", func() ([]byte, error) { return SignKeySet(next, k1, k1) }, pinned, false},
		{"unknown keys", func() ([]byte, error) { return SignKeySet(next, k3, kOut) }, pinned, false},
		{"not signed by the new set", func() ([]byte, error) {
			n := KeySet{Version: 2, Threshold: 1, Keys: []Key{NewKey(pub(k3))}}
			return SignKeySet(n, k1, k2)
		}, pinned, false},
		{"replayed old version", func() ([]byte, error) {
			return SignKeySet(KeySet{Version: 1, Threshold: 1, Keys: []Key{NewKey(pub(k1))}}, k1, k2)
		}, pinned, false},
		{"malformed", func() ([]byte, error) { return []byte{0xa1, 0x00}, nil }, pinned, false},
		{"oversized", func() ([]byte, error) { return make([]byte, MaxManifestSize+1), nil }, pinned, false},
		{"manifest as key set", func() ([]byte, error) {
			m, err := Sign(baseManifest(), k1)
			if err != nil {
				return nil, err
			}
			return encMode.Marshal(keySetDoc{Signatures: [][]byte{m, m}})
		}, pinned, false},
	}
}()

func TestKeySetRotation(t *testing.T) {
	next := rotationNext
	for _, c := range rotationCases {
		t.Run(c.name, func(t *testing.T) {
			doc, err := c.doc()
			if err != nil {
				t.Fatal(err)
			}
			got, err := VerifyKeySet(doc, c.current)
			if c.ok != (err == nil) {
				t.Fatalf("VerifyKeySet: %v, want ok=%v", err, c.ok)
			}
			if err != nil && !errors.Is(err, ErrKeySet) {
				t.Fatalf("error %v does not wrap ErrKeySet", err)
			}
			if c.ok && got.Version != 2 {
				t.Fatalf("got set %+v", got)
			}
		})
	}
	// After the rotation k2 is revoked: its manifests are refused.
	set, err := VerifyKeySet(must(SignKeySet(next, k1, k2)), pinned)
	if err != nil {
		t.Fatal(err)
	}
	in := baseInput(mustSign(t, baseManifest(), k2))
	in.Keys = set
	if v := Verify(in); v.Reason != ReasonUnknownKey {
		t.Fatalf("revoked key: %v", v)
	}
	in = baseInput(mustSign(t, baseManifest(), k3))
	in.Keys = set
	if v := Verify(in); !v.OK() {
		t.Fatalf("new key: %v", v)
	}
}

// FuzzVerifyKeySet feeds arbitrary documents to VerifyKeySet: it must
// never panic, and a set it accepts must be well formed and newer.
func FuzzVerifyKeySet(f *testing.F) {
	for _, c := range rotationCases {
		if doc, err := c.doc(); err == nil && len(doc) <= MaxManifestSize {
			f.Add(doc)
		}
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		got, err := VerifyKeySet(doc, pinned)
		if err != nil {
			if !errors.Is(err, ErrKeySet) {
				t.Fatalf("error %v does not wrap ErrKeySet", err)
			}
			return
		}
		if got.Check() != nil || got.Version <= pinned.Version {
			t.Fatalf("accepted %+v", got)
		}
	})
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

func TestKeyFiles(t *testing.T) {
	dir := t.TempDir()
	priv, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	k, err := WriteKeyPair(dir, priv)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, PrivateKeyFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("private key mode %v, %v", st.Mode(), err)
	}
	if _, err := WriteKeyPair(dir, priv); err == nil {
		t.Fatal("overwrote an existing key")
	}
	back, err := ReadPrivateKey(filepath.Join(dir, PrivateKeyFile))
	if err != nil || !back.Equal(priv) {
		t.Fatalf("read back: %v", err)
	}
	pk, err := ReadPublicKey(filepath.Join(dir, PublicKeyFile))
	if err != nil || pk.ID != k.ID {
		t.Fatalf("public: %+v %v", pk, err)
	}
	path := filepath.Join(dir, "keys.json")
	if err := WriteKeySet(path, KeySet{Version: 1, Threshold: 1, Keys: []Key{pk}}); err != nil {
		t.Fatal(err)
	}
	set, err := ReadKeySet(path)
	if err != nil || len(set.Keys) != 1 || set.Keys[0].ID != k.ID {
		t.Fatalf("key set: %+v %v", set, err)
	}
}

// BenchmarkVerify runs Verify over rows of the table (what a device or the
// core pays per manifest), beside a bare Ed25519 verification of the same
// manifest's signed bytes as the baseline.
func BenchmarkVerify(b *testing.B) {
	for _, c := range verifyCases {
		switch c.name {
		case "valid", "unknown key", "malformed cbor", "tampered image", "rollback replay":
		default:
			continue
		}
		in := c.input(b)
		b.Run(strings.ReplaceAll(c.name, " ", "_"), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(in.Manifest)))
			for b.Loop() {
				if v := Verify(in); v.Reason != c.reason {
					b.Fatal(v)
				}
			}
		})
	}
	b.Run("baseline_ed25519_verify", func(b *testing.B) {
		in := verifyCases[0].input(b)
		var s signed
		if err := s.msg.UnmarshalCBOR(in.Manifest); err != nil {
			b.Fatal(err)
		}
		msg := []byte("a message the size of a manifest's Sig_structure: ........................................................................................................................................................")
		sig := ed25519.Sign(k1, msg)
		b.ReportAllocs()
		b.SetBytes(int64(len(in.Manifest)))
		for b.Loop() {
			if !ed25519.Verify(pub(k1), msg, sig) {
				b.Fatal("bad")
			}
		}
	})
}
