package testenv

import (
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"
)

// Faults are what a Proxy does to the datagrams it forwards.
type Faults struct {
	// Drop is the share of datagrams dropped, from 0 to 1 (1: the link is
	// cut).
	Drop float64
	// Delay holds every datagram this long; Jitter adds up to this much
	// more at random, which reorders datagrams.
	Delay, Jitter time.Duration
	// MaxDatagram, if not 0, drops every datagram larger than this many
	// bytes (of UDP payload), as a path with a smaller MTU does: see
	// PathMTU. The small ones (keepalives, acknowledgements) still pass.
	MaxDatagram int
}

// PathMTU is the largest UDP payload over IPv4 on a path of MTU mtu (IP
// and UDP headers take 28 bytes), for Faults.MaxDatagram.
func PathMTU(mtu int) int { return mtu - 28 }

// Proxy forwards UDP datagrams between clients and one target address,
// with Faults applied in both directions. Each client gets its own socket
// towards the target, as a NAT would.
type Proxy struct {
	t      testing.TB
	target *net.UDPAddr
	ln     *net.UDPConn

	mu      sync.Mutex
	faults  Faults
	rnd     *rand.Rand
	clients map[string]*net.UDPConn
	closed  bool
	wg      sync.WaitGroup

	forwarded, dropped, tooBig int64
	largest                    int           // the largest datagram forwarded
	sizes                      map[int]int64 // datagrams forwarded by size
}

// Counts returns how many datagrams were forwarded and dropped.
func (p *Proxy) Counts() (forwarded, dropped int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.forwarded, p.dropped
}

// Largest returns the size of the largest datagram forwarded.
func (p *Proxy) Largest() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.largest
}

// ForwardedOver returns how many datagrams larger than size were
// forwarded.
func (p *Proxy) ForwardedOver(size int) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	var n int64
	for s, c := range p.sizes {
		if s > size {
			n += c
		}
	}
	return n
}

// TooBig returns how many of the dropped datagrams were larger than
// Faults.MaxDatagram.
func (p *Proxy) TooBig() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.tooBig
}

// NewProxy listens on 127.0.0.1:0 and forwards to target. It closes with
// the test.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ta, err := net.ResolveUDPAddr("udp", target)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{t: t, target: ta, ln: ln, rnd: rand.New(rand.NewPCG(1, 2)), clients: map[string]*net.UDPConn{}}
	p.wg.Add(1)
	go p.run()
	t.Cleanup(p.Close)
	return p
}

// Addr is the address clients send to.
func (p *Proxy) Addr() string { return p.ln.LocalAddr().String() }

// Set changes the faults from now on.
func (p *Proxy) Set(f Faults) {
	p.mu.Lock()
	p.faults = f
	p.mu.Unlock()
}

// Close stops forwarding.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.ln.Close()
	for _, c := range p.clients {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *Proxy) run() {
	defer p.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, from, err := p.ln.ReadFromUDP(buf)
		if err != nil {
			return
		}
		p.mu.Lock()
		up, ok := p.clients[from.String()]
		if !ok && !p.closed {
			up, err = net.DialUDP("udp", nil, p.target)
			if err == nil {
				p.clients[from.String()] = up
				p.wg.Add(1)
				go p.back(up, from)
			}
		}
		p.mu.Unlock()
		if up == nil {
			continue
		}
		p.forward(buf[:n], func(b []byte) { up.Write(b) })
	}
}

// back forwards the target's answers to one client.
func (p *Proxy) back(up *net.UDPConn, client *net.UDPAddr) {
	defer p.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, err := up.Read(buf)
		if err != nil {
			return
		}
		p.forward(buf[:n], func(b []byte) { p.ln.WriteToUDP(b, client) })
	}
}

// forward sends a copy of b through send, unless the faults drop it, after
// the delay they call for.
func (p *Proxy) forward(b []byte, send func([]byte)) {
	p.mu.Lock()
	f := p.faults
	big := f.MaxDatagram > 0 && len(b) > f.MaxDatagram
	drop := big || f.Drop > 0 && p.rnd.Float64() < f.Drop
	if big {
		p.tooBig++
	}
	delay := f.Delay
	if f.Jitter > 0 {
		delay += time.Duration(p.rnd.Int64N(int64(f.Jitter)))
	}
	if drop {
		p.dropped++
	} else {
		p.forwarded++
		p.largest = max(p.largest, len(b))
		if p.sizes == nil {
			p.sizes = map[int]int64{}
		}
		p.sizes[len(b)]++
	}
	p.mu.Unlock()
	if drop {
		return
	}
	if delay <= 0 {
		send(b)
		return
	}
	c := append([]byte(nil), b...)
	time.AfterFunc(delay, func() { send(c) })
}
