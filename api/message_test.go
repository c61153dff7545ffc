package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/weft-io/weft/store"
)

func TestMessageJSON(t *testing.T) {
	ts := time.Date(2026, 3, 1, 12, 0, 0, 5, time.FixedZone("CET", 3600))
	tests := []struct {
		msg  store.Message
		want string
	}{
		{store.Message{Offset: 7, Partition: 2, Key: []byte("k"), Value: []byte("v"), Headers: map[string]string{"h": "1"}, Timestamp: ts},
			`{"offset":7,"partition":2,"key":"k","value":"v","headers":{"h":"1"},"timestamp":"2026-03-01T11:00:00.000000005Z"}`},
		{store.Message{Value: []byte{}, Timestamp: ts},
			`{"offset":0,"partition":0,"key":null,"value":"","headers":{},"timestamp":"2026-03-01T11:00:00.000000005Z"}`},
		{store.Message{Key: []byte{0xff}, Value: []byte{0, 0xc3}, Timestamp: ts},
			`{"offset":0,"partition":0,"key_b64":"/w==","value_b64":"AMM=","headers":{},"timestamp":"2026-03-01T11:00:00.000000005Z"}`},
	}
	for _, tt := range tests {
		b, err := json.Marshal(MessageJSON(tt.msg))
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != tt.want {
			t.Errorf("MessageJSON:\n got %s\nwant %s", b, tt.want)
		}
		var m Message
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		back, err := m.Decode()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(back.Key, tt.msg.Key) || !bytes.Equal(back.Value, tt.msg.Value) || !back.Timestamp.Equal(tt.msg.Timestamp) {
			t.Errorf("round trip of %+v gave %+v", tt.msg, back)
		}
	}
}

// FuzzMessageJSON checks that any key and value survive MessageJSON,
// encoding, decoding and Decode.
func FuzzMessageJSON(f *testing.F) {
	f.Add([]byte("k"), []byte("v"))
	f.Add([]byte{}, []byte{0xff, 0})
	f.Add([]byte{0xc3, 0x28}, []byte(`{"t":1}`))
	f.Fuzz(func(t *testing.T, key, val []byte) {
		b, err := json.Marshal(MessageJSON(store.Message{Key: key, Value: val}))
		if err != nil {
			t.Fatal(err)
		}
		var m Message
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		back, err := m.Decode()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(back.Key, key) || !bytes.Equal(back.Value, val) {
			t.Fatalf("key %x value %x came back as %x %x via %s", key, val, back.Key, back.Value, b)
		}
	})
}

// appendTests feed TestDecodeAppend and seed FuzzDecodeAppend.
var appendTests = []struct {
	body string
	want []appendItem // nil: an error
	err  string       // part of the error
}{
	{`{"topic":"t","value":"v"}`, []appendItem{{"t", -1, store.Message{Value: []byte("v")}}}, ""},
	{`{"topic":"t","key":"k","value":"","headers":{"a":"b"},"partition":2}`,
		[]appendItem{{"t", 2, store.Message{Key: []byte("k"), Headers: map[string]string{"a": "b"}}}}, ""},
	{`{"topic":"t","key_b64":"/w==","value_b64":"AMM="}`, []appendItem{{"t", -1, store.Message{Key: []byte{0xff}, Value: []byte{0, 0xc3}}}}, ""},
	{`{"messages":[{"topic":"a","value":"1"},{"topic":"b","partition":0}]}`,
		[]appendItem{{"a", -1, store.Message{Value: []byte("1")}}, {"b", 0, store.Message{}}}, ""},
	{`{"topic":"t","headers":{}}`, []appendItem{{"t", -1, store.Message{}}}, ""},
	{` {"topic":"t"} ` + "\n", []appendItem{{"t", -1, store.Message{}}}, ""},
	{``, nil, "empty body"},
	{`null`, nil, "topic is required"},
	{`[]`, nil, "cannot unmarshal"},
	{`{"topic":""}`, nil, "topic is required"},
	{`{"topic":"t","partition":-1}`, nil, "negative"},
	{`{"topic":"t","value":"v","value_b64":"dg=="}`, nil, "both value and value_b64"},
	{`{"topic":"t","key":"k","key_b64":"aw=="}`, nil, "both key and key_b64"},
	{`{"topic":"t","value_b64":"dg"}`, nil, "value_b64"},
	{`{"topic":"t","headers":{"":"x"}}`, nil, "empty header name"},
	{`{"topic":"t","extra":1}`, nil, "unknown field"},
	{`{"topic":"t"}{"topic":"u"}`, nil, "data after"},
	{`{"topic":"t","messages":[{"topic":"u"}]}`, nil, "not both"},
	{`{"messages":[]}`, nil, "no messages"},
	{`{"messages":[{"topic":"a"},{"value":"x"}]}`, nil, "message 1: topic is required"},
	{`{"topic":"t","value":1}`, nil, "cannot unmarshal"},
}

