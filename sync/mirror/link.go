package mirror

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/weft-io/weft/store"
	"github.com/weft-io/weft/sync/wire"
)

// DefaultInterval is how often the receiving side of a mirror asks for
// news.
const DefaultInterval = 5 * time.Second

// Keep runs the edge's side of the mirror spec over conn, a sync link, for
// as long as ctx lasts: a mirror that fails is logged and opened again
// after a pause, without taking the link's streams down with it. interval
// is how often a receiving edge asks for news.
func Keep(ctx context.Context, conn *quic.Conn, st *store.Store, spec Spec, interval time.Duration, budget Budget, log *slog.Logger) {
	pause := max(interval, time.Second)
	for {
		err := Open(ctx, conn, st, spec, interval, budget)
		if ctx.Err() != nil {
			return
		}
		log.Warn("mirror stopped; trying again", "volume", spec.Volume, "dir", spec.Dir, "in", pause, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
		pause = min(2*pause, time.Minute)
	}
}

// Budget is the bandwidth budget of the link a mirror runs on, shared with
// the link's streams (the link's replicate.LinkLimiter): the sending side
// of a mirror takes the bytes of each chunk from it before sending the
// chunk, at bulk priority. A nil Budget is no cap.
type Budget interface {
	Wait(ctx context.Context, n int, urgent bool) error
}

// Open opens a QUIC stream of conn at bulk priority for the mirror spec,
// asks the core for it with a Mirror frame and runs the edge's side of it
// (the destination of a mirror down, the source of one up) until the
// stream or ctx ends. budget caps what the edge sends (nil: no cap).
func Open(ctx context.Context, conn *quic.Conn, st *store.Store, spec Spec, interval time.Duration, budget Budget) error {
	qs, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return wire.FromQUIC(err)
	}
	qs.SetPriority(8, false) // bulk: after control, updates, shadows and uplink
	defer qs.CancelRead(0)
	defer qs.CancelWrite(0)
	fc := wire.NewConn(qs, qs)
	if err := fc.Send(&wire.Mirror{Volume: spec.Volume, Dir: spec.Dir}); err != nil {
		return wire.FromQUIC(err)
	}
	if err := ensureVolume(ctx, st, spec.Volume); err != nil {
		return err
	}
	if spec.Dir == wire.Down {
		err = ServeDest(ctx, fc, &Dest{Store: st, Volume: spec.Volume}, interval)
	} else {
		err = ServeSource(ctx, fc, &Source{Store: st, Volume: spec.Volume, Budget: budget})
	}
	return wire.FromQUIC(err)
}

// Serve runs the core's side of the mirror m that edge opened on c: a
// volume of down goes to the edge, one of up comes from it into the core's
// "<volume>.<edge>", any other is refused with an Error frame. It returns
// when the mirror ends; a mirror that fails or is refused ends its stream,
// not the link, so only a store error of the core's comes back. budget
// caps what the core sends (nil: no cap).
func Serve(ctx context.Context, c Conn, st *store.Store, m *wire.Mirror, edge string, down, up []string, interval time.Duration, budget Budget, log *slog.Logger) error {
	log = log.With("edge", edge, "volume", m.Volume)
	refuse := func(err *wire.Error) error {
		log.Warn("mirror refused", "reason", err.Error())
		c.Send(err)
		return nil // the stream ends, the link stays
	}
	var err error
	switch m.Dir {
	case wire.Down:
		if !slices.Contains(down, m.Volume) {
			return refuse(wire.Errorf(wire.CodeStream, "volume /%s is not mirrored to edges", m.Volume))
		}
		src := &Source{Store: st, Volume: m.Volume, Dest: edge, Budget: budget}
		p := policyFrom(ctx)
		if p.Filter != nil {
			src.Filter = p.Filter(m.Volume, edge)
		}
		if p.Sent != nil {
			vol := m.Volume
			src.Sent = func(n int) { p.Sent(vol, edge, n) }
		}
		err = ServeSource(ctx, c, src)
	case wire.Up:
		if !slices.Contains(up, m.Volume) {
			return refuse(wire.Errorf(wire.CodeStream, "volume /%s is not mirrored from edges", m.Volume))
		}
		vol := m.Volume + "." + edge
		if err := ensureVolume(ctx, st, vol); err != nil {
			return err
		}
		err = ServeDest(ctx, c, &Dest{Store: st, Volume: vol}, interval)
	default:
		return refuse(wire.Errorf(wire.CodeProtocol, "mirror of /%s: bad direction %d", m.Volume, m.Dir))
	}
	if err != nil && ctx.Err() == nil {
		log.Warn("mirror stopped", "err", err) // the edge opens it again
	}
	return nil
}

