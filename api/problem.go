package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode"

	"github.com/weft-io/weft/shadow"
	"github.com/weft-io/weft/store"
)

// ProblemTypeBase is where problem types are documented: a problem's type
// is this followed by the anchor of its title in docs/api.md.
const ProblemTypeBase = "https://github.com/weft-io/weft/blob/main/docs/api.md#"

// ProblemDetails is an RFC 9457 problem document, the body of every error
// response.
type ProblemDetails struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`

	// Reason says why a token was refused (401 and 403 only): missing,
	// malformed, expired, not_yet_valid, wrong_audience, wrong_issuer,
	// wrong_algorithm, bad_signature, bad_claims, bad_role, role or scope.
	Reason string `json:"reason,omitempty"`
	// LowWaterMark is the first offset still readable, when a read asked
	// for an offset below it (410 Offset trimmed).
	LowWaterMark *uint64 `json:"low_water_mark,omitempty"`
	// RequestID is the id of the request answered (X-Request-Id, see
	// WithRequestID), when it has one.
	RequestID string `json:"request_id,omitempty"`
}

// Problem writes a problem document with the given status, title and
// detail. The title names the kind of problem and stays the same from one
// occurrence to the next; the detail explains this occurrence. The type is
// ProblemTypeBase followed by the title's anchor, so each title needs a
// heading in docs/api.md.
func Problem(w http.ResponseWriter, status int, title, detail string) {
	writeProblem(w, ProblemDetails{Status: status, Title: title, Detail: detail})
}

func writeProblem(w http.ResponseWriter, p ProblemDetails) {
	if p.Type == "" {
		p.Type = ProblemTypeBase + anchor(p.Title)
	}
	h := w.Header()
	if p.RequestID == "" {
		// WithRequestID set the header before the handler ran.
		p.RequestID = h.Get(RequestIDHeader)
	}
	b, err := json.Marshal(p)
	if err != nil { // cannot happen: every field marshals
		b = []byte(`{"type":"about:blank","title":"Internal error","status":500}`)
		p.Status = http.StatusInternalServerError
	}
	h.Set("Content-Type", "application/problem+json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Del("ETag")
	w.WriteHeader(p.Status)
	w.Write(append(b, '\n'))
}

// anchor is the anchor GitHub gives a Markdown heading: lower case, spaces
// as hyphens, punctuation other than hyphens and underscores dropped.
func anchor(title string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(title) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// errorTable maps errors to the status and title they are answered with,
// first match first. It is the one place that decides this: the same error
// gets the same answer on every route of every node.
var errorTable = []struct {
	err    error
	status int
	title  string
}{
	{store.ErrNotFound, http.StatusNotFound, "Not found"},
	{store.ErrBadPath, http.StatusBadRequest, "Bad path"},
	{store.ErrInvalid, http.StatusBadRequest, "Invalid argument"},
	{store.ErrBadDocument, http.StatusBadRequest, "Bad document"},
	{store.ErrBadPartition, http.StatusBadRequest, "No such partition"},
	{store.ErrWrongKind, http.StatusConflict, "Wrong object kind"},
	{store.ErrVersion, http.StatusConflict, "Version conflict"},
	{store.ErrExists, http.StatusConflict, "Already exists"},
	{store.ErrNotEmpty, http.StatusConflict, "Not empty"},
	{store.ErrReadOnly, http.StatusConflict, "Read-only"},
	{store.ErrTrimmed, http.StatusGone, "Offset trimmed"},
	{store.ErrQuotaExceeded, http.StatusInsufficientStorage, "Quota exceeded"},
	{store.ErrDiskFull, http.StatusInsufficientStorage, "Disk full"},
	{ErrNotConnected, http.StatusConflict, "Device not connected"},
	{ErrCommandTimeout, http.StatusGatewayTimeout, "Command timed out"},
	{ErrEdgeNotConnected, http.StatusServiceUnavailable, "Edge not connected"},
	{store.ErrCorrupt, http.StatusInternalServerError, "Corrupt data"},
	{store.ErrClosed, http.StatusServiceUnavailable, "Unavailable"},
	{shadow.ErrUnavailable, http.StatusServiceUnavailable, "Cluster unavailable"},
	{context.DeadlineExceeded, http.StatusServiceUnavailable, "Timeout"},
	{context.Canceled, http.StatusServiceUnavailable, "Unavailable"},
}

// problemFor returns the problem that answers err. A version conflict on a
// request that sent If-Match is 412, as RFC 9110 asks. Errors missing from
// the table are 500 without detail: their text may describe the node's
// internals.
func problemFor(r *http.Request, err error) ProblemDetails {
	for _, e := range errorTable {
		if !errors.Is(err, e.err) {
			continue
		}
		p := ProblemDetails{Status: e.status, Title: e.title, Detail: err.Error()}
		if e.err == store.ErrVersion && r != nil && r.Header.Get("If-Match") != "" {
			p.Status, p.Title = http.StatusPreconditionFailed, "Precondition failed"
		}
		return p
	}
	return ProblemDetails{Status: http.StatusInternalServerError, Title: "Internal error", Detail: "internal error; see the node's log"}
}

// Error answers err with the problem the error table gives it. Server
// errors (5xx) are logged with the request's method and path.
func (s *Server) Error(w http.ResponseWriter, r *http.Request, err error) {
	s.writeError(w, r, err, ProblemDetails{})
}

// writeError is Error with extension members to add to the problem.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error, ext ProblemDetails) {
	p := problemFor(r, err)
	if p.Status >= 500 && r.Context().Err() == nil {
		RequestLogger(r.Context(), s.log).Error("request failed", "method", r.Method, "path", r.URL.Path, "status", p.Status, "err", err)
	}
	p.Reason, p.LowWaterMark = ext.Reason, ext.LowWaterMark
	writeProblem(w, p)
}

// badRequest answers a request whose parameters or body cannot be used.
func badRequest(w http.ResponseWriter, detail string) {
	Problem(w, http.StatusBadRequest, "Bad request", detail)
}

// badBody answers a request whose body could not be read or decoded: 413
// when it passed the body limit, else 400 with detail (err's text if
// detail is empty).
func badBody(w http.ResponseWriter, err error, detail string) {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		Problem(w, http.StatusRequestEntityTooLarge, "Body too large", fmt.Sprintf("the body exceeds %d bytes", mbe.Limit))
		return
	}
	if detail == "" {
		detail = err.Error()
	}
	badRequest(w, detail)
}
