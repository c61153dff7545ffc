package firmware

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"

	"github.com/weft-io/weft/store"
)

// Chunked transfer over MQTT, for devices that speak nothing else. A
// device asks for a piece of a release's manifest or image by publishing
// a ChunkRequest (JSON) to
//
//	devices/<id>/firmware/chunks/request
//
// and its edge's ChunkServer answers on
//
//	updates/device/<id>/firmware/chunk
//
// with the bytes as payload and, as MQTT 5 user properties, the request's
// id, the file, the offset and the file's whole size; a request refused
// gets an empty payload and the property error. The device asks for the
// next piece when the last has come (or asks again after a timeout: an
// answer is sent once, QoS 0).
const (
	// ChunkRequestTopic is the last levels of the topic a device asks on:
	// devices/<id>/firmware/chunks/request.
	ChunkRequestTopic = "firmware/chunks/request"
	// ChunkSubtopic is the subtopic of the answers:
	// updates/device/<id>/firmware/chunk.
	ChunkSubtopic = "firmware/chunk"
	// MaxChunk is the most bytes one answer carries, and the length asked
	// for when a request says none.
	MaxChunk = 64 << 10
	// MaxChunkRequestSize bounds a request's JSON.
	MaxChunkRequestSize = 1 << 10
)

// The MQTT 5 user properties (store headers) of an answer.
const (
	ChunkPropRequest = "request" // the request's id
	ChunkPropFile    = "file"    // manifest or image
	ChunkPropOffset  = "offset"  // where the payload starts in the file
	ChunkPropSize    = "size"    // the whole file's size
	ChunkPropError   = "error"   // why the request was refused; the payload is empty
)

// The files a device may ask for.
const (
	ChunkFileManifest = "manifest"
	ChunkFileImage    = "image"
)

// Refusals of a chunk request (ChunkPropError).
const (
	ChunkErrBadRequest = "bad_request" // not a valid request
	ChunkErrNotFound   = "not_found"   // no such release on this edge
	ChunkErrWrongClass = "wrong_class" // a release of another class than the device's
	ChunkErrRange      = "range"       // an offset past the end of the file
	ChunkErrUnreadable = "unreadable"  // the edge could not read the file
)

// ChunkRequest is what a device publishes to ask for a piece of a file.
type ChunkRequest struct {
	// ID is the device's name for the request, echoed in the answer (at
	// most 64 characters).
	ID string `json:"id"`
	// Name and Version are the release's.
	Name    string `json:"name"`
	Version string `json:"version"`
	// File is manifest or image.
	File string `json:"file"`
	// Offset is the first byte asked for; an offset equal to the file's
	// size gets an empty answer with the size (the end).
	Offset int64 `json:"offset"`
	// Length is how many bytes, at most MaxChunk; 0 asks for MaxChunk.
	Length int64 `json:"length,omitempty"`
}

// ParseChunkRequest reads and checks a device's request: JSON with only
// the fields above, a valid release name and version, a known file, an
// offset not below 0, a length within 0..MaxChunk (0 becomes MaxChunk).
func ParseChunkRequest(b []byte) (ChunkRequest, Version, error) {
	var r ChunkRequest
	if len(b) > MaxChunkRequestSize {
		return r, Version{}, fmt.Errorf("firmware: chunk request of %d bytes, at most %d", len(b), MaxChunkRequestSize)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return r, Version{}, fmt.Errorf("firmware: chunk request: %w", err)
	}
	if dec.More() {
		return r, Version{}, errors.New("firmware: chunk request: data after the object")
	}
	v, err := ParseVersion(r.Version)
	switch {
	case err != nil:
		return r, Version{}, fmt.Errorf("firmware: chunk request: %w", err)
	case r.ID == "" || len(r.ID) > 64:
		return r, v, errors.New("firmware: chunk request: id must have 1 to 64 characters")
	case !validReleaseName(r.Name):
		return r, v, fmt.Errorf("firmware: chunk request: bad release name %q", r.Name)
	case r.File != ChunkFileManifest && r.File != ChunkFileImage:
		return r, v, fmt.Errorf("firmware: chunk request: file %q is neither manifest nor image", r.File)
	case r.Offset < 0:
		return r, v, errors.New("firmware: chunk request: negative offset")
	case r.Length < 0 || r.Length > MaxChunk:
		return r, v, fmt.Errorf("firmware: chunk request: length %d outside 0..%d", r.Length, MaxChunk)
	}
	if r.Length == 0 {
		r.Length = MaxChunk
	}
	return r, v, nil
}

// Headers of the device messages the gateway stores (its envelope).
const (
	headerDevice    = "device"
	headerClass     = "class"
	headerMQTTTopic = "mqtt_topic"
)

// Headers of /updates/down that steer the gateway's delivery.
const (
	headerSubtopic = "subtopic"
	headerQoS      = "qos"
	headerRetain   = "retain"
)

