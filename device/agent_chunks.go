package device

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/weft-io/weft/firmware"
)

// MQTTSource fetches releases over the device's own MQTT connection, in
// chunks from its edge's chunk server (firmware.ChunkServer): for devices
// that speak nothing but MQTT. It asks for one chunk at a time on
// devices/<id>/firmware/chunks/request and takes the answers the caller
// hands to Deliver from updates/device/<id>/firmware/chunk; a chunk not
// answered within Timeout is asked for again. The connection must be
// MQTT 5 (the answers' offsets travel in user properties).
type MQTTSource struct {
	// ID is the device's id. Required.
	ID string
	// Publish sends a request on the device's connection. Required.
	Publish func(ctx context.Context, topic string, payload []byte) error
	// Chunk is the size of the pieces asked for. Default and most
	// firmware.MaxChunk (64 KiB).
	Chunk int64
	// Timeout is how long an answer is waited for before the request is
	// sent again. Default 10 s.
	Timeout time.Duration
	// Attempts bounds the requests for one chunk. Default 5.
	Attempts int

	mu      sync.Mutex
	waiting map[string]chan *paho.Publish
}

var _ Source = (*MQTTSource)(nil)

// Deliver takes a message the device received and reports whether it was
// an answer of the chunk server (which it hands to the request waiting
// for it; an answer nobody waits for is dropped). It never blocks: call
// it from the client's message callback.
func (s *MQTTSource) Deliver(p *paho.Publish) bool {
	if p.Topic != firmware.ChunkAnswerTopic(s.ID) {
		return false
	}
	id := userProperty(p, firmware.ChunkPropRequest)
	s.mu.Lock()
	ch := s.waiting[id]
	s.mu.Unlock()
	if ch != nil {
		select {
		case ch <- p:
		default:
		}
	}
	return true
}

func userProperty(p *paho.Publish, key string) string {
	if p.Properties == nil {
		return ""
	}
	return p.Properties.User.Get(key)
}

// chunk is one answer.
type chunk struct {
	data []byte
	size int64 // the whole file's
}

// ErrChunkRefused is the error of a request the chunk server refused.
var ErrChunkRefused = errors.New("device: chunk request refused")

// fetch asks for length bytes of a file from off, again after each
// timeout, and returns the answer.
func (s *MQTTSource) fetch(ctx context.Context, file, name string, v firmware.Version, off, length int64) (chunk, error) {
	var idb [8]byte
	rand.Read(idb[:])
	id := hex.EncodeToString(idb[:])
	req, _ := json.Marshal(firmware.ChunkRequest{ID: id, Name: name, Version: v.String(), File: file, Offset: off, Length: length})
	ch := make(chan *paho.Publish, 1)
	s.mu.Lock()
	if s.waiting == nil {
		s.waiting = map[string]chan *paho.Publish{}
	}
	s.waiting[id] = ch
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.waiting, id)
		s.mu.Unlock()
	}()
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	attempts := s.Attempts
	if attempts <= 0 {
		attempts = 5
	}
	for range attempts {
		if err := s.Publish(ctx, firmware.ChunkRequestMQTTTopic(s.ID), req); err != nil {
			return chunk{}, fmt.Errorf("device: chunk request: %w", err)
		}
		t := time.NewTimer(timeout)
		select {
		case <-ctx.Done():
			t.Stop()
			return chunk{}, ctx.Err()
		case <-t.C:
			continue
		case p := <-ch:
			t.Stop()
			if e := userProperty(p, firmware.ChunkPropError); e == firmware.ChunkErrNotFound {
				return chunk{}, fmt.Errorf("%w: %s %s@%s", ErrNotOnEdge, file, name, v)
			} else if e != "" {
				return chunk{}, fmt.Errorf("%w: %s %s@%s at %d: %s", ErrChunkRefused, file, name, v, off, e)
			}
			size, err := strconv.ParseInt(userProperty(p, firmware.ChunkPropSize), 10, 64)
			got, err2 := strconv.ParseInt(userProperty(p, firmware.ChunkPropOffset), 10, 64)
			if err != nil || err2 != nil || got != off || int64(len(p.Payload)) > length || off+int64(len(p.Payload)) > size {
				return chunk{}, fmt.Errorf("device: chunk of %s %s@%s at %d: malformed answer", file, name, v, off)
			}
			return chunk{data: p.Payload, size: size}, nil
		}
	}
	return chunk{}, fmt.Errorf("device: chunk of %s %s@%s at %d: no answer after %d requests", file, name, v, off, attempts)
}

func (s *MQTTSource) chunkSize() int64 {
	if s.Chunk <= 0 || s.Chunk > firmware.MaxChunk {
		return firmware.MaxChunk
	}
	return s.Chunk
}

// Manifest fetches a release's signed manifest, at most one byte past
// firmware.MaxManifestSize (so that verification sees an oversized one as
// such).
func (s *MQTTSource) Manifest(ctx context.Context, name string, v firmware.Version) ([]byte, error) {
	var out []byte
	for {
		c, err := s.fetch(ctx, firmware.ChunkFileManifest, name, v, int64(len(out)), s.chunkSize())
		if err != nil {
			return nil, err
		}
		out = append(out, c.data...)
		if len(c.data) == 0 || int64(len(out)) >= c.size || len(out) > firmware.MaxManifestSize {
			return out, nil
		}
	}
}

// Image writes a release's image to w from byte off on, chunk by chunk.
// An error of w ends it at once.
func (s *MQTTSource) Image(ctx context.Context, name string, v firmware.Version, off int64, w io.Writer) error {
	for {
		c, err := s.fetch(ctx, firmware.ChunkFileImage, name, v, off, s.chunkSize())
		if err != nil {
			return err
		}
		if _, err := w.Write(c.data); err != nil {
			return err
		}
		off += int64(len(c.data))
		if len(c.data) == 0 || off >= c.size {
			return nil
		}
	}
}
