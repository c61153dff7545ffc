package wire

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/weft-io/weft/store"
)

func msgs(n, size int, first uint64) []store.Message {
	out := make([]store.Message, n)
	ts := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	for i := range out {
		v := bytes.Repeat([]byte{byte('a' + i%26)}, size)
		out[i] = store.Message{Offset: first + uint64(i), Key: []byte("dev-1"), Value: v, Headers: map[string]string{"weft-device": "dev-1"}, Timestamp: ts.Add(time.Duration(i))}
	}
	return out
}

func mustBatch(t testing.TB, topic string, ms []store.Message, compress bool) *Batch {
	t.Helper()
	b, err := NewBatch(topic, 0, 0, ms, compress)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// frames is the table that feeds the round-trip test, the fuzz target's
// seeds and the benchmark.
func frames(t testing.TB) []Message {
	return []Message{
		&Hello{MinVersion: 1, MaxVersion: 1, Identity: "weft://node/edge/e1", Streams: []StreamSpec{{Path: "/uplink/events", Dir: Up}, {Path: "/updates/down", Dir: Down}}, Time: 42},
		&Hello{MinVersion: 1, MaxVersion: 1, Identity: "weft://node/edge/e1", Time: 42, Features: Features()},
		&Welcome{Version: 1, Identity: "weft://node/core/c1", Streams: []StreamSpec{{Path: "/uplink/events", Dir: Up}}, Refused: []Refusal{{Path: "/x/y", Reason: "no"}}, Time: 43},
		&Welcome{Version: 1, Identity: "weft://node/core/c1", Streams: []StreamSpec{}, Time: 43, Features: []string{FeatureGap}},
		&Error{Code: CodeVersion, Message: "peer speaks 9"},
		&Open{Path: "/uplink/events", Dir: Up, Partitions: 1},
		&Open{Path: "/training/x", Dir: Up, Partitions: 2, Policy: &Policy{VolumeTTL: int64(time.Hour), Quota: 1 << 30, DropOldest: true, TTL: int64(time.Minute), MaxBytes: 1 << 20, Priority: -1}},
		&Accept{Partitions: 4},
		&Accept{Partitions: 1, Policy: &Policy{VolumeTTL: int64(24 * time.Hour)}},
		&Backlog{Streams: []StreamBacklog{{Path: "/uplink/events", Messages: 27000, Bytes: 5 << 20, Age: 85000, Sent: 4096,
			Failed: []FailedRange{{Topic: "e1", Part: 0, From: 3469, To: 4076, Error: "store: corrupt batch"}}}, {Path: "/audit/events"}}},
		&Gap{Topic: "e1", Part: 0, From: 3469, To: 4076, Reason: "quarantined"},
		&Offer{Topics: []Bound{{Topic: "e1", Part: 0, Low: 3, Next: 10}, {Topic: "\xff\xfe not utf-8", Part: 2, Next: 1}}},
		&Positions{Positions: []Position{{Topic: "e1", Part: 0, Next: 7}}},
		mustBatch(t, "e1", msgs(3, 10, 5), false),
		mustBatch(t, "e1", msgs(100, 200, 0), true),
		&Ack{Topic: "e1", Part: 0, Next: 8, Applied: 3, Dups: 0},
		&Ack{Topic: "e1", Part: 0, Next: 2, Gap: true},
	}
}

func TestFrameRoundTrip(t *testing.T) {
	var stream bytes.Buffer
	c := NewConn(&stream, &stream)
	for _, m := range frames(t) {
		if err := c.Send(m); err != nil {
			t.Fatalf("%T: %v", m, err)
		}
	}
	for _, want := range frames(t) {
		got, err := c.Recv()
		if err != nil {
			t.Fatalf("%T: %v", want, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("round trip of %T:\n got %+v\nwant %+v", want, got, want)
		}
	}
	if _, err := c.Recv(); err != io.EOF {
		t.Errorf("after the last frame: %v, want EOF", err)
	}
}

func TestBatchMessages(t *testing.T) {
	for _, tc := range []struct {
		name      string
		n, size   int
		compress  bool
		wantCodec Codec
	}{
		{"small plain", 3, 10, false, CodecNone},
		{"compressible", 500, 200, true, CodecZstd},
		{"tiny not compressed", 1, 1, true, CodecNone},
		{"large", 40, 64 << 10, true, CodecZstd},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := msgs(tc.n, tc.size, 1000)
			b := mustBatch(t, "topic", in, tc.compress)
			if b.Codec != tc.wantCodec {
				t.Errorf("codec %d, want %d", b.Codec, tc.wantCodec)
			}
			frame, err := AppendFrame(nil, b)
			if err != nil {
				t.Fatal(err)
			}
			m, err := Decode(frame)
			if err != nil {
				t.Fatal(err)
			}
			out, err := m.(*Batch).Messages()
			if err != nil {
				t.Fatal(err)
			}
			if len(out) != len(in) {
				t.Fatalf("%d messages, want %d", len(out), len(in))
			}
			for i := range in {
				if out[i].Offset != in[i].Offset || !bytes.Equal(out[i].Value, in[i].Value) || !bytes.Equal(out[i].Key, in[i].Key) ||
					!out[i].Timestamp.Equal(in[i].Timestamp) || !reflect.DeepEqual(out[i].Headers, in[i].Headers) {
					t.Fatalf("message %d: got %+v, want %+v", i, out[i], in[i])
				}
			}
		})
	}
}