// ChunkServer answers the chunk requests of an edge's devices from the
// releases the edge holds (its mirror of /firmware). It follows
// /telemetry/events, where the gateway stores every device message, with
// the store's consumer (group "firmware-chunks", from the newest message
// on its first start), and appends each answer to /updates/down under the
// stream topic local/device/<id> (written by this edge only, delivered
// as updates/device/<id>/...), in the same commit as its cursor: a
// restart neither loses nor repeats an answer. A device gets only
// releases of its own class, and only those whose manifest is stored.
type ChunkServer struct {
	// Store is the edge's store. Required.
	Store *store.Store
	// Logger receives the server's warnings. Nil discards them.
	Logger *slog.Logger
}

// ChunkGroup is the consumer group of a ChunkServer.
const ChunkGroup = "firmware-chunks"

// Run answers requests until ctx ends.
func (s *ChunkServer) Run(ctx context.Context) error {
	log := s.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "firmware-chunks")
	c, err := s.Store.Stream(store.EventsStream).Consumer(store.ConsumerConfig{Group: ChunkGroup, Start: store.StartNewest, Limit: 64, Logger: log})
	if err != nil {
		return fmt.Errorf("firmware: chunk server: %w", err)
	}
	return c.Run(ctx, func(ctx context.Context, b store.Batch) (func(*store.Tx) error, error) {
		var out []store.AppendRequest
		for _, m := range b.Messages {
			if a, ok := s.Answer(ctx, m); ok {
				out = append(out, a)
			}
		}
		if out == nil {
			return nil, nil
		}
		return func(tx *store.Tx) error {
			_, err := tx.Append(out...)
			return err
		}, nil
	})
}

// Answer returns the answer to a device message of /telemetry/events,
// and false when the message is no chunk request.
func (s *ChunkServer) Answer(ctx context.Context, m store.Message) (store.AppendRequest, bool) {
	dev, class := m.Headers[headerDevice], m.Headers[headerClass]
	if dev == "" || m.Headers[headerMQTTTopic] != "devices/"+dev+"/"+ChunkRequestTopic {
		return store.AppendRequest{}, false
	}
	h := map[string]string{headerSubtopic: ChunkSubtopic, headerQoS: "0", headerRetain: "false"}
	msg := store.Message{Key: []byte(dev), Headers: h}
	ans := store.AppendRequest{Path: store.UpdatesStream, Topic: "local/device/" + dev, Partition: -1, Messages: []store.Message{msg}}
	refuse := func(reason string) (store.AppendRequest, bool) {
		h[ChunkPropError] = reason
		return ans, true
	}
	req, v, err := ParseChunkRequest(m.Value)
	if req.ID != "" && len(req.ID) <= 64 {
		h[ChunkPropRequest] = req.ID
	}
	if err != nil {
		return refuse(ChunkErrBadRequest)
	}
	h[ChunkPropFile], h[ChunkPropOffset] = req.File, strconv.FormatInt(req.Offset, 10)
	reg := &Registry{Store: s.Store}
	rel, err := reg.Get(ctx, req.Name, v)
	switch {
	case errors.Is(err, ErrNotFound):
		return refuse(ChunkErrNotFound)
	case err != nil:
		return refuse(ChunkErrUnreadable)
	case rel.Class != class:
		return refuse(ChunkErrWrongClass)
	}
	var rc io.ReadCloser
	var size int64
	if req.File == ChunkFileManifest {
		b, _, err := reg.ReadManifest(ctx, req.Name, v)
		if err != nil {
			return refuse(ChunkErrUnreadable)
		}
		size = int64(len(b))
		if req.Offset <= size {
			rc = io.NopCloser(bytes.NewReader(b[req.Offset:]))
		}
	} else {
		f := s.Store.File(rel.ImagePath)
		var info store.Info
		rc, info, err = f.OpenAt(ctx, req.Offset)
		if err != nil {
			return refuse(ChunkErrUnreadable)
		}
		size = info.Size
	}
	h[ChunkPropSize] = strconv.FormatInt(size, 10)
	if req.Offset > size {
		if rc != nil {
			rc.Close()
		}
		return refuse(ChunkErrRange)
	}
	defer rc.Close()
	buf := make([]byte, min(req.Length, size-req.Offset))
	if _, err := io.ReadFull(rc, buf); err != nil {
		return refuse(ChunkErrUnreadable)
	}
	ans.Messages[0].Value = buf
	return ans, true
}

// ChunkAnswerTopic is the MQTT topic a device gets its answers on.
func ChunkAnswerTopic(device string) string {
	return "updates/device/" + device + "/" + ChunkSubtopic
}

// ChunkRequestMQTTTopic is the MQTT topic a device asks on.
func ChunkRequestMQTTTopic(device string) string {
	return "devices/" + device + "/" + ChunkRequestTopic
}
