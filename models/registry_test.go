package models

import (
	"context"
	"crypto/sha256"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/weft-io/weft/store"
)

func testRegistry(t *testing.T) *Registry {
	t.Helper()
	st, err := store.Open(store.Config{Dir: t.TempDir(), MinFreeBytes: -1, RetentionInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &Registry{Store: st, Key: modelKey, Now: func() time.Time { return time.Unix(5000, 0) }}
}

func TestRegistryTrainAndStages(t *testing.T) {
	ctx := context.Background()
	r := testRegistry(t)
	rs := fleetReadings(2, 10*time.Minute)
	m1, rep, err := r.Train(ctx, TrainRequest{Name: "thermo-bands", Class: "thermo"}, rs)
	if err != nil {
		t.Fatal(err)
	}
	if m1.Version != 1 || m1.Class != "thermo" || len(rep.Channels) != 2 || !m1.Created.Equal(time.Unix(5000, 0)) {
		t.Fatalf("trained %+v, %+v", m1, rep)
	}
	m2, _, err := r.Train(ctx, TrainRequest{Name: "thermo-bands", Class: "thermo"}, rs)
	if err != nil || m2.Version != 2 {
		t.Fatalf("second version %+v, %v", m2, err)
	}
	if _, _, err := r.Train(ctx, TrainRequest{Name: "thermo-bands", Class: "pump"}, rs); !errors.Is(err, ErrClass) {
		t.Fatalf("a name trained for another class: %v", err)
	}

	// Stored artifacts verify against the pinned key, parameters included.
	man, err := r.ReadFile(ctx, "thermo-bands", 2, ManifestFile, MaxManifestSize)
	if err != nil {
		t.Fatal(err)
	}
	params, err := r.ReadFile(ctx, "thermo-bands", 2, ParamsName, MaxParamsSize)
	if err != nil {
		t.Fatal(err)
	}
	if v := Verify(Input{Manifest: man, Keys: pinnedKeys, Class: "thermo", Params: &Params{sha256.Sum256(params), int64(len(params))}}); !v.OK() {
		t.Fatal(v)
	}
	// Putting version 1 again, or tampered parameters, is refused.
	var re *RefusedError
	if _, err := r.Put(ctx, man, params); !errors.As(err, &re) || re.Verdict.Reason != ReasonNotNewer {
		t.Fatalf("same version again: %v", err)
	}
	if _, err := r.Put(ctx, man, append(params, ' ')); !errors.As(err, &re) || re.Verdict.Reason != ReasonSizeMismatch {
		t.Fatalf("tampered parameters: %v", err)
	}

	step := func(action string, v uint64, want map[uint64]string) {
		t.Helper()
		m, err := r.Change(ctx, "thermo-bands", action, v)
		if err != nil {
			t.Fatalf("%s %d: %v", action, v, err)
		}
		for _, ver := range m.Versions {
			if ver.Stage != want[ver.Manifest.Version] {
				t.Fatalf("%s %d: version %d is %q, want %q", action, v, ver.Manifest.Version, ver.Stage, want[ver.Manifest.Version])
			}
		}
	}
	if _, err := r.Change(ctx, "thermo-bands", ActionPromote, 1); !errors.Is(err, ErrStage) {
		t.Fatalf("promoted an unpublished version: %v", err)
	}
	step(ActionPublish, 1, map[uint64]string{1: StageCandidate})
	step(ActionPromote, 1, map[uint64]string{1: StageLive})
	step(ActionPublish, 2, map[uint64]string{1: StageLive, 2: StageCandidate})
	step(ActionPromote, 2, map[uint64]string{1: StageRetired, 2: StageLive})
	step(ActionRollback, 0, map[uint64]string{1: StageLive, 2: StageRetired})
	step(ActionRetire, 1, map[uint64]string{1: StageRetired, 2: StageRetired})
	if _, err := r.Change(ctx, "thermo-bands", ActionPublish, 9); !errors.Is(err, ErrNotFound) {
		t.Fatalf("published a version that does not exist: %v", err)
	}
	list, err := r.List(ctx)
	if err != nil || len(list) != 1 || list[0].Name != "thermo-bands" || len(list[0].Versions) != 2 {
		t.Fatalf("list %+v, %v", list, err)
	}
	if _, err := r.Get(ctx, "nothing"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get of nothing: %v", err)
	}
}

func TestRegistryWithoutKey(t *testing.T) {
	r := testRegistry(t)
	r.Key = nil
	if _, _, err := r.Train(context.Background(), TrainRequest{Name: "m", Class: "c"}, fleetReadings(1, time.Hour)); !errors.Is(err, ErrNoKey) {
		t.Fatalf("trained without a key: %v", err)
	}
}

func TestLoadOrCreateKey(t *testing.T) {
	dir := t.TempDir()
	k1, err := LoadOrCreateKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := LoadOrCreateKey(dir)
	if err != nil || !k1.Equal(k2) {
		t.Fatalf("second load: %v", err)
	}
	pub, err := ReadPublicKey(filepath.Join(dir, PublicKeyFile))
	if err != nil || !pub.Public.Equal(k1.Public()) {
		t.Fatalf("public key %v, %v", pub, err)
	}
}
