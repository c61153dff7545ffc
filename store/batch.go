package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"sort"
	"time"
)

// Message is one stream record. Offset and Partition are set by the store on
// append and on read.
type Message struct {
	Offset    uint64
	Partition int
	Key       []byte
	Value     []byte
	Headers   map[string]string
	Timestamp time.Time
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Batch encoding (version 1):
//
//	[0]     version
//	[1:5]   CRC32C of everything from byte 5 on
//	[5:9]   message count
//	[9:17]  max timestamp, unix nanoseconds
//	then per message: uvarint key length, key, uvarint value length, value,
//	varint timestamp (unix ns), uvarint header count, then per header
//	uvarint name length, name, uvarint value length, value (sorted by name).
const (
	batchVersion   = 1
	batchHeaderLen = 17
)

// batchInfo is what a batch header tells without decoding the messages.
type batchInfo struct {
	count int
	maxTS int64
}

// encodeBatch appends the encoding of msgs to dst.
func encodeBatch(dst []byte, msgs []Message) []byte {
	start := len(dst)
	dst = append(dst, batchVersion, 0, 0, 0, 0)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(msgs)))
	var maxTS int64 = math.MinInt64
	for i := range msgs {
		if ts := msgs[i].Timestamp.UnixNano(); ts > maxTS {
			maxTS = ts
		}
	}
	dst = binary.BigEndian.AppendUint64(dst, uint64(maxTS))
	var names []string
	for i := range msgs {
		m := &msgs[i]
		dst = binary.AppendUvarint(dst, uint64(len(m.Key)))
		dst = append(dst, m.Key...)
		dst = binary.AppendUvarint(dst, uint64(len(m.Value)))
		dst = append(dst, m.Value...)
		dst = binary.AppendVarint(dst, m.Timestamp.UnixNano())
		dst = binary.AppendUvarint(dst, uint64(len(m.Headers)))
		names = names[:0]
		for k := range m.Headers {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			v := m.Headers[k]
			dst = binary.AppendUvarint(dst, uint64(len(k)))
			dst = append(dst, k...)
			dst = binary.AppendUvarint(dst, uint64(len(v)))
			dst = append(dst, v...)
		}
	}
	binary.BigEndian.PutUint32(dst[start+1:], crc32.Checksum(dst[start+5:], castagnoli))
	return dst
}

// encodedSize is the size a message adds to a batch, used for byte limits
// and quotas before the batch is encoded.
func encodedSize(m *Message) int {
	n := len(m.Key) + len(m.Value) + 24
	for k, v := range m.Headers {
		n += len(k) + len(v) + 4
	}
	return n
}

// checkBatch verifies the version and CRC of b and returns its header.
func checkBatch(b []byte) (batchInfo, error) {
	info, err := batchHeaderOf(b)
	if err != nil {
		return info, err
	}
	if want, got := binary.BigEndian.Uint32(b[1:5]), crc32.Checksum(b[5:], castagnoli); want != got {
		return batchInfo{}, fmt.Errorf("%w: crc32c %08x, want %08x", ErrCorrupt, got, want)
	}
	return info, nil
}

// batchHeaderOf returns b's header, checking its length and version only.
func batchHeaderOf(b []byte) (batchInfo, error) {
	if len(b) < batchHeaderLen {
		return batchInfo{}, fmt.Errorf("%w: %d bytes is shorter than a batch header", ErrCorrupt, len(b))
	}
	if b[0] != batchVersion {
		return batchInfo{}, fmt.Errorf("%w: unknown batch version %d", ErrCorrupt, b[0])
	}
	return batchInfo{
		count: int(binary.BigEndian.Uint32(b[5:9])),
		maxTS: int64(binary.BigEndian.Uint64(b[9:17])),
	}, nil
}

var errShort = errors.New("truncated record")

// decodeBatch checks b and decodes its messages, numbering them from base.
// Decoded slices point into b: callers pass a copy they own.
func decodeBatch(b []byte, base uint64, part int) ([]Message, error) {
	info, err := checkBatch(b)
	if err != nil {
		return nil, err
	}
	if info.count > len(b) { // every message takes at least 4 bytes
		return nil, fmt.Errorf("%w: count %d exceeds batch size", ErrCorrupt, info.count)
	}
	msgs := make([]Message, 0, info.count)
	p := b[batchHeaderLen:]
	bytesField := func() ([]byte, error) {
		n, k := binary.Uvarint(p)
		if k <= 0 || n > uint64(len(p)-k) {
			return nil, errShort
		}
		v := p[k : k+int(n) : k+int(n)]
		p = p[k+int(n):]
		return v, nil
	}
	for i := 0; i < info.count; i++ {
		m := Message{Offset: base + uint64(i), Partition: part}
		if m.Key, err = bytesField(); err != nil {
			return nil, fmt.Errorf("%w: message %d key: %v", ErrCorrupt, i, err)
		}
		if m.Value, err = bytesField(); err != nil {
			return nil, fmt.Errorf("%w: message %d value: %v", ErrCorrupt, i, err)
		}
		ts, k := binary.Varint(p)
		if k <= 0 {
			return nil, fmt.Errorf("%w: message %d timestamp: %v", ErrCorrupt, i, errShort)
		}
		p = p[k:]
		m.Timestamp = time.Unix(0, ts).UTC()
		nh, k := binary.Uvarint(p)
		if k <= 0 || nh > uint64(len(p)) {
			return nil, fmt.Errorf("%w: message %d header count: %v", ErrCorrupt, i, errShort)
		}
		p = p[k:]
		if nh > 0 {
			m.Headers = make(map[string]string, nh)
			for j := uint64(0); j < nh; j++ {
				hk, err := bytesField()
				if err != nil {
					return nil, fmt.Errorf("%w: message %d header: %v", ErrCorrupt, i, err)
				}
				hv, err := bytesField()
				if err != nil {
					return nil, fmt.Errorf("%w: message %d header: %v", ErrCorrupt, i, err)
				}
				m.Headers[string(hk)] = string(hv)
			}
		}
		if len(m.Key) == 0 {
			m.Key = nil
		}
		msgs = append(msgs, m)
	}
	if len(p) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrCorrupt, len(p))
	}
	return msgs, nil
}
