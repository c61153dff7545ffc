package wire

import (
	"reflect"
	"slices"
)

// Frame types a peer sends only when both sides named their feature in
// the handshake (Hello.Features, Welcome.Features): a node of before them
// refuses a frame type it does not know.
const (
	TypeBacklog Type = 18
	TypeGap     Type = 19
)

// Features a node may name in Hello and Welcome.
const (
	// FeatureBacklog: Backlog frames on the control stream.
	FeatureBacklog = "backlog"
	// FeatureGap: Gap frames on a replicated stream.
	FeatureGap = "gap"
)

// Features are the optional features this node speaks.
func Features() []string { return []string{FeatureBacklog, FeatureGap} }

// Common returns the features of theirs this node speaks too, for Welcome.
func Common(theirs []string) []string {
	var out []string
	for _, f := range Features() {
		if slices.Contains(theirs, f) {
			out = append(out, f)
		}
	}
	return out
}

// Backlog is what the sending side of a link has not yet had acknowledged,
// per stream it sends, sent on the control stream every second or so while
// there is any (and once more when it is gone), so that the receiving side
// shows the sender's backlog even while no batch moves: a stalled path, a
// full window, a slow link.
type Backlog struct {
	Streams []StreamBacklog `cbor:"1,keyasint"`
}

// StreamBacklog is one stream's backlog at its sender.
type StreamBacklog struct {
	Path string `cbor:"1,keyasint"`
	// Messages the source holds and has not sent yet.
	Messages uint64 `cbor:"2,keyasint,omitempty"`
	// Bytes is about the size of those messages.
	Bytes int64 `cbor:"3,keyasint,omitempty"`
	// Age is how old the oldest message not yet acknowledged was when the
	// frame was sent, in milliseconds of the sender's clock (0: none, or
	// not known); an age, not a time, so the two clocks need not agree.
	Age int64 `cbor:"4,keyasint,omitempty"`
	// Sent is how many messages the sender has sent in batches on the
	// stream since it started on this connection: the receiver, counting
	// those it received, knows how many are still on their way, so its
	// figure is exact whatever the order of this frame and the batches.
	Sent uint64 `cbor:"5,keyasint,omitempty"`
	// UnsentAge is how old the oldest message not sent yet was, in
	// milliseconds (0: none, or not known): once the receiver has all that
	// was sent, its lag is the unsent messages, and this their age.
	UnsentAge int64 `cbor:"7,keyasint,omitempty"`
	// Failed lists, up to MaxReportedFailures, the topic partitions the
	// sender cannot read on from (corrupt data not quarantined), so the
	// receiving side shows them too.
	Failed []FailedRange `cbor:"6,keyasint,omitempty"`
}

// MaxReportedFailures bounds StreamBacklog.Failed.
const MaxReportedFailures = 16

// FailedRange is a topic partition whose range [From, To) the sender
// cannot read (To 0: not known), and why.
type FailedRange struct {
	Topic string `cbor:"1,keyasint"`
	Part  int    `cbor:"2,keyasint"`
	From  uint64 `cbor:"3,keyasint"`
	To    uint64 `cbor:"4,keyasint,omitempty"`
	Error string `cbor:"5,keyasint,omitempty"`
}

// Gap tells the receiver of a stream that offsets [From, To) of a topic
// partition will never come: the source quarantined them (damaged data
// given up, store.Stream.Quarantine). The receiver records the same gap in
// its replica and answers with an Ack whose Next is To, as for a batch.
type Gap struct {
	Topic string `cbor:"1,keyasint"`
	Part  int    `cbor:"2,keyasint"`
	From  uint64 `cbor:"3,keyasint"`
	To    uint64 `cbor:"4,keyasint"`
	// Reason says why, for the receiver's log and audit record.
	Reason string `cbor:"5,keyasint,omitempty"`
}

func (*Backlog) frameType() Type { return TypeBacklog }
func (*Gap) frameType() Type     { return TypeGap }

func init() {
	frameTypes[TypeBacklog] = reflect.TypeFor[Backlog]()
	frameTypes[TypeGap] = reflect.TypeFor[Gap]()
}
