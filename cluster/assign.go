package cluster

import (
	"hash/fnv"
	"slices"
)

// Member is what the cluster knows of a node: its name, its addresses and
// whether it takes edges.
type Member struct {
	Name string `json:"name"`
	// API is the node's HTTP API address, host:port.
	API string `json:"api"`
	// Sync is the UDP address edges' links come to, host:port.
	Sync string `json:"sync"`
	// Draining is set on a node that is leaving: it takes no edge and
	// gives up those it has.
	Draining bool `json:"draining,omitempty"`
}

// Preferred returns the name of the node edge belongs on among up, by
// rendezvous (highest random weight) hashing of the edge's and nodes'
// names over the nodes that are up and not draining, so that a node's
// arrival or loss moves only the edges it gains or had. It returns ""
// when no node takes edges.
func Preferred(edge string, up []Member) string {
	best, bestW := "", uint64(0)
	for _, m := range up {
		if m.Draining {
			continue
		}
		w := weight(edge, m.Name)
		if best == "" || w > bestW || (w == bestW && m.Name < best) {
			best, bestW = m.Name, w
		}
	}
	return best
}

func weight(edge, node string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(edge))
	h.Write([]byte{0})
	h.Write([]byte(node))
	// FNV's low bits mix poorly over similar names: finish with a
	// 64-bit mixer (splitmix64's).
	z := h.Sum64()
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// Verdict is what a node answers an edge's hello.
type Verdict int

// The verdicts of Decide.
const (
	// Serve: this node owns the edge.
	Serve Verdict = iota
	// Claim: the edge is unowned and belongs here: claim it, then serve.
	Claim
	// Redirect: the edge goes to another node (Decision.To).
	Redirect
	// Refuse: this node may not serve edges now (lease lost, draining
	// with nowhere to send the edge).
	Refuse
)

// Decision is Decide's answer: a verdict and, for Redirect, the node to
// go to.
type Decision struct {
	Verdict Verdict
	To      Member
}

// Decide says what self answers edge's hello, given the edge's owner in
// etcd ("" when unowned) and the members up. An owned edge goes to its
// owner; an unowned one to its preferred node, or to self when the
// preferred node is self or none takes edges but self can.
func Decide(self, edge, owner string, up []Member) Decision {
	find := func(name string) (Member, bool) {
		i := slices.IndexFunc(up, func(m Member) bool { return m.Name == name })
		if i < 0 {
			return Member{}, false
		}
		return up[i], true
	}
	me, selfUp := find(self)
	switch {
	case owner == self:
		return Decision{Verdict: Serve}
	case owner != "":
		if m, ok := find(owner); ok {
			return Decision{Verdict: Redirect, To: m}
		}
		// An owner whose lease is gone has no key: an owner not up is a
		// view behind etcd's. Let the edge retry.
		return Decision{Verdict: Refuse}
	}
	p := Preferred(edge, up)
	switch {
	case p == self || (p == "" && selfUp && !me.Draining):
		return Decision{Verdict: Claim}
	case p != "":
		m, _ := find(p)
		return Decision{Verdict: Redirect, To: m}
	}
	return Decision{Verdict: Refuse}
}

// Moves returns the edges self owns that belong on another node that is
// up (their preferred node is not self), each with the node to send it
// to: those self releases. A draining self releases all its edges that
// have somewhere to go.
func Moves(self string, owned []string, up []Member) map[string]Member {
	out := map[string]Member{}
	for _, e := range owned {
		p := Preferred(e, up)
		if p == "" || p == self {
			continue
		}
		i := slices.IndexFunc(up, func(m Member) bool { return m.Name == p })
		out[e] = up[i]
	}
	return out
}
