package firmware

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestTargeted(t *testing.T) {
	for obj, want := range map[string]bool{
		"sensor-fw/1.2.0/image":         true,
		"sensor-fw/1.2.0/manifest.cose": false, // manifests go everywhere
		"sensor-fw/not-a-version/image": false, // not a release's file
		"image":                         false, // nor this
		"a/1.0.0/b/image":               false, // nor this
		"sensor-fw/1.2.0/image.sig":     false, // another file of the release
	} {
		if got := Targeted(obj); got != want {
			t.Errorf("Targeted(%q) = %v, want %v", obj, got, want)
		}
	}
}

// TestDeliveryKeep: a release's image goes to the edges with a device of
// its class, read from the stored manifest; its manifest to all; the
// edges' classes are read once per Fresh.
func TestDeliveryKeep(t *testing.T) {
	ctx := context.Background()
	r := testRegistry(t)
	m := baseManifest() // class thermo
	if _, err := r.Publish(ctx, mustSign(t, m, k1), bytes.NewReader(image)); err != nil {
		t.Fatal(err)
	}
	clock := now
	reads := 0
	classes := map[string]map[string]bool{"edge-1": {m.Class: true}, "edge-2": {"pump": true}}
	d := &Delivery{Store: r.Store, Targeting: Targeting{Fresh: time.Second, Now: func() time.Time { return clock },
		EdgeClasses: func(context.Context) (map[string]map[string]bool, error) {
			reads++
			return classes, nil
		}}}
	dir := m.Name + "/" + m.Version.String() + "/"
	keep := func(edge, obj string) bool {
		t.Helper()
		ok, err := d.Keep(ctx, edge, obj)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !keep("edge-1", dir+ImageFile) || keep("edge-2", dir+ImageFile) || keep("edge-3", dir+ImageFile) {
		t.Fatal("the image goes to other edges than edge-1")
	}
	if !keep("edge-2", dir+ManifestFile) || !keep("edge-3", dir+ManifestFile) {
		t.Fatal("the manifest does not go to every edge")
	}
	if keep("edge-1", "other-fw/1.0.0/"+ImageFile) {
		t.Fatal("an image without a manifest goes out")
	}
	// edge-2 gains a device of the class: seen once the answer is stale.
	classes = map[string]map[string]bool{"edge-1": {m.Class: true}, "edge-2": {"pump": true, m.Class: true}}
	if keep("edge-2", dir+ImageFile) {
		t.Fatal("the edges' classes were read again within Fresh")
	}
	clock = clock.Add(time.Second)
	if !keep("edge-2", dir+ImageFile) {
		t.Fatal("edge-2 does not get the image after gaining a device of its class")
	}
	if reads != 2 {
		t.Fatalf("the edges' classes were read %d times, want 2", reads)
	}
}

// TestPlaces: devices coming, moving between edges, changing class and
// going; an edge keeps a class while any of its devices has it.
func TestPlaces(t *testing.T) {
	var p Places
	steps := []struct {
		do   func()
		want string
	}{
		{func() { p.Set("d1", "e1", "pump") }, "e1:pump"},
		{func() { p.Set("d2", "e1", "pump") }, "e1:pump"},
		{func() { p.Set("d2", "e1", "pump") }, "e1:pump"}, // again: no change
		{func() { p.Set("d3", "e2", "thermo") }, "e1:pump e2:thermo"},
		{func() { p.Set("d1", "e2", "pump") }, "e1:pump e2:pump e2:thermo"}, // d2 keeps e1's pumps
		{func() { p.Delete("d2") }, "e2:pump e2:thermo"},
		{func() { p.Set("d3", "e2", "") }, "e2:pump"},    // no class: forgotten
		{func() { p.Set("d3", "", "meter") }, "e2:pump"}, // no edge: forgotten
		{func() { p.Delete("d9") }, "e2:pump"},
		{func() { p.Delete("d1") }, ""},
	}
	for i, s := range steps {
		s.do()
		got, _ := p.EdgeClasses(context.Background())
		var pairs []string
		for e, cs := range got {
			for c := range cs {
				pairs = append(pairs, e+":"+c)
			}
		}
		slices.Sort(pairs)
		if g := strings.Join(pairs, " "); g != s.want {
			t.Fatalf("step %d: %q, want %q", i, g, s.want)
		}
	}
}
