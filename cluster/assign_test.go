package cluster

import (
	"fmt"
	"testing"
)

func members(names ...string) []Member {
	var out []Member
	for _, n := range names {
		out = append(out, Member{Name: n, Sync: n + ":7443"})
	}
	return out
}

func TestPreferredMovesOnlyWhatChanges(t *testing.T) {
	three, four := members("a", "b", "c"), members("a", "b", "c", "d")
	moved, toD := 0, 0
	for i := range 1000 {
		e := fmt.Sprintf("edge-%d", i)
		p3, p4 := Preferred(e, three), Preferred(e, four)
		if p3 != p4 {
			moved++
			if p4 == "d" {
				toD++
			}
		}
	}
	if moved != toD {
		t.Errorf("adding d moved %d edges, %d of them to d: only edges gained by d should move", moved, toD)
	}
	if toD < 150 || toD > 350 {
		t.Errorf("d gained %d of 1000 edges, want about a quarter", toD)
	}
	drain := members("a", "b", "c")
	drain[0].Draining = true
	for i := range 100 {
		if p := Preferred(fmt.Sprintf("edge-%d", i), drain); p == "a" || p == "" {
			t.Fatalf("edge-%d preferred %q with a draining", i, p)
		}
	}
	if p := Preferred("e", nil); p != "" {
		t.Errorf("no node: %q", p)
	}
}

func TestDecide(t *testing.T) {
	up := members("a", "b", "c")
	pref := Preferred("e", up)
	other := "a"
	if pref == "a" {
		other = "b"
	}
	drainingSelf := members("a", "b", "c")
	for i := range drainingSelf {
		drainingSelf[i].Draining = drainingSelf[i].Name == pref
	}
	for _, tc := range []struct {
		name, self, owner string
		up                []Member
		want              Verdict
		to                string
	}{
		{"owned here", other, other, up, Serve, ""},
		{"owned by another up node", other, pref, up, Redirect, pref},
		{"owner not in view", other, "z", up, Refuse, ""},
		{"unowned, preferred here", pref, "", up, Claim, ""},
		{"unowned, preferred elsewhere", other, "", up, Redirect, pref},
		{"unowned, self draining", pref, "", drainingSelf, Redirect, Preferred("e", drainingSelf)},
		{"unowned, no view, self not up", "a", "", nil, Refuse, ""},
	} {
		d := Decide(tc.self, "e", tc.owner, tc.up)
		if d.Verdict != tc.want || d.To.Name != tc.to {
			t.Errorf("%s: got %v to %q, want %v to %q", tc.name, d.Verdict, d.To.Name, tc.want, tc.to)
		}
	}
}

func TestMoves(t *testing.T) {
	up := members("a", "b", "c", "d")
	var owned []string
	for i := range 200 {
		owned = append(owned, fmt.Sprintf("edge-%d", i))
	}
	m := Moves("a", owned, up)
	for e, to := range m {
		if Preferred(e, up) != to.Name || to.Name == "a" {
			t.Errorf("%s moves to %s, preferred %s", e, to.Name, Preferred(e, up))
		}
	}
	if len(m) == 0 || len(m) == len(owned) {
		t.Errorf("%d of %d move", len(m), len(owned))
	}
	up[0].Draining = true
	if m := Moves("a", owned, up); len(m) != len(owned) {
		t.Errorf("draining: %d of %d move", len(m), len(owned))
	}
}
