package console

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/weft-io/weft/api"
	"github.com/weft-io/weft/shadow"
	"github.com/weft-io/weft/store"
)

// Pacing of the event streams: at most one event of a kind per interval,
// so that a busy fleet does not make pages refetch without pause.
const (
	fleetEvery     = 2 * time.Second
	shadowEvery    = 250 * time.Millisecond
	telemetryEvery = time.Second
)

// liveFleet serves GET /live/fleet: an event "fleet" whenever shadows
// changed (at most one every fleetEvery), woken by commits to
// /shadows/changes.
func (s *Server) liveFleet(w http.ResponseWriter, r *http.Request) {
	ev, ok := s.api.StartSSEFor(w, r, sessionOf(r.Context()).claims)
	if !ok {
		return
	}
	ctx := r.Context()
	changes := s.st.Stream(store.ShadowChanges)
	for {
		changed := changes.Changed()
		if !s.waitOrKeepAlive(ctx, ev, changed) {
			return
		}
		if ev.Event("", "fleet", []byte("{}")) != nil {
			return
		}
		if !sleep(ctx, fleetEvery) {
			return
		}
	}
}

// liveDevice serves GET /live/devices/{id}: an event "shadow" when the
// device's shadow has a new version, "telemetry" when it sent messages,
// each woken by commits to /shadows/changes and /telemetry/by_device.
func (s *Server) liveDevice(w http.ResponseWriter, r *http.Request) {
	sess := sessionOf(r.Context())
	id := r.PathValue("id")
	ctx := r.Context()
	doc, err := s.api.Device(ctx, sess.claims, id)
	if err != nil {
		http.Error(w, problemText(err), http.StatusNotFound)
		return
	}
	ev, ok := s.api.StartSSEFor(w, r, sess.claims)
	if !ok {
		return
	}
	changes, byDevice := s.st.Stream(store.ShadowChanges), s.st.Stream(store.ByDeviceStream)
	version := doc.Version
	_, next, _ := byDevice.Bounds(ctx, id, 0)
	var lastShadow, lastTelemetry time.Time
	keepAlive := time.NewTicker(api.SSEKeepAlive)
	defer keepAlive.Stop()
	for {
		shadowChanged, telemetryChanged := changes.Changed(), byDevice.Changed()
		// Check before waiting: a change may have come since the last
		// look.
		if d, err := shadow.Get(ctx, s.st, id); err == nil && d.Version != version {
			if wait := shadowEvery - time.Since(lastShadow); wait > 0 && !sleep(ctx, wait) {
				return
			}
			version, lastShadow = d.Version, time.Now()
			if ev.Event("", "shadow", []byte(`{"version":`+itoa(d.Version)+`}`)) != nil {
				return
			}
			continue
		}
		if _, n, err := byDevice.Bounds(ctx, id, 0); err == nil && n != next {
			if wait := telemetryEvery - time.Since(lastTelemetry); wait > 0 && !sleep(ctx, wait) {
				return
			}
			next, lastTelemetry = n, time.Now()
			if ev.Event("", "telemetry", []byte(`{"next":`+itoa(n)+`}`)) != nil {
				return
			}
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-shadowChanged:
		case <-telemetryChanged:
		case <-keepAlive.C:
			if ev.Comment("keep-alive") != nil {
				return
			}
		}
	}
}

// waitOrKeepAlive waits for changed, sending keep-alive comments; false
// when the client went.
func (s *Server) waitOrKeepAlive(ctx context.Context, ev *api.SSE, changed <-chan struct{}) bool {
	t := time.NewTicker(api.SSEKeepAlive)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-changed:
			return true
		case <-t.C:
			if ev.Comment("keep-alive") != nil {
				return false
			}
		}
	}
}

// sleep waits d unless ctx ends first (false).
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }
