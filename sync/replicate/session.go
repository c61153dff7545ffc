package replicate

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/store"
	"github.com/weft-io/weft/sync/wire"
)

// DefaultUp returns the streams an edge sends to its core.
func DefaultUp() []string {
	return []string{store.UplinkStream, store.ShadowChanges, store.AuditStream}
}

// DefaultDown returns the streams a core sends to its edges.
func DefaultDown() []string { return []string{store.UpdatesStream} }

// session is one connection's worth of replication, either side.
type session struct {
	conn     *quic.Conn
	store    *store.Store
	link     *linkStats
	limit    *sharedLimiter
	window   int
	maxBytes int
	compress bool
	recheck  time.Duration // of the senders' withheld topics; 0: defaultRecheck
	now      func() time.Time
	logger   *slog.Logger
}

// stream runs one replicated stream over the QUIC stream qs: this node
// sends it when send is set, receives it otherwise. allow, if set, decides
// the topics: a receiver refuses the others, a sender withholds them.
func (s *session) stream(ctx context.Context, qs *quic.Stream, fc *wire.Conn, path string, send bool, parts int, allow func(topic string) error) error {
	qs.SetPriority(urgency(path), true)
	log := s.logger.With("stream", path)
	var err error
	dir := dirReceive
	if send {
		dir = dirSend
	}
	s.link.stream(dir, path).setErr(nil)
	if send {
		log.Debug("sending")
		sd := &sender{log: s.store.Stream(path), path: path, parts: parts, conn: fc, stats: s.link.stream(dirSend, path),
			limit: s.limit, window: s.window, maxBytes: s.maxBytes, compress: s.compress, now: s.now, logger: log, allow: allow, recheck: s.recheck}
		err = sd.run(ctx)
	} else {
		log.Debug("receiving")
		rc := &receiver{replica: s.store, log: s.store.Stream(path), path: path, allow: allow, conn: fc, stats: s.link.stream(dirReceive, path), now: s.now, logger: log}
		err = rc.run(ctx)
	}
	if err != nil && ctx.Err() == nil && wire.CodeOf(err) == wire.CodeStream {
		// One stream that cannot be replicated (the peer refused it) does
		// not take the link's other streams down.
		log.Warn("stream stopped", "err", err)
		s.link.stream(dir, path).setErr(err)
		qs.CancelRead(quic.StreamErrorCode(wire.CodeStream))
		qs.CancelWrite(quic.StreamErrorCode(wire.CodeStream))
		<-ctx.Done()
		return nil
	}
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return err
}

// ensureStream makes sure the replica of path exists with parts
// partitions, creating it if needed, and returns the partition count.
func ensureStream(ctx context.Context, st *store.Store, path string, parts int) (int, error) {
	info, err := st.Stat(ctx, path)
	if errors.Is(err, store.ErrNotFound) && parts > 0 {
		err = st.CreateStream(ctx, path, store.StreamOptions{Partitions: parts})
		if errors.Is(err, store.ErrExists) {
			err = nil
		}
		if err != nil {
			return 0, wire.Errorf(wire.CodeStream, "%s: cannot create the replica: %v", path, err)
		}
		info, err = st.Stat(ctx, path)
	}
	if err != nil {
		return 0, wire.Errorf(wire.CodeStream, "%s: %v", path, err)
	}
	if info.Kind != store.KindStream {
		return 0, wire.Errorf(wire.CodeStream, "%s is a %s, not a stream", path, info.Kind)
	}
	if parts > 0 && info.Partitions != parts {
		return 0, wire.Errorf(wire.CodeStream, "%s has %d partitions here and %d at the source", path, info.Partitions, parts)
	}
	return info.Partitions, nil
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
		return certs.Identity{}, errors.New("replicate: no node certificate")
	}
	leaf := c.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return certs.Identity{}, fmt.Errorf("replicate: node certificate: %w", err)
		}
	}
	id, err := certs.NodeIdentity(leaf, now)
	if err != nil {
		return certs.Identity{}, fmt.Errorf("replicate: node certificate: %w", err)
	}
	return id, nil
}

// readControl reads the control stream until it ends; the peer sends
// nothing on it after the handshake but an Error before closing.
func readControl(ctx context.Context, fc *wire.Conn) error {
	for {
		m, err := fc.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("control stream: %w", wire.FromQUIC(err))
		}
		if e, ok := m.(*wire.Error); ok {
			e.Remote = true
			return e
		}
		return wire.Errorf(wire.CodeProtocol, "unexpected frame %T on the control stream", m)
	}
}
