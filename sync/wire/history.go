package wire

import "reflect"

// Frame types of history requests: a core asks an edge for a device's
// messages it does not hold, on a stream the core opens.
const (
	TypeHistoryRequest  Type = 16
	TypeHistoryResponse Type = 17
)

// HistoryRequest asks for device's messages in /telemetry/by_device
// between From and To (Unix nanoseconds; From zero: the latest Limit).
type HistoryRequest struct {
	Device string `cbor:"1,keyasint"`
	From   int64  `cbor:"2,keyasint,omitempty"`
	To     int64  `cbor:"3,keyasint"`
	Limit  int    `cbor:"4,keyasint"`
}

// HistoryMessage is one message of a HistoryResponse.
type HistoryMessage struct {
	Offset    uint64            `cbor:"1,keyasint"`
	Partition int               `cbor:"2,keyasint,omitempty"`
	Key       []byte            `cbor:"3,keyasint,omitempty"`
	Value     []byte            `cbor:"4,keyasint,omitempty"`
	Headers   map[string]string `cbor:"5,keyasint,omitempty"`
	Time      int64             `cbor:"6,keyasint"`
}

// HistoryResponse answers a HistoryRequest, oldest first; More says the
// range holds more than Limit.
type HistoryResponse struct {
	Messages []HistoryMessage `cbor:"1,keyasint"`
	More     bool             `cbor:"2,keyasint,omitempty"`
}

func (*HistoryRequest) frameType() Type  { return TypeHistoryRequest }
func (*HistoryResponse) frameType() Type { return TypeHistoryResponse }

func init() {
	frameTypes[TypeHistoryRequest] = reflect.TypeFor[HistoryRequest]()
	frameTypes[TypeHistoryResponse] = reflect.TypeFor[HistoryResponse]()
}
