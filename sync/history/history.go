// Package history carries a device's messages from an edge to its core
// over their sync link, for devices whose messages the core does not hold
// (/telemetry/by_device is not replicated by default). The core opens a
// QUIC stream of the link and sends a HistoryRequest (Fetch); the edge
// answers it from its store with a HistoryResponse (Answer).
package history

import (
	"context"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/weft-io/weft/store"
	"github.com/weft-io/weft/sync/wire"
)

// Timeout bounds a request whose context has no deadline, and an answer.
const Timeout = 30 * time.Second

// Func reads a device's messages from an edge's /telemetry/by_device
// between from and to (from zero: the latest limit), oldest first; more
// says the range holds more.
type Func func(ctx context.Context, device string, from, to time.Time, limit int) (msgs []store.Message, more bool, err error)

// Fetch asks the edge at the other end of conn for a device's messages.
func Fetch(ctx context.Context, conn *quic.Conn, device string, from, to time.Time, limit int) ([]store.Message, bool, error) {
	qs, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, false, wire.FromQUIC(err)
	}
	defer qs.CancelRead(0)
	defer qs.Close()
	if d, ok := ctx.Deadline(); ok {
		qs.SetDeadline(d)
	} else {
		qs.SetDeadline(time.Now().Add(Timeout)) // QUIC's deadlines are on the wall clock
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

// Answer serves one request the core sent on qs from read; a nil read
// refuses it, naming self (the edge) in the refusal. Whatever happens
// concerns this request only, so nothing is returned.
func Answer(ctx context.Context, qs *quic.Stream, read Func, self string) {
	defer qs.CancelRead(0)
	defer qs.Close()
	qs.SetDeadline(time.Now().Add(Timeout)) // QUIC's deadlines are on the wall clock
	fc := wire.NewConn(qs, qs)
	m, err := fc.Recv()
	if err != nil {
		return // the core gave up
	}
	req, ok := m.(*wire.HistoryRequest)
	if !ok {
		fc.Send(wire.Errorf(wire.CodeProtocol, "expected a history request, got %T", m))
		return
	}
	if read == nil {
		fc.Send(wire.Errorf(wire.CodeStream, "edge %s keeps no history", self))
		return
	}
	var from time.Time
	if req.From != 0 {
		from = time.Unix(0, req.From)
	}
	msgs, more, err := read(ctx, req.Device, from, time.Unix(0, req.To), req.Limit)
	if err != nil {
		fc.Send(wire.Errorf(wire.CodeStore, "history of %s: %v", req.Device, err))
		return
	}
	resp := &wire.HistoryResponse{Messages: make([]wire.HistoryMessage, len(msgs)), More: more}
	for i, m := range msgs {
		resp.Messages[i] = wire.HistoryMessage{Offset: m.Offset, Partition: m.Partition, Key: m.Key, Value: m.Value,
			Headers: m.Headers, Time: m.Timestamp.UnixNano()}
	}
	fc.Send(resp)
}
