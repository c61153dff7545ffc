package wire

import (
	"errors"
	"time"
)

// ClientHandshake sends hello on the control stream c (filling in the
// versions and time) and returns the server's Welcome. An Error from the
// server comes back as an *Error marked Remote; a Welcome of a version this
// node does not speak, or naming another identity than peer (the server's
// certificate URI), is refused: the client tells the server with an Error
// frame and returns the same error.
func ClientHandshake(c *Conn, hello *Hello, peer string) (*Welcome, error) {
	hello.MinVersion, hello.MaxVersion = MinVersion, Version
	if hello.Time == 0 {
		hello.Time = time.Now().UnixNano()
	}
	if err := c.Send(hello); err != nil {
		return nil, err
	}
	m, err := c.Recv()
	if err != nil {
		return nil, refuse(c, err)
	}
	switch m := m.(type) {
	case *Error:
		m.Remote = true
		return nil, m
	case *Welcome:
		if m.Version < MinVersion || m.Version > Version {
			return nil, refuse(c, Errorf(CodeVersion, "server chose protocol version %d, this node speaks %d to %d", m.Version, MinVersion, Version))
		}
		if m.Identity != peer {
			return nil, refuse(c, Errorf(CodeIdentity, "server says it is %s, its certificate says %s", m.Identity, peer))
		}
		return m, nil
	default:
		return nil, refuse(c, Errorf(CodeProtocol, "expected Welcome, got frame type %d", m.frameType()))
	}
}

// ServerHandshake reads the client's Hello from the control stream c,
// checks its versions and that it names peer (the client's certificate
// URI), and answers with the Welcome that accept returns, its version set.
// Every refusal is sent to the client as an Error frame and returned.
func ServerHandshake(c *Conn, peer string, accept func(*Hello) (*Welcome, error)) (*Hello, error) {
	m, err := c.Recv()
	if err != nil {
		return nil, refuse(c, err)
	}
	hello, ok := m.(*Hello)
	if !ok {
		return nil, refuse(c, Errorf(CodeProtocol, "expected Hello, got frame type %d", m.frameType()))
	}
	if hello.MaxVersion < MinVersion || hello.MinVersion > Version || hello.MinVersion > hello.MaxVersion {
		return nil, refuse(c, Errorf(CodeVersion, "client speaks protocol versions %d to %d, this node speaks %d to %d", hello.MinVersion, hello.MaxVersion, MinVersion, Version))
	}
	if hello.Identity != peer {
		return nil, refuse(c, Errorf(CodeIdentity, "client says it is %s, its certificate says %s", hello.Identity, peer))
	}
	w, err := accept(hello)
	if err != nil {
		return nil, refuse(c, err)
	}
	w.Version = min(Version, hello.MaxVersion)
	if w.Time == 0 {
		w.Time = time.Now().UnixNano()
	}
	if err := c.Send(w); err != nil {
		return nil, err
	}
	return hello, nil
}

// refuse sends err to the peer as an Error frame when it is a wire error
// of ours (not one the peer sent, not an I/O error), and returns it.
func refuse(c *Conn, err error) error {
	var we *Error
	if errors.As(err, &we) && !we.Remote {
		c.Send(&Error{Code: we.Code, Message: we.Message})
	}
	return err
}
