package wire

import "reflect"

// Frame types of volume mirrors (package mirror). A mirror runs on a QUIC
// stream of its own that the client opens with Mirror; then the side that
// receives the volume drives: it sends MirrorState, the sender answers
// MirrorUpdate and, unless there is nothing new, MirrorChunk frames and
// MirrorEnd; the receiver publishes and answers MirrorPublished, and asks
// again later.
const (
	TypeMirror          Type = 10
	TypeMirrorState     Type = 11
	TypeMirrorUpdate    Type = 12
	TypeMirrorChunk     Type = 13
	TypeMirrorEnd       Type = 14
	TypeMirrorPublished Type = 15
)

// Mirror opens a volume mirror on a new stream, client to server. Down:
// the server's volume is mirrored to the client; Up: the client's to the
// server.
type Mirror struct {
	Volume string `cbor:"1,keyasint"`
	Dir    Dir    `cbor:"2,keyasint"`
}

// MirrorState is what the receiving side has: the last update it
// published, and one staged but unpublished with the last key staged.
type MirrorState struct {
	Have    string `cbor:"1,keyasint,omitempty"`
	Pending string `cbor:"2,keyasint,omitempty"`
	After   []byte `cbor:"3,keyasint,omitempty"`
}

// MirrorUpdate is the update the sending side will send; To empty: none.
type MirrorUpdate struct {
	From string `cbor:"1,keyasint,omitempty"`
	To   string `cbor:"2,keyasint,omitempty"`
}

// MirrorEntry is one change of a mirrored volume: a key relative to the
// volume and its new value, or its deletion.
type MirrorEntry struct {
	Key    []byte `cbor:"1,keyasint"`
	Value  []byte `cbor:"2,keyasint,omitempty"`
	Delete bool   `cbor:"3,keyasint,omitempty"`
}

// MirrorChunk carries entries of an update, in key order.
type MirrorChunk struct {
	Entries []MirrorEntry `cbor:"1,keyasint"`
}

// MirrorEnd ends an update's chunks.
type MirrorEnd struct{}

// MirrorPublished says the receiving side published update Have.
type MirrorPublished struct {
	Have string `cbor:"1,keyasint"`
}

func (*Mirror) frameType() Type          { return TypeMirror }
func (*MirrorState) frameType() Type     { return TypeMirrorState }
func (*MirrorUpdate) frameType() Type    { return TypeMirrorUpdate }
func (*MirrorChunk) frameType() Type     { return TypeMirrorChunk }
func (*MirrorEnd) frameType() Type       { return TypeMirrorEnd }
func (*MirrorPublished) frameType() Type { return TypeMirrorPublished }

func init() {
	frameTypes[TypeMirror] = reflect.TypeFor[Mirror]()
	frameTypes[TypeMirrorState] = reflect.TypeFor[MirrorState]()
	frameTypes[TypeMirrorUpdate] = reflect.TypeFor[MirrorUpdate]()
	frameTypes[TypeMirrorChunk] = reflect.TypeFor[MirrorChunk]()
	frameTypes[TypeMirrorEnd] = reflect.TypeFor[MirrorEnd]()
	frameTypes[TypeMirrorPublished] = reflect.TypeFor[MirrorPublished]()
}