func TestDecodeAppend(t *testing.T) {
	for _, tt := range appendTests {
		got, err := decodeAppend(strings.NewReader(tt.body))
		if tt.want == nil {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: error %v, want one containing %q", tt.body, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tt.body, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", tt.body, got, tt.want)
		}
	}
}

func TestDecodeAppendLimit(t *testing.T) {
	r := http.MaxBytesReader(nil, io.NopCloser(strings.NewReader(`{"topic":"t","value":"`+strings.Repeat("x", 100)+`"}`)), 50)
	_, err := decodeAppend(r)
	var mbe *http.MaxBytesError
	if !errors.As(err, &mbe) {
		t.Fatalf("error %v, want *http.MaxBytesError", err)
	}
}

func TestAppendRequests(t *testing.T) {
	items := []appendItem{{"a", -1, store.Message{Value: []byte("1")}}, {"a", -1, store.Message{Value: []byte("2")}},
		{"a", 0, store.Message{}}, {"b", -1, store.Message{}}, {"a", -1, store.Message{}}}
	reqs := appendRequests("/v/s", items)
	var shape []string
	for _, r := range reqs {
		shape = append(shape, r.Topic+":"+strings.Repeat("m", len(r.Messages)))
	}
	if got := strings.Join(shape, " "); got != "a:mm a:m b:m a:m" {
		t.Fatalf("requests %s, want runs a:mm a:m b:m a:m", got)
	}
}

// FuzzDecodeAppend checks that the decoder never panics, that what it
// accepts is usable, and that encoding what it returned decodes the same.
func FuzzDecodeAppend(f *testing.F) {
	for _, tt := range appendTests {
		f.Add([]byte(tt.body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		items, err := decodeAppend(bytes.NewReader(body))
		if err != nil {
			return
		}
		if len(items) == 0 || len(items) > MaxAppendMessages {
			t.Fatalf("%d items", len(items))
		}
		var again AppendBody
		for _, it := range items {
			if it.topic == "" || it.part < -1 {
				t.Fatalf("item %+v", it)
			}
			m := AppendMessage{Topic: it.topic, Headers: it.msg.Headers}
			if it.part >= 0 {
				m.Partition = &it.part
			}
			if len(it.msg.Key) > 0 {
				m.KeyB64 = base64.StdEncoding.EncodeToString(it.msg.Key)
			}
			if len(it.msg.Value) > 0 {
				m.ValueB64 = base64.StdEncoding.EncodeToString(it.msg.Value)
			}
			again.Messages = append(again.Messages, m)
		}
		b, err := json.Marshal(again)
		if err != nil {
			t.Fatal(err)
		}
		items2, err := decodeAppend(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("re-encoded body %s: %v", b, err)
		}
		if !reflect.DeepEqual(items, items2) {
			t.Fatalf("decoded\n%+v\nthen\n%+v", items, items2)
		}
	})
}
