package gateway

import (
	"net"
	"net/netip"
)

// pendingTable counts the connections accepted but not yet past their
// CONNECT, in all and per source address, and decides who gets a slot:
// at most perAddr per address, at most max in all, and when all are
// taken, a newcomer takes the slot of the oldest pending connection of
// the address holding the most, if that address holds more than the
// newcomer's would. One address therefore never keeps another out, and
// many addresses end up with equal shares. It does no I/O and is not
// safe for concurrent use: the listener holds its lock around it.
type pendingTable struct {
	max, perAddr int
	total        int
	byAddr       map[string]*addrPending
}

// addrPending is one address's pending connections, oldest first.
type addrPending struct {
	key   string
	conns []*pendingConn
}

// pendingConn is one pending connection's slot.
type pendingConn struct {
	key     string
	conn    net.Conn // closed when evicted
	evicted bool
	done    bool
}

func newPendingTable(max, perAddr int) *pendingTable {
	return &pendingTable{max: max, perAddr: perAddr, byAddr: map[string]*addrPending{}}
}

// admit gives c, from the address key, a slot. It returns the slot, or
// nil and the refusal reason; victim, if not nil, is the slot taken from
// another connection, which the caller closes.
func (t *pendingTable) admit(key string, c net.Conn) (slot, victim *pendingConn, reason string) {
	a := t.byAddr[key]
	n := 0
	if a != nil {
		n = len(a.conns)
	}
	if n >= t.perAddr {
		return nil, nil, RefuseMaxPendingPerIP
	}
	if t.total >= t.max {
		var top *addrPending
		for _, b := range t.byAddr {
			if top == nil || len(b.conns) > len(top.conns) {
				top = b
			}
		}
		if top == nil || len(top.conns) <= n+1 {
			return nil, nil, RefuseMaxPending
		}
		victim = top.conns[0]
		t.remove(victim)
		victim.evicted = true
	}
	if a == nil {
		a = &addrPending{key: key}
		t.byAddr[key] = a
	}
	slot = &pendingConn{key: key, conn: c}
	a.conns = append(a.conns, slot)
	t.total++
	return slot, victim, ""
}

// release frees slot, once; a slot evicted is freed already.
func (t *pendingTable) release(slot *pendingConn) {
	if slot.done {
		return
	}
	t.remove(slot)
}

func (t *pendingTable) remove(slot *pendingConn) {
	slot.done = true
	a := t.byAddr[slot.key]
	if a == nil {
		return
	}
	for i, p := range a.conns {
		if p == slot {
			a.conns = append(a.conns[:i], a.conns[i+1:]...)
			t.total--
			break
		}
	}
	if len(a.conns) == 0 {
		delete(t.byAddr, slot.key)
	}
}

// addrs is the number of addresses with a pending connection.
func (t *pendingTable) addrs() int { return len(t.byAddr) }

// sourceKey is the pending table's key for a remote address: the IPv4
// address, or the /64 prefix of an IPv6 one (a single host commonly
// holds a whole /64).
func sourceKey(addr net.Addr) string {
	var ip netip.Addr
	if ta, ok := addr.(*net.TCPAddr); ok {
		ip = ta.AddrPort().Addr()
	} else if ap, err := netip.ParseAddrPort(addr.String()); err == nil {
		ip = ap.Addr()
	} else {
		return addr.String()
	}
	ip = ip.Unmap()
	if ip.Is4() {
		return ip.String()
	}
	p, _ := ip.Prefix(64)
	return p.String()
}
