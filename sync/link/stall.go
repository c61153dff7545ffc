package link

import (
	"context"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/qlog"
	"github.com/quic-go/quic-go/qlogwriter"
	"github.com/weft-io/weft/sync/wire"
)

// DefaultStallTimeout is how long a path may lose nearly everything it is
// given to carry, while packets still arrive from the peer, before the
// link is re-established with small packets.
const DefaultStallTimeout = 10 * time.Second

// smallPacketsFor is how long a link keeps to small packets (path MTU
// discovery off) after its path stalled.
const smallPacketsFor = 10 * time.Minute

// pathProgress follows a connection's packets through quic-go's qlog
// hooks (quic.Config.Tracer): the bytes of packets carrying stream data
// sent, the bytes of those acknowledged, and the packets received, per
// second. It records nothing else and writes no log.
type pathProgress struct {
	now func() time.Time

	mu          sync.Mutex
	outstanding []sentPacket // stream-data packets not yet acknowledged, by packet number
	buckets     []progressBucket
	moves       int // times the connection moved to a new path (migrated)
}

// migrations returns how many times the connection moved to a new path.
func (p *pathProgress) migrations() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.moves
}

type sentPacket struct {
	pn   int64
	size int
}

// progressBucket is one second of a connection's packets.
type progressBucket struct {
	second          int64 // Unix seconds
	sent, acked     int64 // bytes of stream-data packets
	received        int64 // packets
	largestSentSize int
}

func newPathProgress(now func() time.Time) *pathProgress { return &pathProgress{now: now} }

// tracer is a quic.Config.Tracer feeding p.
func (p *pathProgress) tracer(context.Context, bool, quic.ConnectionID) qlogwriter.Trace { return p }

// AddProducer implements qlogwriter.Trace.
func (p *pathProgress) AddProducer() qlogwriter.Recorder { return p }

// Close implements qlogwriter.Recorder.
func (p *pathProgress) Close() error { return nil }

// RecordEvent implements qlogwriter.Recorder.
func (p *pathProgress) RecordEvent(ev qlogwriter.Event) {
	switch e := ev.(type) {
	case qlog.PacketSent:
		if e.Header.PacketType != qlog.PacketType1RTT || !carriesData(e.Frames) {
			return
		}
		p.mu.Lock()
		b := p.bucket()
		b.sent += int64(e.Raw.Length)
		p.outstanding = append(p.outstanding, sentPacket{pn: int64(e.Header.PacketNumber), size: e.Raw.Length})
		p.mu.Unlock()
	case qlog.TupleAssigned:
		if e.TupleID == "" { // the connection moved to a new path
			p.mu.Lock()
			p.moves++
			p.mu.Unlock()
		}
	case qlog.PacketReceived:
		if e.Header.PacketType != qlog.PacketType1RTT {
			return
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		b := p.bucket()
		b.received++
		for _, f := range e.Frames {
			ack, ok := f.Frame.(*qlog.AckFrame)
			if !ok {
				continue
			}
			// Packets up to the largest acknowledged are settled: acked,
			// or lost (and their data sent again in newer packets).
			largest := int64(ack.LargestAcked())
			i := 0
			for ; i < len(p.outstanding) && p.outstanding[i].pn <= largest; i++ {
				if ack.AcksPacket(qlog.PacketNumber(p.outstanding[i].pn)) {
					b.acked += int64(p.outstanding[i].size)
				}
			}
			p.outstanding = p.outstanding[i:]
		}
	}
}

// carriesData reports whether a packet's frames include stream data.
func carriesData(fs []qlog.Frame) bool {
	for _, f := range fs {
		if _, ok := f.Frame.(*qlog.StreamFrame); ok {
			return true
		}
	}
	return false
}

// bucket returns the bucket of the current second; p.mu is held.
func (p *pathProgress) bucket() *progressBucket {
	sec := p.now().Unix()
	if n := len(p.buckets); n > 0 && p.buckets[n-1].second == sec {
		return &p.buckets[n-1]
	}
	p.buckets = append(p.buckets, progressBucket{second: sec})
	if len(p.buckets) > 120 {
		p.buckets = slices.Delete(p.buckets, 0, len(p.buckets)-120)
	}
	return &p.buckets[len(p.buckets)-1]
}

// window sums the buckets of the last d before now.
func (p *pathProgress) window(now time.Time, d time.Duration) (w progressBucket) {
	p.mu.Lock()
	defer p.mu.Unlock()
	from := now.Add(-d).Unix()
	for _, b := range p.buckets {
		if b.second > from {
			w.sent += b.sent
			w.acked += b.acked
			w.received += b.received
		}
	}
	return w
}

// Stall detection: over the last StallTimeout, stream data was sent
// (stallMinSent bytes at least, some packets' worth) and at most
// stallAckedShare of it was acknowledged, while packets kept coming from
// the peer. That is a path that carries small packets (keepalives,
// acknowledgements) and not large ones: a path MTU that fell under the
// packet size path MTU discovery had found, which quic-go never lowers
// again, so it resends the same large packets after longer and longer
// probe timeouts, for ever. A path that carries nothing (an outage)
// brings no packet from the peer: the idle timeout ends such a
// connection. Random loss, even heavy, leaves most data acknowledged.
const (
	stallMinSent    = 2 * wire.MinPacketSize
	stallAckedShare = 0.1
)

// stalled reports whether w, the figures of the last StallTimeout, show
// a stalled path.
func stalled(w progressBucket) bool {
	return w.received > 0 && w.sent >= stallMinSent && float64(w.acked) <= stallAckedShare*float64(w.sent)
}

// watchPath checks p, the progress of a connection, every second (once
// the connection is timeout old) until ctx ends, and returns an error of
// code wire.CodePathStalled once its path stalled for timeout, so that
// the link is re-established.
func watchPath(ctx context.Context, p *pathProgress, timeout time.Duration, moved func()) error {
	start := p.now()
	tick := time.NewTicker(min(time.Second, timeout/4))
	defer tick.Stop()
	moves := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		if n := p.migrations(); n != moves {
			moves = n
			if moved != nil {
				moved()
			}
		}
		now := p.now()
		if now.Sub(start) < timeout {
			continue
		}
		if w := p.window(now, timeout); stalled(w) {
			return wire.Errorf(wire.CodePathStalled, "%d bytes of data sent in %s, %d acknowledged, while %d packets came from the peer: the path MTU fell",
				w.sent, timeout, w.acked, w.received)
		}
	}
}

// smallPaths remembers the hosts whose path stalled, so that the next
// connections with them keep to small packets for a while.
type smallPaths struct {
	mu    sync.Mutex
	until map[string]time.Time // by IP
}

// mark keeps connections with the host of addr to small packets until
// until.
func (p *smallPaths) mark(addr net.Addr, until time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.until == nil {
		p.until = map[string]time.Time{}
	}
	p.until[hostOf(addr)] = until
}

// small reports whether connections with the host of addr keep to small
// packets at now.
func (p *smallPaths) small(addr net.Addr, now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	h := hostOf(addr)
	u, ok := p.until[h]
	if ok && !now.Before(u) {
		delete(p.until, h)
		return false
	}
	return ok
}

func hostOf(addr net.Addr) string {
	if ua, ok := addr.(*net.UDPAddr); ok {
		return ua.IP.String()
	}
	host, _, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	return host
}
