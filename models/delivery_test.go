package models

import (
	"context"
	"testing"
	"time"

	"github.com/weft-io/weft/firmware"
)

func TestTargeted(t *testing.T) {
	for obj, want := range map[string]bool{
		"thermo-bands":                 false,
		"thermo-bands/stages.json":     false,
		"thermo-bands/2":               false,
		"thermo-bands/2/manifest.cose": true,
		"thermo-bands/2/params.json":   true,
		"pump-bands/x/params.json":     false, // not a version's file
	} {
		if got := Targeted(obj); got != want {
			t.Errorf("Targeted(%q) = %v, want %v", obj, got, want)
		}
	}
}

// TestDelivery: a version's files go to the edges with a device of its
// class (read from its manifest), and to an edge that gains one.
func TestDelivery(t *testing.T) {
	ctx := context.Background()
	r := testRegistry(t)
	if _, _, err := r.Train(ctx, TrainRequest{Name: "thermo-bands", Class: "thermo"}, fleetReadings(2, 10*time.Minute)); err != nil {
		t.Fatal(err)
	}
	edges := map[string]map[string]bool{"edge-a": {"thermo": true}, "edge-b": {"pump": true}}
	now := time.Unix(100, 0)
	d := &Delivery{Store: r.Store, Targeting: firmware.Targeting{EdgeClasses: func(context.Context) (map[string]map[string]bool, error) { return edges, nil },
		Now: func() time.Time { return now }}}
	keep := func(edge, obj string) bool {
		t.Helper()
		ok, err := d.Keep(ctx, edge, obj)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !keep("edge-a", "thermo-bands/1/params.json") || keep("edge-b", "thermo-bands/1/params.json") || !keep("edge-b", "thermo-bands/stages.json") {
		t.Fatal("class targeting")
	}
	if keep("edge-a", "thermo-bands/9/params.json") {
		t.Fatal("a version without a manifest was sent")
	}
	edges = map[string]map[string]bool{"edge-a": {"thermo": true}, "edge-b": {"pump": true, "thermo": true}}
	if keep("edge-b", "thermo-bands/1/manifest.cose") {
		t.Fatal("the edges' classes were read again before Fresh passed")
	}
	now = now.Add(firmware.DefaultClassesFresh)
	if !keep("edge-b", "thermo-bands/1/manifest.cose") {
		t.Fatal("an edge that gained a device of the class")
	}
}
