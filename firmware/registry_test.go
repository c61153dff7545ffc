package firmware

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
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
	return &Registry{Store: st, Keys: func() (KeySet, error) { return pinned, nil }, Now: func() time.Time { return now }}
}

func TestRegistryPublish(t *testing.T) {
	ctx := context.Background()
	r := testRegistry(t)
	v120 := mustSign(t, baseManifest(), k1)
	rel, err := r.Publish(ctx, v120, bytes.NewReader(image))
	if err != nil {
		t.Fatal(err)
	}
	if rel.Version != MustVersion("1.2.0") || rel.ImagePath != "/firmware/sensor-fw/1.2.0/image" {
		t.Fatalf("release %+v", rel)
	}

	refused := func(name string, manifest []byte, img []byte, want Reason) {
		t.Helper()
		_, err := r.Publish(ctx, manifest, bytes.NewReader(img))
		var re *RefusedError
		if !errors.As(err, &re) || re.Verdict.Reason != want {
			t.Errorf("%s: Publish = %v, want %s", name, err, want)
		}
	}
	next := baseManifest()
	next.Version = MustVersion("1.3.0")
	refused("same version again", v120, image, ReasonNotNewer)
	old := baseManifest()
	old.Version = MustVersion("1.1.0")
	refused("older version", mustSign(t, old, k1), image, ReasonNotNewer)
	refused("unknown key", mustSign(t, next, k3), image, ReasonUnknownKey)
	refused("unsigned", unsignedManifest(t), image, ReasonBadSignature)
	refused("other image", mustSign(t, next, k1), bytes.Repeat([]byte{'x'}, len(image)), ReasonHashMismatch)
	refused("truncated image", mustSign(t, next, k1), image[:5], ReasonSizeMismatch)
	refused("oversized image", mustSign(t, next, k1), append(bytes.Clone(image), "more"...), ReasonSizeMismatch)
	if _, err := r.Store.Stat(ctx, "/firmware/sensor-fw/1.3.0/image"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("refused image left in the store: %v", err)
	}

	// Another class keeps its own sequence; the same name and version
	// cannot be stored twice.
	other := baseManifest()
	other.Class, other.Version = "valve", MustVersion("1.0.0")
	if _, err := r.Publish(ctx, mustSign(t, other, k1), bytes.NewReader(image)); err != nil {
		t.Fatalf("other class: %v", err)
	}
	other.Version = MustVersion("1.2.0")
	if _, err := r.Publish(ctx, mustSign(t, other, k1), bytes.NewReader(image)); !errors.Is(err, ErrExists) {
		t.Fatalf("same name and version for another class: %v", err)
	}

	if _, err := r.Publish(ctx, mustSign(t, next, k2), bytes.NewReader(image)); err != nil {
		t.Fatal(err)
	}
	list, err := r.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, rel := range list {
		got = append(got, rel.Class+"/"+rel.Version.String())
	}
	if want := "[valve/1.0.0 thermo/1.2.0 thermo/1.3.0]"; fmtList(got) != want {
		t.Fatalf("List = %v, want %s", got, want)
	}
	rc, info, err := r.Store.File(list[2].ImagePath).Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	img, _ := ImageDigest(info)
	if !bytes.Equal(b, image) || img.SHA256 != imageSum {
		t.Fatal("stored image differs")
	}
	if _, err := r.Get(ctx, "sensor-fw", MustVersion("9.9.9")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get missing: %v", err)
	}
	if _, err := (&Registry{Store: r.Store}).Publish(ctx, v120, bytes.NewReader(image)); !errors.Is(err, ErrNoKeys) {
		t.Fatalf("no keys: %v", err)
	}
}

func fmtList(s []string) string { return "[" + strings.Join(s, " ") + "]" }
