package wire

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"reflect"

	"github.com/fxamacker/cbor/v2"
)

// Version is the protocol version this node speaks; MinVersion the oldest
// it still accepts from a peer.
const (
	Version    = 1
	MinVersion = 1
)

// MaxFrameSize bounds a frame's body. Batches are cut well below it.
const MaxFrameSize = 16 << 20

const (
	magic     = 'w'
	headerLen = 7
)

// Type is a frame type.
type Type uint8

// Frame types.
const (
	TypeHello     Type = 1
	TypeWelcome   Type = 2
	TypeError     Type = 3
	TypeOpen      Type = 4
	TypeAccept    Type = 5
	TypeOffer     Type = 6
	TypePositions Type = 7
	TypeBatch     Type = 8
	TypeAck       Type = 9
)

// Message is the body of a frame: one of *Hello, *Welcome, *Error, *Open,
// *Accept, *Offer, *Positions, *Batch, *Ack, *Backlog, *Gap, and the
// frames of mirrors and history requests.
type Message interface {
	frameType() Type
}

// Dir is the direction of a replicated stream, seen from the link's
// client (the edge).
type Dir uint8

// Directions.
const (
	Up   Dir = 1 // client to server: edge to core
	Down Dir = 2 // server to client: core to edge
)

// String returns "up" or "down".
func (d Dir) String() string {
	switch d {
	case Up:
		return "up"
	case Down:
		return "down"
	}
	return fmt.Sprintf("dir(%d)", uint8(d))
}

// StreamSpec names a replicated stream and its direction.
type StreamSpec struct {
	Path string `cbor:"1,keyasint"`
	Dir  Dir    `cbor:"2,keyasint"`
}

// Hello opens the control stream, client to server.
type Hello struct {
	MinVersion uint16 `cbor:"1,keyasint"`
	MaxVersion uint16 `cbor:"2,keyasint"`
	// Identity is the sender's weft URI. The peer trusts the certificate,
	// not this field; a mismatch is refused.
	Identity string       `cbor:"3,keyasint"`
	Streams  []StreamSpec `cbor:"4,keyasint"`
	// Time is the sender's clock (Unix nanoseconds), for lag in seconds.
	Time int64 `cbor:"5,keyasint"`
	// Features are the optional frames the client understands
	// (FeatureBacklog, FeatureGap). A peer of before them sends none and
	// ignores the field.
	Features []string `cbor:"6,keyasint,omitempty"`
}

// Welcome answers Hello, server to client.
type Welcome struct {
	Version  uint16 `cbor:"1,keyasint"`
	Identity string `cbor:"2,keyasint"`
	// Streams are the streams the server accepts, a subset of Hello's.
	Streams []StreamSpec `cbor:"3,keyasint"`
	// Refused are those it does not, each with the reason.
	Refused []Refusal `cbor:"4,keyasint,omitempty"`
	Time    int64     `cbor:"5,keyasint"`
	// Features are those of Hello's the server understands too: what
	// either side may send on this connection.
	Features []string `cbor:"6,keyasint,omitempty"`
}

// Refusal says why a stream of Hello is not replicated.
type Refusal struct {
	Path   string `cbor:"1,keyasint"`
	Reason string `cbor:"2,keyasint"`
}

// Open is the first frame of a data stream, from the client.
type Open struct {
	Path string `cbor:"1,keyasint"`
	Dir  Dir    `cbor:"2,keyasint"`
	// Partitions is the sender's partition count when the client sends.
	Partitions int `cbor:"3,keyasint,omitempty"`
	// Policy is the source's retention and limits when the client sends,
	// for a replica the server has to create; nil from a client of before
	// it (the replica is then created without).
	Policy *Policy `cbor:"4,keyasint,omitempty"`
}

// Accept answers Open.
type Accept struct {
	// Partitions is the sender's partition count when the server sends.
	Partitions int `cbor:"1,keyasint,omitempty"`
	// Policy is the source's retention and limits when the server sends.
	Policy *Policy `cbor:"2,keyasint,omitempty"`
}

// Policy is the retention and limits of a replicated stream at its
// source, and of the stream's volume: what a receiver gives the replica
// (and its volume) when it creates them. Durations are nanoseconds; zero
// fields mean none.
type Policy struct {
	// The volume's.
	VolumeTTL  int64 `cbor:"1,keyasint,omitempty"`
	Quota      int64 `cbor:"2,keyasint,omitempty"`
	DropOldest bool  `cbor:"3,keyasint,omitempty"`
	// The stream's own.
	TTL      int64 `cbor:"4,keyasint,omitempty"`
	MaxBytes int64 `cbor:"5,keyasint,omitempty"`
	Priority int   `cbor:"6,keyasint,omitempty"`
}