func TestBatchCorruptionIsRefused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*Batch)
	}{
		{"flipped byte", func(b *Batch) { b.Data[len(b.Data)/2] ^= 1 }},
		{"wrong crc", func(b *Batch) { b.CRC++ }},
		{"wrong count", func(b *Batch) { b.Count++ }},
		{"raw length", func(b *Batch) { b.RawLen-- }},
		{"zstd garbage", func(b *Batch) { b.Codec = CodecZstd }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := mustBatch(t, "t", msgs(20, 50, 0), false)
			tc.mutate(b)
			if _, err := b.Messages(); err == nil {
				t.Fatal("corrupt batch accepted")
			} else if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrProtocol) {
				t.Fatalf("error %v is neither corrupt nor protocol", err)
			}
		})
	}
	b := mustBatch(t, "t", msgs(200, 100, 0), true)
	b.Data[len(b.Data)-3] ^= 0x55
	if _, err := b.Messages(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("corrupt compressed batch: %v", err)
	}
}

func TestDecodeRefusals(t *testing.T) {
	good, err := AppendFrame(nil, &Ack{Topic: "t", Next: 1})
	if err != nil {
		t.Fatal(err)
	}
	set := func(i int, v byte) []byte { b := bytes.Clone(good); b[i] = v; return b }
	for _, tc := range []struct {
		name  string
		frame []byte
		want  error
	}{
		{"empty", nil, ErrProtocol},
		{"garbage", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), ErrProtocol},
		{"old version", set(1, 0), ErrVersion},
		{"future version", set(1, Version+1), ErrVersion},
		{"unknown type", set(2, 200), ErrProtocol},
		{"huge length", append(set(3, 0xff), 0), ErrFrameLimit},
		{"short body", good[:len(good)-1], ErrProtocol},
		{"body not cbor", append(append([]byte(nil), good[:3]...), 0, 0, 0, 2, 0xff, 0xff), ErrProtocol},
		{"wrong body type", append(append([]byte(nil), good[:3]...), 0, 0, 0, 1, 0x01), ErrProtocol},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(tc.frame)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Decode: %v, want %v", err, tc.want)
			}
		})
	}
}

func TestVersionErrorIsClear(t *testing.T) {
	var buf bytes.Buffer
	frame, _ := AppendFrame(nil, &Hello{})
	frame[1] = 7
	buf.Write(frame)
	_, err := NewConn(&buf, io.Discard).Recv()
	if !errors.Is(err, ErrVersion) || !strings.Contains(err.Error(), "version 7") {
		t.Fatalf("got %v", err)
	}
}

func TestCRCIsCastagnoli(t *testing.T) {
	b := mustBatch(t, "t", msgs(2, 5, 0), false)
	if b.CRC != crc32.Checksum(b.Data, crc32.MakeTable(crc32.Castagnoli)) {
		t.Fatal("CRC is not CRC32C of the records")
	}
}

func FuzzDecode(f *testing.F) {
	for _, m := range frames(f) {
		b, err := AppendFrame(nil, m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("w\x01\x08\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			if m != nil {
				t.Fatal("message and error")
			}
			return
		}
		if batch, ok := m.(*Batch); ok {
			if ms, err := batch.Messages(); err == nil && len(ms) != batch.Count {
				t.Fatalf("%d messages from a batch of %d", len(ms), batch.Count)
			}
		}
		again, err := AppendFrame(nil, m)
		if err != nil {
			t.Fatalf("re-encode %T: %v", m, err)
		}
		if _, err := Decode(again); err != nil {
			t.Fatalf("decode of re-encoded %T: %v", m, err)
		}
	})
}

