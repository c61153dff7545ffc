package wire

import (
	"errors"
	"fmt"
	"strings"

	"github.com/quic-go/quic-go"
)

// Code is a wire error code. Codes are stable: they travel in Error frames
// and as QUIC application (connection) and stream error codes, so a value
// once given keeps its meaning.
type Code uint32

// The table of wire error codes.
const (
	CodeNone        Code = 0  // no error: a clean close
	CodeProtocol    Code = 1  // malformed or unexpected frame
	CodeVersion     Code = 2  // no protocol version in common
	CodeIdentity    Code = 3  // the peer's certificate names the wrong role or node
	CodeStream      Code = 4  // a stream the peer may not replicate, or does not have
	CodeCorrupt     Code = 5  // a batch failed its CRC or size checks
	CodeStore       Code = 6  // the receiver's store refused or failed to apply
	CodeQuota       Code = 7  // the receiver is out of quota or disk
	CodeShutdown    Code = 8  // the node is shutting down
	CodeReplaced    Code = 9  // a newer connection from the same peer took over
	CodeInternal    Code = 10 // anything else
	CodeFrameLimit  Code = 11 // a frame larger than MaxFrameSize
	CodePathStalled Code = 12 // data lost on the path while small packets pass (path MTU fell)
	CodeRedirect    Code = 13 // another core serves this edge: the message is its sync address (Redirect)
)

var codeNames = map[Code]string{
	CodeNone:        "no error",
	CodeProtocol:    "protocol error",
	CodeVersion:     "unsupported protocol version",
	CodeIdentity:    "wrong peer identity",
	CodeStream:      "stream not replicated",
	CodeCorrupt:     "corrupt batch",
	CodeStore:       "store error",
	CodeQuota:       "out of quota",
	CodeShutdown:    "shutting down",
	CodeReplaced:    "replaced by a newer connection",
	CodeInternal:    "internal error",
	CodeFrameLimit:  "frame too large",
	CodePathStalled: "path stalled",
	CodeRedirect:    "served by another core",
}

// String names the code.
func (c Code) String() string {
	if s, ok := codeNames[c]; ok {
		return s
	}
	return fmt.Sprintf("code %d", uint32(c))
}

// Error is an error that crosses the network: a code from the table and a
// message for people. It is also the body of the Error frame.
type Error struct {
	Code    Code   `cbor:"1,keyasint"`
	Message string `cbor:"2,keyasint,omitempty"`
	// Remote is true when the peer sent the error (not carried on the wire).
	Remote bool `cbor:"-"`
}

func (*Error) frameType() Type { return TypeError }

// Error formats the error with the wire prefix and who raised it.
func (e *Error) Error() string {
	who := ""
	if e.Remote {
		who = "peer: "
	}
	if e.Message == "" {
		return "wire: " + who + e.Code.String()
	}
	return "wire: " + who + e.Code.String() + ": " + e.Message
}

// Is matches errors of the same code, so errors.Is(err, ErrVersion) holds
// for any version error whatever its message.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Sentinels for errors.Is, one per code.
var (
	ErrProtocol    = &Error{Code: CodeProtocol}
	ErrVersion     = &Error{Code: CodeVersion}
	ErrIdentity    = &Error{Code: CodeIdentity}
	ErrStream      = &Error{Code: CodeStream}
	ErrCorrupt     = &Error{Code: CodeCorrupt}
	ErrStore       = &Error{Code: CodeStore}
	ErrQuota       = &Error{Code: CodeQuota}
	ErrShutdown    = &Error{Code: CodeShutdown}
	ErrReplaced    = &Error{Code: CodeReplaced}
	ErrInternal    = &Error{Code: CodeInternal}
	ErrFrameLimit  = &Error{Code: CodeFrameLimit}
	ErrPathStalled = &Error{Code: CodePathStalled}
	ErrRedirect    = &Error{Code: CodeRedirect}
)

// Errorf returns an *Error of code c with a formatted message.
func Errorf(c Code, format string, args ...any) *Error {
	return &Error{Code: c, Message: fmt.Sprintf(format, args...)}
}

// CodeOf returns the wire code of err: its own if it is (or wraps) an
// *Error, the code a peer closed a QUIC connection or stream with, or
// CodeInternal.
func CodeOf(err error) Code {
	var we *Error
	if errors.As(err, &we) {
		return we.Code
	}
	var ae *quic.ApplicationError
	if errors.As(err, &ae) {
		return Code(ae.ErrorCode)
	}
	var se *quic.StreamError
	if errors.As(err, &se) {
		return Code(se.ErrorCode)
	}
	return CodeInternal
}

// FromQUIC turns the error a QUIC call returned after the peer closed the
// connection or stream with one of our codes into an *Error marked Remote,
// so callers can use errors.Is with the sentinels; other errors are
// returned unchanged.
func FromQUIC(err error) error {
	if err == nil {
		return nil
	}
	var ae *quic.ApplicationError
	if errors.As(err, &ae) && ae.Remote {
		return &Error{Code: Code(ae.ErrorCode), Message: ae.ErrorMessage, Remote: true}
	}
	var se *quic.StreamError
	if errors.As(err, &se) && se.Remote {
		return &Error{Code: Code(se.ErrorCode), Message: "stream closed by the peer", Remote: true}
	}
	return err
}

// Redirect is the error a core of a cluster answers an edge it does not
// serve with (in the handshake, or closing a link whose edge moved): its
// message is the sync address (host:port) of the core to go to.
func Redirect(addr string) *Error { return &Error{Code: CodeRedirect, Message: addr} }

// RedirectTo returns the address err redirects to, if err is (or wraps) a
// redirect, or a QUIC close with CodeRedirect, naming one.
func RedirectTo(err error) (string, bool) {
	msg := ""
	var we *Error
	var ae *quic.ApplicationError
	switch {
	case errors.As(err, &we) && we.Code == CodeRedirect:
		msg = we.Message
	case errors.As(err, &ae) && Code(ae.ErrorCode) == CodeRedirect:
		msg = ae.ErrorMessage
	default:
		return "", false
	}
	// A connection closed with the error carries its text
	// ("wire: served by another core: host:port"): the address is last.
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		msg = msg[i+2:]
	}
	return msg, msg != ""
}