func (p *Policy) check() error {
	if p != nil && (p.VolumeTTL < 0 || p.Quota < 0 || p.TTL < 0 || p.MaxBytes < 0) {
		return Errorf(CodeProtocol, "negative retention or limit in a policy")
	}
	return nil
}

// Bound is a topic partition's range at the sender.
type Bound struct {
	Topic string `cbor:"1,keyasint"`
	Part  int    `cbor:"2,keyasint"`
	Low   uint64 `cbor:"3,keyasint"`
	Next  uint64 `cbor:"4,keyasint"`
}

// Offer lists topic partitions the sender has, asking for the receiver's
// positions.
type Offer struct {
	Topics []Bound `cbor:"1,keyasint"`
}

// Position is the receiver's next offset of a topic partition.
type Position struct {
	Topic string `cbor:"1,keyasint"`
	Part  int    `cbor:"2,keyasint"`
	Next  uint64 `cbor:"3,keyasint"`
	// Refused, if set, says why the receiver does not take this topic
	// (say, another node writes it): the sender leaves it out.
	Refused string `cbor:"4,keyasint,omitempty"`
}

// Positions answers an Offer, in the same order.
type Positions struct {
	Positions []Position `cbor:"1,keyasint"`
}

// Ack answers each Batch, in order: the receiver's next offset for the
// batch's topic partition after applying it.
type Ack struct {
	Topic string `cbor:"1,keyasint"`
	Part  int    `cbor:"2,keyasint"`
	Next  uint64 `cbor:"3,keyasint"`
	// Applied messages were new; Dups were held already.
	Applied int `cbor:"4,keyasint,omitempty"`
	Dups    int `cbor:"5,keyasint,omitempty"`
	// Gap is set when the batch started past Next and was not applied: the
	// sender goes back to Next.
	Gap bool `cbor:"6,keyasint,omitempty"`
}

func (*Hello) frameType() Type     { return TypeHello }
func (*Welcome) frameType() Type   { return TypeWelcome }
func (*Open) frameType() Type      { return TypeOpen }
func (*Accept) frameType() Type    { return TypeAccept }
func (*Offer) frameType() Type     { return TypeOffer }
func (*Positions) frameType() Type { return TypePositions }
func (*Batch) frameType() Type     { return TypeBatch }
func (*Ack) frameType() Type       { return TypeAck }

var frameTypes = map[Type]reflect.Type{
	TypeHello:     reflect.TypeFor[Hello](),
	TypeWelcome:   reflect.TypeFor[Welcome](),
	TypeError:     reflect.TypeFor[Error](),
	TypeOpen:      reflect.TypeFor[Open](),
	TypeAccept:    reflect.TypeFor[Accept](),
	TypeOffer:     reflect.TypeFor[Offer](),
	TypePositions: reflect.TypeFor[Positions](),
	TypeBatch:     reflect.TypeFor[Batch](),
	TypeAck:       reflect.TypeFor[Ack](),
}

var (
	encMode cbor.EncMode
	decMode cbor.DecMode
)

func init() {
	var err error
	encMode, err = cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		panic(err)
	}
	decMode, err = cbor.DecOptions{
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		MaxNestedLevels:  16,
		MaxArrayElements: 1 << 20,
		MaxMapPairs:      1 << 16,
		IndefLength:      cbor.IndefLengthForbidden,
		TagsMd:           cbor.TagsForbidden,
		UTF8:             cbor.UTF8DecodeInvalid, // topics and headers are bytes to the store
	}.DecMode()
	if err != nil {
		panic(err)
	}
}

// AppendFrame appends m as a frame of the current version to b.
func AppendFrame(b []byte, m Message) ([]byte, error) {
	return appendFrame(b, Version, m)
}

func appendFrame(b []byte, version byte, m Message) ([]byte, error) {
	body, err := encMode.Marshal(m)
	if err != nil {
		return b, fmt.Errorf("wire: encode %T: %w", m, err)
	}
	if len(body) > MaxFrameSize {
		return b, Errorf(CodeFrameLimit, "%T of %d bytes", m, len(body))
	}
	b = append(b, magic, version, byte(m.frameType()))
	b = binary.BigEndian.AppendUint32(b, uint32(len(body)))
	return append(b, body...), nil
}

// Decode decodes one whole frame (header and body) from b. It is what
// ReadFrame does with a frame already in memory, and the fuzz target.
func Decode(b []byte) (Message, error) {
	if len(b) < headerLen {
		return nil, Errorf(CodeProtocol, "frame of %d bytes", len(b))
	}
	typ, n, err := parseHeader(b[:headerLen])
	if err != nil {
		return nil, err
	}
	if n != len(b)-headerLen {
		return nil, Errorf(CodeProtocol, "frame header says %d bytes, have %d", n, len(b)-headerLen)
	}
	return decodeBody(typ, b[headerLen:])
}

