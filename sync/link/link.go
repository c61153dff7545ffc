package link

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/sync/mirror"
	"github.com/weft-io/weft/sync/replicate"
	"github.com/weft-io/weft/sync/wire"
	"golang.org/x/sync/errgroup"
)

// handshakeTimeout bounds dialling, opening or accepting the control
// stream, the handshake, and an Open frame's arrival.
const handshakeTimeout = 10 * time.Second

// session is one connection's worth of replication, either side.
type session struct {
	conn         *quic.Conn
	mirrors      mirror.Budget // what mirrors on the connection draw from
	backlogEvery time.Duration // how often a lasting backlog is reported; 0: the default
	replicate.Session
}

// run replicates one stream over the QUIC stream qs at the stream's
// priority: this node sends it when send is set, receives it otherwise.
// allow, if set, decides the topics (see replicate.Session.Run).
func (s *session) run(ctx context.Context, qs *quic.Stream, fc *wire.Conn, path string, send bool, parts int, allow func(topic string) error) error {
	qs.SetPriority(replicate.Urgency(path), true)
	err := s.Run(ctx, fc, path, send, parts, allow)
	return s.end(ctx, qs, fc, path, send, err, false)
}

// end ends one replicated stream on err. An error of code wire.CodeStream
// concerns this stream only (the peer refused it, or this node cannot
// hold it): the reason goes to the log and to the stream's figures, the
// peer learns it (an Error frame when tell is set, else the QUIC stream's
// error code), and the stream stays quiet until the link ends while the
// link's other streams go on. Any other error is returned, to take the
// connection down; nil is returned as is.
func (s *session) end(ctx context.Context, qs *quic.Stream, fc *wire.Conn, path string, send bool, err error, tell bool) error {
	if err == nil || ctx.Err() != nil || wire.CodeOf(err) != wire.CodeStream {
		return err
	}
	dir := replicate.DirReceive
	if send {
		dir = replicate.DirSend
	}
	s.Logger.Warn("stream not replicated", "stream", path, "direction", dir, "err", err)
	s.Link.Stream(dir, path).SetErr(err)
	if tell {
		var we *wire.Error
		if errors.As(err, &we) {
			fc.Send(we)
		}
		qs.Close()
	} else {
		qs.CancelRead(quic.StreamErrorCode(wire.CodeStream))
		qs.CancelWrite(quic.StreamErrorCode(wire.CodeStream))
	}
	<-ctx.Done()
	return nil
}

// closeOnEnd, run in a session's errgroup, closes conn once the group's
// context ends, with the code of the first failure (or of a shutdown when
// ctx, the session's parent, ended), so that the session's reads and
// writes return and the group can finish.
func closeOnEnd(ctx, gctx context.Context, conn *quic.Conn, shutdown func() error) func() error {
	return func() error {
		<-gctx.Done()
		cause := context.Cause(gctx)
		if ctx.Err() != nil {
			cause = shutdown()
		}
		wire.Close(conn, cause)
		return nil
	}
}

// selfIdentity reads this node's identity from its certificate.
func selfIdentity(pair *certs.KeyPair, now time.Time) (certs.Identity, error) {
	c := pair.Certificate()
	if c == nil || len(c.Certificate) == 0 {
		return certs.Identity{}, errors.New("link: no node certificate")
	}
	leaf := c.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return certs.Identity{}, fmt.Errorf("link: node certificate: %w", err)
		}
	}
	id, err := certs.NodeIdentity(leaf, now)
	if err != nil {
		return certs.Identity{}, fmt.Errorf("link: node certificate: %w", err)
	}
	return id, nil
}

// control runs the link's control stream after the handshake: this side
// reports its backlog on it when both speak wire.FeatureBacklog, and it
// reads the peer's reports until the stream ends; the peer sends nothing
// else on it but an Error before closing.
func (s *session) control(ctx context.Context, g *errgroup.Group, fc *wire.Conn, features []string) {
	backlog := slices.Contains(features, wire.FeatureBacklog)
	if backlog {
		g.Go(func() error { return s.ReportBacklog(ctx, fc, s.backlogEvery) })
	}
	g.Go(func() error {
		for {
			m, err := fc.Recv()
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return fmt.Errorf("control stream: %w", wire.FromQUIC(err))
			}
			switch m := m.(type) {
			case *wire.Error:
				m.Remote = true
				return m
			case *wire.Backlog:
				if backlog {
					s.Link.TakeBacklog(m, s.Now())
					continue
				}
			}
			return wire.Errorf(wire.CodeProtocol, "unexpected frame %T on the control stream", m)
		}
	})
}
