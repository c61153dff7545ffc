package mirror

import (
	"context"
	"time"

	"github.com/weft-io/weft/store"
	"github.com/weft-io/weft/sync/wire"
)

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
		for i, e := range entries {
			chunk.Entries[i] = wire.MirrorEntry{Key: e.Key, Value: e.Value, Delete: e.Delete}
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
