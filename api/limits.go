package api

import (
	"fmt"
	"net/http"
	"sync"
	"time"
)

// Limits bound what clients can hold of a node's HTTP server: how long a
// connection may take over a request or sit idle, how many connections
// are open at once, and how many event streams (Server-Sent Events) run at
// once. The zero value of each field is its default (docs/api.md#limits).
//
// The timeouts and MaxConns are the http.Server's and its listener's
// (internal/node builds both from them); the stream limits are the
// Server's.
type Limits struct {
	// ReadHeaderTimeout bounds reading a request's headers. Default 10s.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request, body included. Default
	// 1 minute.
	ReadTimeout time.Duration
	// WriteTimeout bounds a request from the end of its headers to the
	// end of its response, a blocking read's wait (at most MaxWait)
	// included. Event streams are exempt: they have their own limits.
	// Default 2 minutes.
	WriteTimeout time.Duration
	// IdleTimeout closes a keep-alive connection that waits that long
	// for its next request. Default 1 minute.
	IdleTimeout time.Duration
	// MaxConns caps the open connections of a listener. Past it, the
	// connection idle the longest (between requests, or opened and not
	// yet sending) is closed to make room, and with none idle the new one
	// is closed at once. Default 1024, and at most a quarter of the
	// process's open-file limit.
	MaxConns int
	// MaxStreams caps the event streams open at once; past it a new one
	// is answered 429 Too many streams. Default 256.
	MaxStreams int
	// MaxStreamsPerToken caps the event streams open at once by the
	// holders of one token subject. Default 8.
	MaxStreamsPerToken int
	// StreamWriteTimeout bounds writing one event of a stream to a
	// client: a client that does not read loses its stream. Default 30s.
	StreamWriteTimeout time.Duration
	// StreamMaxAge ends an event stream after that long; the client
	// reconnects (browsers do on their own, resuming with Last-Event-ID).
	// Default 1 hour.
	StreamMaxAge time.Duration
	// TLS is how the listener serves: HTTPS from certificate files, or
	// plain HTTP, which only a loopback address gets unless Insecure.
	TLS TLSFiles
}

// TLSFiles are the files a node's HTTP listener serves HTTPS with
// (internal/node reads them and reloads them when they change).
type TLSFiles struct {
	// CertFile and KeyFile are the PEM certificate (chain) and key. Both
	// empty: plain HTTP.
	CertFile, KeyFile string
	// Insecure allows plain HTTP on an address other than loopback
	// (behind a proxy that terminates TLS); the node logs a warning.
	Insecure bool
}

// Defaults of Limits.
const (
	DefaultReadHeaderTimeout  = 10 * time.Second
	DefaultReadTimeout        = time.Minute
	DefaultWriteTimeout       = 2 * time.Minute
	DefaultIdleTimeout        = time.Minute
	DefaultMaxConns           = 1024
	DefaultMaxStreams         = 256
	DefaultMaxStreamsPerToken = 8
	DefaultStreamWriteTimeout = 30 * time.Second
	DefaultStreamMaxAge       = time.Hour
)

// WithDefaults returns l with each zero (or negative) field set to its
// default.
func (l Limits) WithDefaults() Limits {
	set := func(d *time.Duration, def time.Duration) {
		if *d <= 0 {
			*d = def
		}
	}
	set(&l.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	set(&l.ReadTimeout, DefaultReadTimeout)
	set(&l.WriteTimeout, DefaultWriteTimeout)
	set(&l.IdleTimeout, DefaultIdleTimeout)
	set(&l.StreamWriteTimeout, DefaultStreamWriteTimeout)
	set(&l.StreamMaxAge, DefaultStreamMaxAge)
	if l.MaxConns <= 0 {
		l.MaxConns = DefaultMaxConns
	}
	if l.MaxStreams <= 0 {
		l.MaxStreams = DefaultMaxStreams
	}
	if l.MaxStreamsPerToken <= 0 {
		l.MaxStreamsPerToken = DefaultMaxStreamsPerToken
	}
	return l
}

// HTTPServer returns an http.Server that serves h with the limits'
// timeouts (l with its defaults). The caller sets BaseContext and the
// listener.
func (l Limits) HTTPServer(h http.Handler) *http.Server {
	l = l.WithDefaults()
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: l.ReadHeaderTimeout,
		ReadTimeout:       l.ReadTimeout,
		WriteTimeout:      l.WriteTimeout,
		IdleTimeout:       l.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
	}
}

// streamSlots counts the open event streams, in total and per token
// subject.
type streamSlots struct {
	total, perToken int

	mu    sync.Mutex
	open  int
	byTok map[string]int
}

func newStreamSlots(l Limits) *streamSlots {
	return &streamSlots{total: l.MaxStreams, perToken: l.MaxStreamsPerToken, byTok: map[string]int{}}
}

// acquire takes a slot for a stream of subject, returning the function
// that gives it back, or the detail of the limit it would pass.
func (s *streamSlots) acquire(subject string) (release func(), refused string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byTok[subject] >= s.perToken {
		return nil, fmt.Sprintf("per token: %d event streams of this token's subject are open already, the most allowed (MaxStreamsPerToken)", s.perToken)
	}
	if s.open >= s.total {
		return nil, fmt.Sprintf("total: %d event streams are open already, the most this node allows (MaxStreams)", s.total)
	}
	s.open++
	s.byTok[subject]++
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.open--
			if s.byTok[subject]--; s.byTok[subject] <= 0 {
				delete(s.byTok, subject)
			}
		})
	}, ""
}
