package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"reflect"
	"testing"
	"time"
)

var batchTests = []struct {
	name string
	msgs []Message
}{
	{"one empty", []Message{{Timestamp: time.Unix(0, 1)}}},
	{"key value", []Message{{Key: []byte("k"), Value: []byte("v"), Timestamp: time.Unix(1700000000, 5)}}},
	{"headers", []Message{{Value: []byte("payload"), Headers: map[string]string{"device": "d1", "class": "pump", "qos": "1"}, Timestamp: time.Unix(1700000000, 0)}}},
	{"binary", []Message{{Key: []byte{0, 1, 2}, Value: []byte{0xff, 0, 0xfe}, Timestamp: time.Unix(-5, 0)}}},
	{"several", []Message{
		{Value: []byte("a"), Timestamp: time.Unix(10, 0)},
		{Value: bytes.Repeat([]byte("b"), 300), Timestamp: time.Unix(9, 0)},
		{Key: []byte("k"), Value: nil, Headers: map[string]string{"": ""}, Timestamp: time.Unix(11, 0)},
	}},
}

func TestBatchRoundTrip(t *testing.T) {
	for _, tc := range batchTests {
		t.Run(tc.name, func(t *testing.T) {
			b := encodeBatch(nil, tc.msgs)
			got, err := decodeBatch(b, 100, 3)
			if err != nil {
				t.Fatal(err)
			}
			for i := range tc.msgs {
				w := tc.msgs[i]
				w.Offset, w.Partition, w.Timestamp = 100+uint64(i), 3, w.Timestamp.UTC()
				if len(w.Value) == 0 {
					w.Value = got[i].Value[:0:0]
				}
				if len(got[i].Value) == 0 {
					got[i].Value = w.Value
				}
				if !reflect.DeepEqual(got[i], w) {
					t.Errorf("message %d = %+v, want %+v", i, got[i], w)
				}
			}
			info, _ := checkBatch(b)
			if info.count != len(tc.msgs) {
				t.Errorf("count %d", info.count)
			}
		})
	}
}

func TestBatchCorruption(t *testing.T) {
	good := encodeBatch(nil, batchTests[4].msgs)
	tests := []struct {
		name   string
		mangle func([]byte) []byte
	}{
		{"empty", func(b []byte) []byte { return nil }},
		{"short header", func(b []byte) []byte { return b[:10] }},
		{"bad version", func(b []byte) []byte { b[0] = 9; return b }},
		{"flipped payload bit", func(b []byte) []byte { b[len(b)/2] ^= 1; return b }},
		{"flipped crc", func(b []byte) []byte { b[2] ^= 1; return b }},
		{"truncated", func(b []byte) []byte { return b[:len(b)-3] }},
		{"trailing bytes with good crc", func(b []byte) []byte { return fixCRC(append(b, 1, 2, 3)) }},
		{"count too high with good crc", func(b []byte) []byte { binary.BigEndian.PutUint32(b[5:], 4); return fixCRC(b) }},
		{"huge count with good crc", func(b []byte) []byte { binary.BigEndian.PutUint32(b[5:], 1<<31); return fixCRC(b) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.mangle(append([]byte(nil), good...))
			if _, err := decodeBatch(b, 0, 0); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decode: %v, want ErrCorrupt", err)
			}
		})
	}
}

func fixCRC(b []byte) []byte {
	if len(b) >= 5 {
		binary.BigEndian.PutUint32(b[1:5], crc32.Checksum(b[5:], castagnoli))
	}
	return b
}

// FuzzDecodeBatch feeds arbitrary bytes to the batch decoder, once as they
// are and once with a valid CRC so the fuzzer gets past the checksum. It
// must never panic, and whatever decodes must encode back to the same bytes
// or be a non-canonical encoding of the same messages.
func FuzzDecodeBatch(f *testing.F) {
	for _, tc := range batchTests {
		f.Add(encodeBatch(nil, tc.msgs))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		decodeBatch(b, 0, 0)
		fixed := fixCRC(append([]byte(nil), b...))
		msgs, err := decodeBatch(fixed, 7, 1)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error not ErrCorrupt: %v", err)
			}
			return
		}
		again, err := decodeBatch(encodeBatch(nil, msgs), 7, 1)
		if err != nil || len(again) != len(msgs) {
			t.Fatalf("re-encoding failed: %v", err)
		}
		for i := range msgs {
			if !bytes.Equal(again[i].Key, msgs[i].Key) || !bytes.Equal(again[i].Value, msgs[i].Value) ||
				!reflect.DeepEqual(again[i].Headers, msgs[i].Headers) || !again[i].Timestamp.Equal(msgs[i].Timestamp) {
				t.Fatalf("message %d changed in a round trip", i)
			}
		}
	})
}
