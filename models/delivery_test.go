package models

import (
	"context"
	"testing"
	"time"
)

func TestSends(t *testing.T) {
	pumps := map[string]bool{"pump": true}
	for _, tc := range []struct {
		obj, class string
		known      bool
		edge       map[string]bool
		want       bool
	}{
		{"thermo-bands", "", false, nil, true},
		{"thermo-bands/stages.json", "", false, nil, true},
		{"thermo-bands/2", "", false, nil, true},
		{"thermo-bands/2/manifest.cose", "thermo", true, pumps, false},
		{"thermo-bands/2/params.json", "thermo", true, map[string]bool{"thermo": true}, true},
		{"pump-bands/1/params.json", "pump", true, pumps, true},
		{"pump-bands/1/params.json", "", false, pumps, false}, // class not known yet
		{"pump-bands/x/params.json", "", false, nil, true},    // not a version's file
	} {
		if got := Sends(tc.obj, tc.class, tc.known, tc.edge); got != tc.want {
			t.Errorf("Sends(%q, %q, %v, %v) = %v", tc.obj, tc.class, tc.known, tc.edge, got)
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
	d := &Delivery{Store: r.Store, EdgeClasses: func(context.Context) (map[string]map[string]bool, error) { return edges, nil },
		Now: func() time.Time { return now }}
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
	now = now.Add(DefaultClassesFresh)
	if !keep("edge-b", "thermo-bands/1/manifest.cose") {
		t.Fatal("an edge that gained a device of the class")
	}
}
