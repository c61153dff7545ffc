package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/weft-io/weft/certs"
	"net/http"
	"strconv"
	"time"

	"github.com/weft-io/weft/store"
)

// SSEKeepAlive is how often a Server-Sent Events stream with nothing to
// say sends a comment, so that proxies keep it open and a client that
// went away is noticed.
const SSEKeepAlive = 15 * time.Second

// SSE writes Server-Sent Events (text/event-stream) to a response.
type SSE struct {
	w            http.ResponseWriter
	rc           *http.ResponseController
	writeTimeout time.Duration
}

// NewSSE starts an event stream on w: it writes the headers and flushes
// them. It fails if w cannot flush. The stream is exempt from the
// server's read and write timeouts and has the default limits of its own
// instead (Limits.StreamWriteTimeout, Limits.StreamMaxAge). Server.StartSSE
// also counts it against the node's stream caps.
func NewSSE(w http.ResponseWriter) (*SSE, error) {
	return newSSE(w, Limits{}.WithDefaults())
}

// newSSE is NewSSE with the stream limits of l. It lifts the write
// deadline the server set for the request (each event gets its own), and
// moves the read deadline to the stream's end of life: the server cancels
// a request's context when a read of its connection fails, so that the
// handler's loop ends then.
func newSSE(w http.ResponseWriter, l Limits) (*SSE, error) {
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Accel-Buffering", "no")
	// Not supported by every ResponseWriter (a recorder in tests): such a
	// writer has no deadlines to lift either.
	rc.SetReadDeadline(time.Now().Add(l.StreamMaxAge))
	rc.SetWriteDeadline(time.Now().Add(l.StreamWriteTimeout))
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return nil, fmt.Errorf("api: event stream: %w", err)
	}
	return &SSE{w: w, rc: rc, writeTimeout: l.StreamWriteTimeout}, nil
}

// StartSSE starts an event stream on w for r, as NewSSE does with the
// Server's stream limits, once the stream fits under the node's caps
// (Limits.MaxStreams, MaxStreamsPerToken by the token's subject); the
// stream's slot is given back when r's handler returns. Past a cap, or if
// w cannot flush, it answers r with a problem document (429 Too many
// streams naming the cap) and returns false.
func (s *Server) StartSSE(w http.ResponseWriter, r *http.Request) (*SSE, bool) {
	return s.StartSSEFor(w, r, Claims(r.Context()))
}

// StartSSEFor is StartSSE for a request whose token is c, for callers
// that authenticate requests themselves (the console's sessions).
func (s *Server) StartSSEFor(w http.ResponseWriter, r *http.Request, c *certs.TokenClaims) (*SSE, bool) {
	sub := ""
	if c != nil {
		sub = c.Subject
	}
	release, refused := s.streams.acquire(sub)
	if release == nil {
		w.Header().Set("Retry-After", "10")
		Problem(w, http.StatusTooManyRequests, "Too many streams", refused)
		return nil, false
	}
	context.AfterFunc(r.Context(), release) // the server cancels it once the handler returns
	ev, err := newSSE(w, s.limits)
	if err != nil {
		release()
		s.Error(w, r, err)
		return nil, false
	}
	return ev, true
}

// Event writes one event (id may be empty) with data on one line, and
// flushes it.
func (e *SSE) Event(id, event string, data []byte) error {
	var b []byte
	if id != "" {
		b = fmt.Appendf(b, "id: %s\n", id)
	}
	if event != "" {
		b = fmt.Appendf(b, "event: %s\n", event)
	}
	for len(data) > 0 { // a line break in data starts another data line
		line := data
		if i := indexLineBreak(data); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		b = fmt.Appendf(b, "data: %s\n", line)
	}
	b = append(b, '\n')
	e.rc.SetWriteDeadline(time.Now().Add(e.writeTimeout))
	if _, err := e.w.Write(b); err != nil {
		return err
	}
	return e.rc.Flush()
}

// Comment writes a comment line, which clients ignore, and flushes it.
func (e *SSE) Comment(text string) error {
	e.rc.SetWriteDeadline(time.Now().Add(e.writeTimeout))
	if _, err := fmt.Fprintf(e.w, ": %s\n\n", text); err != nil {
		return err
	}
	return e.rc.Flush()
}

func indexLineBreak(b []byte) int {
	for i, c := range b {
		if c == '\n' || c == '\r' {
			return i
		}
	}
	return -1
}

// tail serves GET /api/v1/streams/{volume}/{stream}/tail?topic=&partition=&from=
// as Server-Sent Events: one event "message" per message (id: its offset,
// data: its JSON form), from the end of the partition (or from, or the
// Last-Event-ID the browser sends when it reconnects) on, as they are
// appended, until the client goes or the stream reaches its age limit
// (Limits.StreamMaxAge).
func (s *Server) tail(w http.ResponseWriter, r *http.Request) {
	path := "/" + r.PathValue("volume") + "/" + r.PathValue("stream")
	q := r.URL.Query()
	topic, part, ok := topicPartition(w, q)
	if !ok {
		return
	}
	ctx := r.Context()
	st := s.cfg.Store.Stream(path)
	low, next, err := st.Bounds(ctx, topic, part)
	if err != nil {
		s.Error(w, r, err)
		return
	}
	from := next
	if v := q.Get("from"); v != "" && v != "end" {
		if from, err = strconv.ParseUint(v, 10, 64); err != nil {
			badRequest(w, fmt.Sprintf("from %q: want an offset or \"end\"", v))
			return
		}
	}
	if v := r.Header.Get("Last-Event-ID"); v != "" {
		if id, err := strconv.ParseUint(v, 10, 64); err == nil {
			from = id + 1
		}
	}
	from = max(from, low)
	ev, ok := s.StartSSE(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, s.limits.StreamMaxAge)
	defer cancel()
	for {
		wctx, cancel := context.WithTimeout(ctx, SSEKeepAlive)
		if s.testHookWait != nil {
			s.testHookWait()
		}
		msgs, err := st.ReadWait(wctx, topic, part, from, store.ReadOptions{Limit: 100})
		cancel()
		switch {
		case ctx.Err() != nil:
			return // the client went, or the node shuts down
		case errors.Is(err, context.DeadlineExceeded):
			if ev.Comment("keep-alive") != nil {
				return
			}
			continue
		case errors.Is(err, store.ErrTrimmed):
			low, _, berr := st.Bounds(ctx, topic, part)
			if berr != nil {
				return
			}
			b, _ := json.Marshal(map[string]uint64{"from": from, "low_water_mark": low})
			if ev.Event("", "trimmed", b) != nil {
				return
			}
			from = low
			continue
		case err != nil:
			b, _ := json.Marshal(problemFor(r, err))
			ev.Event("", "error", b)
			return
		}
		if len(msgs) == 0 {
			continue
		}
		for _, m := range msgs {
			b, err := json.Marshal(MessageJSON(m))
			if err != nil {
				return
			}
			if ev.Event(strconv.FormatUint(m.Offset, 10), "message", b) != nil {
				return
			}
		}
		from = msgs[len(msgs)-1].Offset + 1
	}
}