func parseHeader(h []byte) (Type, int, error) {
	if h[0] != magic {
		return 0, 0, Errorf(CodeProtocol, "not a weft sync frame (first byte %#x)", h[0])
	}
	if h[1] < MinVersion || h[1] > Version {
		return 0, 0, Errorf(CodeVersion, "peer speaks protocol version %d, this node speaks %d to %d", h[1], MinVersion, Version)
	}
	typ := Type(h[2])
	if _, ok := frameTypes[typ]; !ok {
		return 0, 0, Errorf(CodeProtocol, "unknown frame type %d", h[2])
	}
	n := binary.BigEndian.Uint32(h[3:])
	if n > MaxFrameSize {
		return 0, 0, Errorf(CodeFrameLimit, "frame of %d bytes, limit %d", n, MaxFrameSize)
	}
	return typ, int(n), nil
}

func decodeBody(typ Type, body []byte) (Message, error) {
	v := reflect.New(frameTypes[typ])
	if err := decMode.Unmarshal(body, v.Interface()); err != nil {
		return nil, Errorf(CodeProtocol, "frame type %d: %v", typ, err)
	}
	m := v.Interface().(Message)
	if err := validate(m); err != nil {
		return nil, err
	}
	return m, nil
}

// validate checks what CBOR cannot: counts and ranges.
func validate(m Message) error {
	switch m := m.(type) {
	case *Batch:
		return m.check()
	case *Ack:
		if m.Part < 0 || m.Applied < 0 || m.Dups < 0 {
			return Errorf(CodeProtocol, "ack with a negative field")
		}
	case *Offer:
		for _, b := range m.Topics {
			if b.Part < 0 || b.Low > b.Next {
				return Errorf(CodeProtocol, "offer of topic %q partition %d: bad range", b.Topic, b.Part)
			}
		}
	case *Positions:
		for _, p := range m.Positions {
			if p.Part < 0 {
				return Errorf(CodeProtocol, "position of topic %q: negative partition", p.Topic)
			}
		}
	case *Open:
		if m.Partitions < 0 || m.Partitions > 1<<16 {
			return Errorf(CodeProtocol, "open with %d partitions", m.Partitions)
		}
		return m.Policy.check()
	case *Accept:
		if m.Partitions < 0 || m.Partitions > 1<<16 {
			return Errorf(CodeProtocol, "accept with %d partitions", m.Partitions)
		}
		return m.Policy.check()
	case *Backlog:
		for _, s := range m.Streams {
			if s.Bytes < 0 || s.Age < 0 || s.UnsentAge < 0 || len(s.Failed) > MaxReportedFailures {
				return Errorf(CodeProtocol, "backlog of %s: negative bytes or age, or too many failures", s.Path)
			}
		}
	case *Gap:
		if m.Part < 0 || m.To <= m.From {
			return Errorf(CodeProtocol, "gap of topic %q partition %d: bad range %d-%d", m.Topic, m.Part, m.From, m.To)
		}
	}
	return nil
}

// Conn reads and writes frames on one stream. Reads and writes may run in
// two goroutines; several writers need their own lock.
type Conn struct {
	r   *bufio.Reader
	w   io.Writer
	hdr [headerLen]byte
	buf []byte
	out []byte
	// Read and Written count frame bytes, for throughput metrics. Read is
	// touched by the reading goroutine only, Written by the writing one.
	Read, Written int64
}

// NewConn returns a Conn reading from r and writing to w (usually the same
// QUIC stream).
func NewConn(r io.Reader, w io.Writer) *Conn {
	return &Conn{r: bufio.NewReaderSize(r, 64<<10), w: w}
}

// Send writes m as one frame.
func (c *Conn) Send(m Message) error {
	var err error
	c.out, err = AppendFrame(c.out[:0], m)
	if err != nil {
		return err
	}
	n, err := c.w.Write(c.out)
	c.Written += int64(n)
	if cap(c.out) > 1<<20 {
		c.out = nil // do not keep a large batch's buffer around
	}
	return err
}

// Recv reads one frame. A frame that cannot be decoded is an *Error
// (CodeProtocol, CodeVersion or CodeFrameLimit); I/O errors are returned as
// they are.
func (c *Conn) Recv() (Message, error) {
	if _, err := io.ReadFull(c.r, c.hdr[:]); err != nil {
		return nil, err
	}
	typ, n, err := parseHeader(c.hdr[:])
	if err != nil {
		return nil, err
	}
	if cap(c.buf) < n {
		c.buf = make([]byte, n)
	}
	body := c.buf[:n]
	if _, err := io.ReadFull(c.r, body); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	c.Read += int64(headerLen + n)
	m, err := decodeBody(typ, body)
	if n > 1<<20 {
		c.buf = nil // a large batch: do not keep its buffer around
	}
	return m, err
}
