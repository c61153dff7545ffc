package api

import (
	"context"
	"crypto/rand"
	"log/slog"
	"net/http"
	"time"
)

// RequestIDHeader carries a request's id, in the request (the client's,
// kept when it is a sane token) and in the response (always).
const RequestIDHeader = "X-Request-Id"

// maxRequestIDLen is the longest request id taken from a client.
const maxRequestIDLen = 64

type requestIDKey struct{}

// WithRequestID gives every request served by h an id: the request's
// X-Request-Id when it is a sane token (1 to 64 characters of
// [A-Za-z0-9._-]), else a new random one (26 characters of base32). The id
// is in the response's X-Request-Id header, set before h runs, so that
// problem documents carry it (request_id), and in the request's context
// (RequestIDFrom, RequestLogger). A request that already has an id in its
// context keeps it, so wrapping twice changes nothing.
func WithRequestID(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id := RequestIDFrom(r.Context()); id != "" {
			w.Header().Set(RequestIDHeader, id)
			h.ServeHTTP(w, r)
			return
		}
		id := r.Header.Get(RequestIDHeader)
		if !ValidRequestID(id) {
			id = rand.Text()
		}
		w.Header().Set(RequestIDHeader, id)
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestIDKey{}, id)))
	})
}

// RequestIDFrom is the id WithRequestID gave the request of ctx, or "".
func RequestIDFrom(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// RequestLogger is log with the attribute request_id of the request of
// ctx, for every line a request causes; log itself when the request has
// no id.
func RequestLogger(ctx context.Context, log *slog.Logger) *slog.Logger {
	if id := RequestIDFrom(ctx); id != "" {
		return log.With("request_id", id)
	}
	return log
}

// ValidRequestID says whether id is taken from a client as it is: 1 to 64
// characters of [A-Za-z0-9._-], nothing a log line or a header could be
// split or forged with.
func ValidRequestID(id string) bool {
	if id == "" || len(id) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// WithRequestLog is WithRequestID with a line logged at debug level when
// each request ends: "request" with method, path, status, bytes written,
// duration and request_id. A nil log logs nothing.
func WithRequestLog(h http.Handler, log *slog.Logger) http.Handler {
	if log == nil {
		return WithRequestID(h)
	}
	return WithRequestID(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !log.Enabled(r.Context(), slog.LevelDebug) {
			h.ServeHTTP(w, r)
			return
		}
		start := time.Now()
		rw := &countingWriter{ResponseWriter: w}
		h.ServeHTTP(rw, r)
		if rw.status == 0 {
			rw.status = http.StatusOK
		}
		RequestLogger(r.Context(), log).LogAttrs(r.Context(), slog.LevelDebug, "request",
			slog.String("method", r.Method), slog.String("path", r.URL.Path),
			slog.Int("status", rw.status), slog.Int64("bytes", rw.bytes),
			slog.Duration("duration", time.Since(start)))
	}))
}

// countingWriter notes the status and the body bytes of a response.
// Flush, hijacking and deadlines reach the writer beneath through Unwrap
// (http.ResponseController).
type countingWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (c *countingWriter) WriteHeader(code int) {
	if c.status == 0 && code >= 200 {
		c.status = code
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *countingWriter) Write(b []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	n, err := c.ResponseWriter.Write(b)
	c.bytes += int64(n)
	return n, err
}

func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }
