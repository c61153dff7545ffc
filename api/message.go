package api

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/weft-io/weft/store"
)

// TimeLayout is how message timestamps are written: RFC 3339 in UTC with
// all nine digits of nanoseconds, so that timestamps sort as text.
const TimeLayout = "2006-01-02T15:04:05.000000000Z07:00"

// Message is the JSON form of a stream message. Key and value are strings
// when they are valid UTF-8; otherwise they are base64-encoded (standard
// encoding, padded) in KeyB64 and ValueB64 instead. A message without a
// key has a null key.
type Message struct {
	Offset    uint64            `json:"offset"`
	Partition int               `json:"partition"`
	Key       *string           `json:"key"`
	KeyB64    string            `json:"key_b64,omitempty"`
	Value     *string           `json:"value,omitempty"`
	ValueB64  string            `json:"value_b64,omitempty"`
	Headers   map[string]string `json:"headers"`
	Timestamp time.Time         `json:"timestamp"`
}

// MessageJSON returns the JSON form of m.
func MessageJSON(m store.Message) Message {
	out := Message{Offset: m.Offset, Partition: m.Partition, Headers: m.Headers, Timestamp: m.Timestamp}
	switch {
	case len(m.Key) == 0:
	case utf8.Valid(m.Key):
		k := string(m.Key)
		out.Key = &k
	default:
		out.KeyB64 = base64.StdEncoding.EncodeToString(m.Key)
	}
	if utf8.Valid(m.Value) {
		v := string(m.Value)
		out.Value = &v
	} else {
		out.ValueB64 = base64.StdEncoding.EncodeToString(m.Value)
	}
	if out.Headers == nil {
		out.Headers = map[string]string{}
	}
	return out
}

// MarshalJSON writes the message with its fields in a fixed order, the
// timestamp in TimeLayout and, when the key is in key_b64, no "key".
func (m Message) MarshalJSON() ([]byte, error) {
	var key json.RawMessage
	if m.KeyB64 == "" {
		key = json.RawMessage("null")
		if m.Key != nil {
			var err error
			if key, err = json.Marshal(*m.Key); err != nil {
				return nil, err
			}
		}
	}
	headers := m.Headers
	if headers == nil {
		headers = map[string]string{}
	}
	return json.Marshal(struct {
		Offset    uint64            `json:"offset"`
		Partition int               `json:"partition"`
		Key       json.RawMessage   `json:"key,omitempty"`
		KeyB64    string            `json:"key_b64,omitempty"`
		Value     *string           `json:"value,omitempty"`
		ValueB64  string            `json:"value_b64,omitempty"`
		Headers   map[string]string `json:"headers"`
		Timestamp string            `json:"timestamp"`
	}{m.Offset, m.Partition, key, m.KeyB64, m.Value, m.ValueB64, headers, m.Timestamp.UTC().Format(TimeLayout)})
}

// Decode returns the store message m stands for.
func (m Message) Decode() (store.Message, error) {
	key, err := bytesOf("key", m.Key, m.KeyB64)
	if err != nil {
		return store.Message{}, err
	}
	val, err := bytesOf("value", m.Value, m.ValueB64)
	if err != nil {
		return store.Message{}, err
	}
	return store.Message{Offset: m.Offset, Partition: m.Partition, Key: key, Value: val, Headers: m.Headers, Timestamp: m.Timestamp}, nil
}

// bytesOf returns the bytes given either as text or in base64.
func bytesOf(field string, text *string, b64 string) ([]byte, error) {
	if b64 != "" {
		if text != nil {
			return nil, fmt.Errorf("both %s and %s_b64 given", field, field)
		}
		b, err := base64.StdEncoding.Strict().DecodeString(b64)
		if err != nil {
			return nil, fmt.Errorf("%s_b64: %v", field, err)
		}
		return b, nil
	}
	if text == nil || *text == "" {
		return nil, nil
	}
	return []byte(*text), nil
}

// MaxAppendMessages is the most messages one POST may append.
const MaxAppendMessages = 10000

// AppendMessage is a message to append, as a POST body gives it. Key and
// value are given as text or base64 (KeyB64, ValueB64), not both; a
// missing value is empty. Without a partition the store picks one by key
// hash, or round-robin for keyless messages.
type AppendMessage struct {
	Topic     string            `json:"topic"`
	Partition *int              `json:"partition,omitempty"`
	Key       *string           `json:"key,omitempty"`
	KeyB64    string            `json:"key_b64,omitempty"`
	Value     *string           `json:"value,omitempty"`
	ValueB64  string            `json:"value_b64,omitempty"`
	Headers   map[string]string `json:"headers,omitempty"`
}

// AppendBody is the body of POST .../messages: one message, or several in
// Messages (each naming its own topic), never both.
type AppendBody struct {
	AppendMessage
	Messages []AppendMessage `json:"messages,omitempty"`
}

// appendItem is a decoded message with where it goes.
type appendItem struct {
	topic string
	part  int // -1: by key
	msg   store.Message
}

// errBodyTooLarge is a body beyond the message count limit.
var errBodyTooLarge = fmt.Errorf("more than %d messages", MaxAppendMessages)

// decodeAppend reads a POST body: exactly one JSON object, no unknown
// fields. Errors are for the client to read, except *http.MaxBytesError
// and errBodyTooLarge, which mean 413.
func decodeAppend(r io.Reader) ([]appendItem, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var body AppendBody
	if err := dec.Decode(&body); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty body")
		}
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, err
		}
		return nil, fmt.Errorf("body: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, err
		}
		return nil, errors.New("body: data after the JSON object")
	}
	msgs := []AppendMessage{body.AppendMessage}
	if body.Messages != nil {
		if !isZero(&body.AppendMessage) {
			return nil, errors.New("body: give either one message or a messages list, not both")
		}
		msgs = body.Messages
	}
	if len(msgs) == 0 {
		return nil, errors.New("body: no messages")
	}
	if len(msgs) > MaxAppendMessages {
		return nil, errBodyTooLarge
	}
	items := make([]appendItem, len(msgs))
	for i, m := range msgs {
		it, err := m.item()
		if err != nil {
			if len(msgs) > 1 {
				return nil, fmt.Errorf("message %d: %v", i, err)
			}
			return nil, err
		}
		items[i] = it
	}
	return items, nil
}

func isZero(m *AppendMessage) bool {
	return m.Topic == "" && m.Partition == nil && m.Key == nil && m.KeyB64 == "" &&
		m.Value == nil && m.ValueB64 == "" && m.Headers == nil
}

// item checks m and converts it.
func (m AppendMessage) item() (appendItem, error) {
	if m.Topic == "" {
		return appendItem{}, errors.New("topic is required")
	}
	part := -1
	if m.Partition != nil {
		if *m.Partition < 0 {
			return appendItem{}, fmt.Errorf("partition %d is negative", *m.Partition)
		}
		part = *m.Partition
	}
	key, err := bytesOf("key", m.Key, m.KeyB64)
	if err != nil {
		return appendItem{}, err
	}
	val, err := bytesOf("value", m.Value, m.ValueB64)
	if err != nil {
		return appendItem{}, err
	}
	for k := range m.Headers {
		if k == "" {
			return appendItem{}, errors.New("empty header name")
		}
	}
	headers := m.Headers
	if len(headers) == 0 {
		headers = nil
	}
	return appendItem{topic: m.Topic, part: part, msg: store.Message{Key: key, Value: val, Headers: headers}}, nil
}

// appendRequests groups items into store requests: each run of
// consecutive items for the same topic and partition becomes one request,
// so that the store assigns offsets in the order of the body.
func appendRequests(path string, items []appendItem) []store.AppendRequest {
	var reqs []store.AppendRequest
	for _, it := range items {
		if n := len(reqs); n > 0 && reqs[n-1].Topic == it.topic && reqs[n-1].Partition == it.part {
			reqs[n-1].Messages = append(reqs[n-1].Messages, it.msg)
			continue
		}
		reqs = append(reqs, store.AppendRequest{Path: path, Topic: it.topic, Partition: it.part, Messages: []store.Message{it.msg}})
	}
	return reqs
}
