package firmware

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"testing"
	"time"
)

func TestVersionCompare(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"1.0.0", "1.0.0", 0},
		{"1.9.0", "1.10.0", -1},
		{"2.0.0", "1.99.99", 1},
		{"1.2.3", "1.2.4", -1},
		{"v1.2.3", "1.2.3", 0},
	} {
		if got := MustVersion(c.a).Compare(MustVersion(c.b)); got != c.want {
			t.Errorf("%s vs %s = %d, want %d", c.a, c.b, got, c.want)
		}
	}
	for _, bad := range []string{"", "1", "1.2", "1.2.3.4", "1.02.3", "1.-2.3", "1.2.3-rc1", "a.b.c", "1.2.99999999999999999999"} {
		if _, err := ParseVersion(bad); err == nil {
			t.Errorf("ParseVersion(%q) accepted", bad)
		}
	}
}

func TestManifestCBORDeterministic(t *testing.T) {
	m := Manifest{
		Name: "sensor-fw", Version: MustVersion("1.2.3"), Class: "thermo",
		Devices: []string{"d1", "d2"}, SHA256: sha256.Sum256([]byte("image")), Size: 5,
		NotBefore: time.Unix(1000, 0).UTC(), NotAfter: time.Unix(2000, 0).UTC(), KeyID: "k1",
	}
	a, err := m.MarshalCBOR()
	if err != nil {
		t.Fatal(err)
	}
	var back Manifest
	if err := back.UnmarshalCBOR(a); err != nil {
		t.Fatal(err)
	}
	b, _ := back.MarshalCBOR()
	if !bytes.Equal(a, b) {
		t.Fatalf("re-encoding differs:\n%x\n%x", a, b)
	}
	if back.Version != m.Version || back.SHA256 != m.SHA256 || !back.NotAfter.Equal(m.NotAfter) || len(back.Devices) != 2 {
		t.Fatalf("round trip: %+v", back)
	}
	j, _ := json.Marshal(m)
	var jb Manifest
	if err := json.Unmarshal(j, &jb); err != nil || jb.SHA256 != m.SHA256 || jb.Version != m.Version {
		t.Fatalf("json round trip %s: %+v %v", j, jb, err)
	}
}