func BenchmarkBatch(b *testing.B) {
	for _, tc := range []struct {
		name    string
		n, size int
	}{{"200B", 1000, 200}, {"64KiB", 64, 64 << 10}} {
		in := msgs(tc.n, tc.size, 0)
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(tc.n * tc.size))
			for b.Loop() {
				bt, err := NewBatch("t", 0, 0, in, true)
				if err != nil {
					b.Fatal(err)
				}
				frame, _ := AppendFrame(nil, bt)
				m, err := Decode(frame)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := m.(*Batch).Messages(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestOlderPeers checks that the fields added to Hello, Welcome, Open and
// Accept cost a node of before them nothing (it decodes the frames as it
// did, ignoring them), and that their frames, without the fields, decode
// here as having none.
func TestOlderPeers(t *testing.T) {
	// The frames as a node of before these fields declares them.
	type oldHello struct {
		MinVersion uint16       `cbor:"1,keyasint"`
		MaxVersion uint16       `cbor:"2,keyasint"`
		Identity   string       `cbor:"3,keyasint"`
		Streams    []StreamSpec `cbor:"4,keyasint"`
		Time       int64        `cbor:"5,keyasint"`
	}
	type oldOpen struct {
		Path       string `cbor:"1,keyasint"`
		Dir        Dir    `cbor:"2,keyasint"`
		Partitions int    `cbor:"3,keyasint,omitempty"`
	}
	type oldAccept struct {
		Partitions int `cbor:"1,keyasint,omitempty"`
	}
	for _, tc := range []struct {
		name     string
		new, old any
	}{
		{"hello", &Hello{MinVersion: 1, MaxVersion: 1, Identity: "weft://node/edge/e1", Time: 1, Features: Features()}, &oldHello{}},
		{"open", &Open{Path: "/training/x", Dir: Up, Partitions: 2, Policy: &Policy{VolumeTTL: int64(time.Hour), Quota: 5}}, &oldOpen{}},
		{"accept", &Accept{Partitions: 1, Policy: &Policy{TTL: 7}}, &oldAccept{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := encMode.Marshal(tc.new)
			if err != nil {
				t.Fatal(err)
			}
			if err := decMode.Unmarshal(b, tc.old); err != nil {
				t.Fatalf("an older node cannot decode the new %s: %v", tc.name, err)
			}
			// And back: the older node's frame decodes here with no policy
			// and no features.
			ob, err := encMode.Marshal(tc.old)
			if err != nil {
				t.Fatal(err)
			}
			v := reflect.New(reflect.TypeOf(tc.new).Elem()).Interface()
			if err := decMode.Unmarshal(ob, v); err != nil {
				t.Fatal(err)
			}
			switch m := v.(type) {
			case *Hello:
				if m.Features != nil || m.Identity != "weft://node/edge/e1" {
					t.Errorf("hello of an older node: %+v", m)
				}
			case *Open:
				if m.Policy != nil || m.Partitions != 2 {
					t.Errorf("open of an older node: %+v", m)
				}
			case *Accept:
				if m.Policy != nil || m.Partitions != 1 {
					t.Errorf("accept of an older node: %+v", m)
				}
			}
		})
	}
	if got := Common([]string{"backlog", "teleport"}); !reflect.DeepEqual(got, []string{FeatureBacklog}) {
		t.Errorf("Common = %v", got)
	}
	if got := Common(nil); got != nil {
		t.Errorf("Common(nil) = %v, want none", got)
	}
}

func TestReportFramesRefused(t *testing.T) {
	for _, m := range []Message{
		&Gap{Topic: "t", From: 5, To: 5},
		&Gap{Topic: "t", Part: -1, From: 1, To: 5},
		&Backlog{Streams: []StreamBacklog{{Path: "/a/b", Age: -1}}},
		&Backlog{Streams: []StreamBacklog{{Path: "/a/b", Failed: make([]FailedRange, MaxReportedFailures+1)}}},
		&Open{Path: "/a/b", Dir: Up, Partitions: 1, Policy: &Policy{Quota: -1}},
	} {
		b, err := AppendFrame(nil, m)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Decode(b); !errors.Is(err, ErrProtocol) {
			t.Errorf("%T %+v: %v, want a protocol error", m, m, err)
		}
	}
}

func TestRedirectTo(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
		ok   bool
	}{
		{Redirect("10.0.0.2:7443"), "10.0.0.2:7443", true},
		{fmt.Errorf("handshake: %w", &Error{Code: CodeRedirect, Message: "10.0.0.2:7443", Remote: true}), "10.0.0.2:7443", true},
		{&Error{Code: CodeRedirect, Message: Redirect("[::1]:7443").Error(), Remote: true}, "[::1]:7443", true},
		{&quic.ApplicationError{ErrorCode: quic.ApplicationErrorCode(CodeRedirect), ErrorMessage: Redirect("h:1").Error(), Remote: true}, "h:1", true},
		{&Error{Code: CodeRedirect}, "", false},
		{Errorf(CodeShutdown, "x: y"), "", false},
		{errors.New("other"), "", false},
	} {
		got, ok := RedirectTo(tc.err)
		if got != tc.want || ok != tc.ok {
			t.Errorf("RedirectTo(%v) = %q %v, want %q %v", tc.err, got, ok, tc.want, tc.ok)
		}
	}
}
