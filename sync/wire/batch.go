package wire

import (
	"fmt"
	"hash/crc32"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/weft-io/weft/store"
)

// Codec is how a batch's records are compressed.
type Codec uint8

// Codecs.
const (
	CodecNone Codec = 0
	CodecZstd Codec = 1
)

// MaxBatchRecords and MaxBatchBytes bound one batch (its records before
// compression).
const (
	MaxBatchRecords = 1 << 16
	MaxBatchBytes   = 12 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Batch carries records of one topic partition at dense offsets from First.
type Batch struct {
	Topic string `cbor:"1,keyasint"`
	Part  int    `cbor:"2,keyasint"`
	// First is the offset of the first record; the others follow densely.
	First uint64 `cbor:"3,keyasint"`
	Count int    `cbor:"4,keyasint"`
	// Low is the sender's low-water mark: when First is past the
	// receiver's next offset and Low >= First, the source trimmed the gap.
	Low   uint64 `cbor:"5,keyasint,omitempty"`
	Codec Codec  `cbor:"6,keyasint,omitempty"`
	// RawLen is the length of the encoded records before compression.
	RawLen int `cbor:"7,keyasint"`
	// CRC is the CRC32C of the encoded records before compression.
	CRC  uint32 `cbor:"8,keyasint"`
	Data []byte `cbor:"9,keyasint"`
	// Backlog is how many messages of the stream the sender had not sent
	// yet when it sent this batch, for the receiver's view of the lag.
	Backlog uint64 `cbor:"10,keyasint,omitempty"`
}

// record is a message on the wire; the offset is implied by its place.
type record struct {
	_       struct{} `cbor:",toarray"`
	Key     []byte
	Value   []byte
	Headers map[string]string
	Time    int64 // Unix nanoseconds
}

var (
	encOnce sync.Once
	enc     *zstd.Encoder
	dec     *zstd.Decoder
)

func codecs() {
	encOnce.Do(func() {
		var err error
		enc, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true))
		if err != nil {
			panic(err)
		}
		dec, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(MaxBatchBytes), zstd.WithDecodeAllCapLimit(true))
		if err != nil {
			panic(err)
		}
	})
}

// NewBatch encodes msgs (dense offsets, as Stream.Read returns them) of
// topic partition part into a batch, compressed with zstd when compress is
// set and that makes it smaller. low is the source's low-water mark.
func NewBatch(topic string, part int, low uint64, msgs []store.Message, compress bool) (*Batch, error) {
	if len(msgs) == 0 || len(msgs) > MaxBatchRecords {
		return nil, fmt.Errorf("wire: batch of %d records", len(msgs))
	}
	recs := make([]record, len(msgs))
	for i := range msgs {
		m := &msgs[i]
		if m.Offset != msgs[0].Offset+uint64(i) {
			return nil, fmt.Errorf("wire: batch offsets not dense at %d", m.Offset)
		}
		recs[i] = record{Key: m.Key, Value: m.Value, Headers: m.Headers, Time: m.Timestamp.UnixNano()}
	}
	raw, err := encMode.Marshal(recs)
	if err != nil {
		return nil, fmt.Errorf("wire: encode records: %w", err)
	}
	if len(raw) > MaxBatchBytes {
		return nil, fmt.Errorf("wire: batch of %d bytes, limit %d", len(raw), MaxBatchBytes)
	}
	b := &Batch{Topic: topic, Part: part, First: msgs[0].Offset, Count: len(msgs), Low: low,
		RawLen: len(raw), CRC: crc32.Checksum(raw, castagnoli), Data: raw}
	if compress && len(raw) >= 256 {
		codecs()
		z := enc.EncodeAll(raw, make([]byte, 0, len(raw)/2))
		if len(z) < len(raw) {
			b.Codec, b.Data = CodecZstd, z
		}
	}
	return b, nil
}

func (b *Batch) check() error {
	switch {
	case b.Count <= 0 || b.Count > MaxBatchRecords:
		return Errorf(CodeProtocol, "batch of %d records", b.Count)
	case b.Part < 0:
		return Errorf(CodeProtocol, "batch of partition %d", b.Part)
	case b.RawLen < 0 || b.RawLen > MaxBatchBytes:
		return Errorf(CodeProtocol, "batch of %d bytes", b.RawLen)
	case b.First+uint64(b.Count) < b.First:
		return Errorf(CodeProtocol, "batch offsets overflow")
	case b.Codec != CodecNone && b.Codec != CodecZstd:
		return Errorf(CodeProtocol, "unknown codec %d", b.Codec)
	case b.Codec == CodecNone && len(b.Data) != b.RawLen:
		return Errorf(CodeCorrupt, "batch of %d bytes declared %d", len(b.Data), b.RawLen)
	}
	return nil
}

// Messages checks the batch (sizes, decompression, CRC32C, record count)
// and returns its messages at their offsets.
func (b *Batch) Messages() ([]store.Message, error) {
	if err := b.check(); err != nil {
		return nil, err
	}
	raw := b.Data
	if b.Codec == CodecZstd {
		codecs()
		out, err := dec.DecodeAll(b.Data, make([]byte, 0, b.RawLen))
		if err != nil {
			return nil, Errorf(CodeCorrupt, "topic %q offset %d: zstd: %v", b.Topic, b.First, err)
		}
		if len(out) != b.RawLen {
			return nil, Errorf(CodeCorrupt, "topic %q offset %d: %d bytes after zstd, declared %d", b.Topic, b.First, len(out), b.RawLen)
		}
		raw = out
	}
	if crc := crc32.Checksum(raw, castagnoli); crc != b.CRC {
		return nil, Errorf(CodeCorrupt, "topic %q offset %d: CRC32C %08x, declared %08x", b.Topic, b.First, crc, b.CRC)
	}
	var recs []record
	if err := decMode.Unmarshal(raw, &recs); err != nil {
		return nil, Errorf(CodeCorrupt, "topic %q offset %d: records: %v", b.Topic, b.First, err)
	}
	if len(recs) != b.Count {
		return nil, Errorf(CodeCorrupt, "topic %q offset %d: %d records, declared %d", b.Topic, b.First, len(recs), b.Count)
	}
	msgs := make([]store.Message, len(recs))
	for i, r := range recs {
		msgs[i] = store.Message{Offset: b.First + uint64(i), Partition: b.Part, Key: r.Key, Value: r.Value, Headers: r.Headers, Timestamp: time.Unix(0, r.Time).UTC()}
	}
	return msgs, nil
}

// Size is the batch's size on the wire, about.
func (b *Batch) Size() int { return len(b.Data) + len(b.Topic) + 48 }
