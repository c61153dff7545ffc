package replicate

import (
	"context"
	"fmt"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/weft-io/weft/store"
	"github.com/weft-io/weft/sync/wire"
	"golang.org/x/sync/errgroup"
)

// HistoryFunc reads a device's messages from an edge's
// /telemetry/by_device between from and to (from zero: the latest limit),
// oldest first; more says the range holds more.
type HistoryFunc func(ctx context.Context, device string, from, to time.Time, limit int) (msgs []store.Message, more bool, err error)

// History asks the connected edge for a device's messages the core does
// not hold, over the edge's link.
func (s *Server) History(ctx context.Context, edge, device string, from, to time.Time, limit int) ([]store.Message, bool, error) {
	s.mu.Lock()
	sc := s.sessions[edge]
	s.mu.Unlock()
	if sc == nil {
		return nil, false, fmt.Errorf("replicate: edge %s is not connected", edge)
	}
	qs, err := sc.conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, false, wire.FromQUIC(err)
	}
	defer qs.CancelRead(0)
	defer qs.Close()
	if d, ok := ctx.Deadline(); ok {
		qs.SetDeadline(d)
	} else {
		qs.SetDeadline(time.Now().Add(30 * time.Second))
	}
	fc := wire.NewConn(qs, qs)
	req := &wire.HistoryRequest{Device: device, To: to.UnixNano(), Limit: limit}
	if !from.IsZero() {
		req.From = from.UnixNano()
	}
	if err := fc.Send(req); err != nil {
		return nil, false, wire.FromQUIC(err)
	}
	m, err := fc.Recv()
	if err != nil {
		return nil, false, wire.FromQUIC(err)
	}
	switch m := m.(type) {
	case *wire.HistoryResponse:
		out := make([]store.Message, len(m.Messages))
		for i, h := range m.Messages {
			out[i] = store.Message{Offset: h.Offset, Partition: h.Partition, Key: h.Key, Value: h.Value,
				Headers: h.Headers, Timestamp: time.Unix(0, h.Time).UTC()}
		}
		return out, m.More, nil
	case *wire.Error:
		m.Remote = true
		return nil, false, m
	default:
		return nil, false, wire.Errorf(wire.CodeProtocol, "history: unexpected %T", m)
	}
}

// answerHistory serves the streams a core opens on the link: history
// requests, answered from the edge's store.
func (l *Link) answerHistory(ctx context.Context, conn *quic.Conn, g *errgroup.Group) error {
	for {
		qs, err := conn.AcceptStream(ctx)
		if err != nil {
			return wire.FromQUIC(err)
		}
		g.Go(func() error {
			defer qs.CancelRead(0)
			defer qs.Close()
			qs.SetDeadline(time.Now().Add(30 * time.Second))
			fc := wire.NewConn(qs, qs)
			m, err := fc.Recv()
			if err != nil {
				return nil // the core gave up: not the link's concern
			}
			req, ok := m.(*wire.HistoryRequest)
			if !ok {
				fc.Send(wire.Errorf(wire.CodeProtocol, "expected a history request, got %T", m))
				return nil
			}
			if l.cfg.History == nil {
				fc.Send(wire.Errorf(wire.CodeStream, "edge %s keeps no history", l.self.Name))
				return nil
			}
			var from time.Time
			if req.From != 0 {
				from = time.Unix(0, req.From)
			}
			msgs, more, err := l.cfg.History(ctx, req.Device, from, time.Unix(0, req.To), req.Limit)
			if err != nil {
				fc.Send(wire.Errorf(wire.CodeStore, "history of %s: %v", req.Device, err))
				return nil
			}
			resp := &wire.HistoryResponse{Messages: make([]wire.HistoryMessage, len(msgs)), More: more}
			for i, m := range msgs {
				resp.Messages[i] = wire.HistoryMessage{Offset: m.Offset, Partition: m.Partition, Key: m.Key, Value: m.Value,
					Headers: m.Headers, Time: m.Timestamp.UnixNano()}
			}
			fc.Send(resp)
			return nil
		})
	}
}
