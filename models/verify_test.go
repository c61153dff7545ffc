package models

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"testing"
	"time"

	sig "github.com/weft-io/weft/internal/signed"
)

func testKey(n byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{n}, ed25519.SeedSize))
}

var (
	modelKey, strangerKey = testKey(1), testKey(2)
	pinnedKeys            = []sig.Key{sig.NewKey(modelKey.Public().(ed25519.PublicKey))}
	testParams            = []byte(`{"kind":"channel","channels":{"temp":{}}}`)
)

func baseManifest() Manifest {
	return Manifest{
		Name: "thermo-bands", Version: 3, Kind: KindChannel, Class: "thermo", Channels: []string{"temp"},
		SHA256: sha256.Sum256(testParams), Size: int64(len(testParams)),
		Training: Training{From: time.Unix(1000, 0).UTC(), To: time.Unix(2000, 0).UTC(), Devices: 2, Readings: 10,
			Summary: []Summary{{Channel: "temp", Count: 10, Min: 1, Max: 9, Mean: 5, P01: 1, P50: 5, P99: 9}}},
		Created: time.Unix(3000, 0).UTC(),
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

func paramsOf(b []byte) *Params { return &Params{SHA256: sha256.Sum256(b), Size: int64(len(b))} }

func TestVerify(t *testing.T) {
	good := mustSign(t, baseManifest(), modelKey)
	unsigned := append(bytes.Clone(good[:len(good)-66]), 0x40)
	tamperedParams := bytes.Replace(testParams, []byte("temp"), []byte("tEmp"), 1)
	cases := []struct {
		name   string
		in     Input
		reason Reason
	}{
		{"ok", Input{Manifest: good, Keys: pinnedKeys, Class: "thermo", Newest: 2, Params: paramsOf(testParams)}, ReasonOK},
		{"same version reloaded", Input{Manifest: good, Keys: pinnedKeys, Newest: 3, AllowSame: true}, ReasonOK},
		{"unsigned", Input{Manifest: unsigned, Keys: pinnedKeys}, ReasonUnsigned},
		{"unknown key", Input{Manifest: mustSign(t, baseManifest(), strangerKey), Keys: pinnedKeys}, ReasonUnknownKey},
		{"no keys", Input{Manifest: good}, ReasonUnknownKey},
		{"tampered parameters", Input{Manifest: good, Keys: pinnedKeys, Params: paramsOf(tamperedParams)}, ReasonHashMismatch},
		{"short parameters", Input{Manifest: good, Keys: pinnedKeys, Params: paramsOf(testParams[1:])}, ReasonSizeMismatch},
		{"wrong class", Input{Manifest: good, Keys: pinnedKeys, Class: "pump"}, ReasonWrongClass},
		{"older version", Input{Manifest: good, Keys: pinnedKeys, Newest: 4}, ReasonNotNewer},
		{"same version", Input{Manifest: good, Keys: pinnedKeys, Newest: 3}, ReasonNotNewer},
		{"tampered manifest", Input{Manifest: bytes.Replace(good, []byte("thermo"), []byte("pumpxx"), 1), Keys: pinnedKeys}, ReasonBadSignature},
		{"garbage", Input{Manifest: []byte("not cbor"), Keys: pinnedKeys}, ReasonMalformed},
		{"too large", Input{Manifest: make([]byte, MaxManifestSize+1), Keys: pinnedKeys}, ReasonTooLarge},
		{"firmware content type", Input{Manifest: firmwareLike(t), Keys: pinnedKeys}, ReasonMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Verify(c.in)
			if got.Reason != c.reason {
				t.Fatalf("Verify = %v, want %s", got, c.reason)
			}
			if got.OK() != (got.Err() == nil) {
				t.Fatalf("OK and Err disagree: %v", got)
			}
			if got.OK() && got.Manifest.Ref() != "thermo-bands@3" {
				t.Fatalf("accepted %+v", got.Manifest)
			}
		})
	}
}

// firmwareLike is a COSE_Sign1 by the model key over a model manifest
// but with firmware's content type.
func firmwareLike(t *testing.T) []byte {
	payload, err := baseManifest().MarshalCBOR()
	if err != nil {
		t.Fatal(err)
	}
	b, err := sig.Sign1(payload, modelKey, "application/vnd.weft.firmware-manifest+cbor")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestManifestRoundTrip(t *testing.T) {
	m := baseManifest()
	m.KeyID = sig.KeyID(modelKey.Public().(ed25519.PublicKey))
	b := mustSign(t, m, modelKey)
	got, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	j1, _ := json.Marshal(m)
	j2, _ := json.Marshal(got)
	if !bytes.Equal(j1, j2) {
		t.Fatalf("round trip:\n%s\n%s", j1, j2)
	}
	var back Manifest
	if err := json.Unmarshal(j1, &back); err != nil {
		t.Fatal(err)
	}
	if j3, _ := json.Marshal(back); !bytes.Equal(j1, j3) {
		t.Fatalf("JSON round trip:\n%s\n%s", j1, j3)
	}
	if again := mustSign(t, m, modelKey); !bytes.Equal(mustPayload(t, again), mustPayload(t, b)) {
		t.Fatal("the same manifest gave two payloads")
	}
}

func mustPayload(t *testing.T, b []byte) []byte {
	s, err := sig.Parse(b, contentType)
	if err != nil {
		t.Fatal(err)
	}
	return s.Payload()
}

func TestParseRef(t *testing.T) {
	for in, ok := range map[string]bool{"m@1": true, "m@12": true, "m@0": false, "m@01": false, "m": false, "@1": false, "a/b@1": false, "m@x": false} {
		if _, err := ParseRef(in); (err == nil) != ok {
			t.Errorf("ParseRef(%q) = %v", in, err)
		}
	}
}

func FuzzVerify(f *testing.F) {
	f.Add(mustSign(f, baseManifest(), modelKey))
	f.Add(mustSign(f, externalManifest(), modelKey))
	f.Add([]byte{0xd2, 0x84})
	f.Fuzz(func(t *testing.T, b []byte) {
		v := Verify(Input{Manifest: b, Keys: pinnedKeys})
		if v.OK() && v.Manifest.Check() != nil {
			t.Fatalf("accepted a manifest that does not check: %+v", v.Manifest)
		}
	})
}
