package gateway

import (
	"context"
	"encoding/json"
	"strconv"
	"time"

	"github.com/weft-io/weft/shadow"
	"github.com/weft-io/weft/store"
)

// Convergence, as AWS IoT's shadows do it: whenever a device's report
// leaves its reported state differing from the desired state, the device
// is sent the current delta again, so that a device that applied an old
// delta (deltas of a persistent session delivered in a bad order, a value
// set by hand) is corrected at its next report instead of staying on the
// old value. The desired state is the one of the newest delta the edge
// received (its header desired); the delta goes out on
// updates/device/<id>/shadow/delta like any other, with the version of
// that desired state, not retained (the retained one is the stream's).

// resendEvery is how soon the same delta of the same version is sent to a
// device again: a device that refuses a value and reports again must not
// be sent it at every report.
const resendEvery = 10 * time.Second

// sentDelta is the last delta convergence sent to a device.
type sentDelta struct {
	version, delta string
	at             time.Time
}

// convergeDecision is the delta to send a device again, if any, given the
// desired state of its newest delta and version, its reported state after
// a report, and what convergence last sent it. It is pure.
func convergeDecision(desired, reported map[string]any, version string, last sentDelta, now time.Time) (delta []byte, send bool) {
	d := shadow.Delta(desired, reported)
	if len(d) == 0 {
		return nil, false
	}
	b, err := json.Marshal(d)
	if err != nil {
		return nil, false
	}
	if last.version == version && last.delta == string(b) && now.Sub(last.at) < resendEvery {
		return nil, false
	}
	return b, true
}

// newestDesired returns the desired state and version of the newest delta
// for device id in /updates/down (the highest shadow version among the
// last messages of its topic in each partition); ok is false when the
// edge holds none.
func newestDesired(ctx context.Context, st *store.Store, id string) (desired map[string]any, version string, ok bool) {
	updates := st.Stream(store.UpdatesStream)
	info, err := st.Stat(ctx, store.UpdatesStream)
	if err != nil {
		return nil, "", false
	}
	topic := shadow.DeviceTopic(id)
	best := uint64(0)
	for part := range max(info.Partitions, 1) {
		low, next, err := updates.Bounds(ctx, topic, part)
		if err != nil || next == low {
			continue
		}
		from := max(low, next-min(next, 16))
		msgs, err := updates.Read(ctx, topic, part, from, store.ReadOptions{Limit: 16})
		if err != nil {
			continue
		}
		for _, m := range msgs {
			if m.Headers[HeaderSubtopic] != shadow.DeltaSubtopic || m.Headers[HeaderDesired] == "" {
				continue
			}
			v, err := strconv.ParseUint(m.Headers[HeaderShadowVersion], 10, 64)
			if err != nil || v < best {
				continue
			}
			var d map[string]any
			if json.Unmarshal([]byte(m.Headers[HeaderDesired]), &d) != nil {
				continue
			}
			best, desired, version, ok = v, d, m.Headers[HeaderShadowVersion], true
		}
	}
	return desired, version, ok
}

// converge sends device id its current delta again if its reported state
// (after a report) differs from the desired state the edge last received.
func (s *Server) converge(ctx context.Context, id string, reported map[string]any) {
	desired, version, ok := newestDesired(ctx, s.cfg.Store, id)
	if !ok {
		return
	}
	s.convergeMu.Lock()
	last := s.converged[id]
	now := s.cfg.Now()
	delta, send := convergeDecision(desired, reported, version, last, now)
	if send {
		if len(s.converged) >= 100_000 {
			clear(s.converged) // a bound, not a ledger: at worst a delta goes out once more
		}
		s.converged[id] = sentDelta{version: version, delta: string(delta), at: now}
	}
	s.convergeMu.Unlock()
	if !send {
		return
	}
	s.down.publish(shadow.DeviceTopic(id), store.Message{Value: delta, Headers: map[string]string{
		HeaderSubtopic: shadow.DeltaSubtopic, HeaderShadowVersion: version, HeaderRetain: "false",
	}})
	s.metrics.deltasResent.Add(1)
}