func ensureVolume(ctx context.Context, st *store.Store, vol string) error {
	if err := st.CreateVolume(ctx, vol, store.VolumeOptions{}); err != nil && !errors.Is(err, store.ErrExists) {
		return fmt.Errorf("mirror: volume /%s: %w", vol, err)
	}
	return nil
}

// Conn is the frame connection a mirror runs on: a QUIC stream of a sync
// link (*wire.Conn).
type Conn interface {
	Send(wire.Message) error
	Recv() (wire.Message, error)
}

var _ Conn = (*wire.Conn)(nil)

// ServeSource answers a receiving side on c until the connection ends:
// each MirrorState gets the update to send and its entries.
func ServeSource(ctx context.Context, c Conn, src *Source) error {
	for ctx.Err() == nil {
		m, err := c.Recv()
		if err != nil {
			return err
		}
		switch m := m.(type) {
		case *wire.MirrorState:
			if err := sendUpdate(ctx, c, src, m); err != nil {
				return err
			}
		case *wire.MirrorPublished:
			if err := src.Published(ctx, m.Have); err != nil {
				return err
			}
		case *wire.Error:
			m.Remote = true
			return m
		default:
			return wire.Errorf(wire.CodeProtocol, "mirror of /%s: unexpected %T", src.Volume, m)
		}
	}
	return ctx.Err()
}

func sendUpdate(ctx context.Context, c Conn, src *Source, st *wire.MirrorState) error {
	u, ok, err := src.Offer(ctx, State{Have: st.Have, Pending: st.Pending, After: st.After})
	if err != nil {
		return wire.Errorf(wire.CodeStore, "mirror of /%s: %v", src.Volume, err)
	}
	if !ok {
		return c.Send(&wire.MirrorUpdate{})
	}
	if err := c.Send(&wire.MirrorUpdate{From: u.From, To: u.To}); err != nil {
		return err
	}
	var after []byte
	if st.Pending == u.To {
		after = st.After // resume after what the receiver staged
	}
	err = src.Send(ctx, u, after, func(entries []store.DeltaEntry) error {
		chunk := &wire.MirrorChunk{Entries: make([]wire.MirrorEntry, len(entries))}
		size := 0
		for i, e := range entries {
			chunk.Entries[i] = wire.MirrorEntry{Key: e.Key, Value: e.Value, Delete: e.Delete}
			size += len(e.Key) + len(e.Value) + 16
		}
		if src.Budget != nil {
			if err := src.Budget.Wait(ctx, size, false); err != nil {
				return err
			}
		}
		return c.Send(chunk)
	})
	if err != nil {
		return err
	}
	return c.Send(&wire.MirrorEnd{})
}

// ServeDest keeps dst up to date from the sending side on c: it asks for
// an update, stages and publishes it, and asks again every interval,
// until the connection or ctx ends.
func ServeDest(ctx context.Context, c Conn, dst *Dest, interval time.Duration) error {
	for {
		st, err := dst.State(ctx)
		if err != nil {
			return wire.Errorf(wire.CodeStore, "mirror of /%s: %v", dst.Volume, err)
		}
		if err := c.Send(&wire.MirrorState{Have: st.Have, Pending: st.Pending, After: st.After}); err != nil {
			return err
		}
		m, err := c.Recv()
		if err != nil {
			return err
		}
		u, ok := m.(*wire.MirrorUpdate)
		if !ok {
			return unexpected(m, dst.Volume)
		}
		if u.To != "" {
			err := dst.Receive(ctx, Update{From: u.From, To: u.To}, func() ([]store.DeltaEntry, error) {
				m, err := c.Recv()
				if err != nil {
					return nil, err
				}
				switch m := m.(type) {
				case *wire.MirrorChunk:
					out := make([]store.DeltaEntry, len(m.Entries))
					for i, e := range m.Entries {
						out[i] = store.DeltaEntry{Key: e.Key, Value: e.Value, Delete: e.Delete}
					}
					return out, nil
				case *wire.MirrorEnd:
					return nil, nil
				default:
					return nil, unexpected(m, dst.Volume)
				}
			})
			if err != nil {
				return err
			}
			if err := c.Send(&wire.MirrorPublished{Have: u.To}); err != nil {
				return err
			}
			continue // there may be more already
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}

func unexpected(m wire.Message, vol string) error {
	if e, ok := m.(*wire.Error); ok {
		e.Remote = true
		return e
	}
	return wire.Errorf(wire.CodeProtocol, "mirror of /%s: unexpected %T", vol, m)
}
