package gateway

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// errPacketTooLarge is returned by a guardConn read that met a packet
// larger than the limit.
var errPacketTooLarge = fmt.Errorf("gateway: %w", packets.ErrPacketTooLarge)

// errMalformedLength is returned for a remaining length of more than four
// bytes.
var errMalformedLength = fmt.Errorf("gateway: %w", packets.ErrMalformedVariableByteInteger)

// guardConn is the connection mochi reads and writes. It follows the
// MQTT framing of the bytes read (fixed headers only, bodies are skipped)
// to refuse a packet larger than the limit before mochi allocates it,
// telling an MQTT 5 device why (DISCONNECT 0x95), and it counts the bytes
// in and out.
type guardConn struct {
	net.Conn
	sess *session
	max  int
	m    *Metrics

	// Framing state, used by the reading goroutine only.
	state     int // 0 first byte, 1 remaining length, 2 body
	remaining int // body bytes still to pass
	length    int // remaining length being decoded
	lenBytes  int
	err       error

	// Writes: while corked they gather in wbuf and go out in one write.
	wmu    sync.Mutex
	corked bool
	wbuf   []byte
}

func (g *guardConn) Read(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	n, err := g.Conn.Read(p)
	if n > 0 {
		g.m.bytesIn.Add(uint64(n))
		if ferr := g.scan(p[:n]); ferr != nil {
			g.err = ferr
			g.reject(ferr)
			return 0, ferr
		}
	}
	return n, err
}

func (g *guardConn) Write(p []byte) (int, error) {
	g.wmu.Lock()
	defer g.wmu.Unlock()
	if g.corked {
		g.wbuf = append(g.wbuf, p...)
		return len(p), nil
	}
	n, err := g.Conn.Write(p)
	g.m.bytesOut.Add(uint64(n))
	return n, err
}

// cork holds back writes until uncork, which sends them in one TLS
// record: the PUBACKs of a batch cost one write instead of one each.
func (g *guardConn) cork() {
	g.wmu.Lock()
	g.corked = true
	g.wmu.Unlock()
}

func (g *guardConn) uncork() {
	g.wmu.Lock()
	defer g.wmu.Unlock()
	g.corked = false
	if len(g.wbuf) > 0 {
		n, _ := g.Conn.Write(g.wbuf)
		g.m.bytesOut.Add(uint64(n))
		g.wbuf = g.wbuf[:0]
	}
}

// scan advances the framing state over b.
func (g *guardConn) scan(b []byte) error {
	for i := 0; i < len(b); {
		switch g.state {
		case 0:
			g.state, g.length, g.lenBytes = 1, 0, 0
			i++
		case 1:
			c := b[i]
			i++
			if g.lenBytes == 4 {
				return errMalformedLength
			}
			g.length |= int(c&0x7f) << (7 * g.lenBytes)
			g.lenBytes++
			if c&0x80 != 0 {
				continue
			}
			if 1+g.lenBytes+g.length > g.max {
				return errPacketTooLarge
			}
			g.remaining = g.length
			g.state = 2
			if g.remaining == 0 {
				g.state = 0
			}
		case 2:
			k := min(g.remaining, len(b)-i)
			g.remaining -= k
			i += k
			if g.remaining == 0 {
				g.state = 0
			}
		}
	}
	return nil
}

// reject tells an MQTT 5 device why its connection is closed.
func (g *guardConn) reject(err error) {
	if !errors.Is(err, errPacketTooLarge) {
		g.sess.markClose(DisconnectMalformed)
		return
	}
	g.sess.markClose(DisconnectPacketTooLarge)
	if g.sess.version.Load() != 5 {
		return
	}
	// DISCONNECT, remaining length 1, reason code 0x95. A single write:
	// the TLS connection never interleaves it with another packet.
	g.Conn.SetWriteDeadline(time.Now().Add(time.Second)) // the connection is closed next anyway
	g.Conn.Write([]byte{packets.Disconnect << 4, 1, codePacketTooLarge.Code})
}
