package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/shadow"
	"github.com/weft-io/weft/store"
)

// Command limits.
const (
	// DefaultCommandTimeout is how long a command waits for its answer
	// when the request names no timeout.
	DefaultCommandTimeout = 10 * time.Second
	// MaxCommandTimeout is the longest timeout a command may ask for.
	MaxCommandTimeout = time.Minute
	// MaxCommandPayload bounds a command's payload, well inside the
	// gateway's maximum packet size.
	MaxCommandPayload = 64 << 10
	// maxCommandName bounds a command's name.
	maxCommandName = 64
)

// Headers of a command message in /updates/down. The gateway delivers the
// message on updates/<topic>/<subtopic> (HeaderSubtopic), never retained
// (HeaderRetain "false"); it gives MQTT 5 devices the response topic and
// correlation data as the PUBLISH properties of those names.
const (
	HeaderResponseTopic   = "response_topic"   // devices/<id>/commands/<request-id>/response
	HeaderCorrelationData = "correlation_data" // the request id, base64 (standard, padded)
	headerSubtopic        = "subtopic"         // gateway.HeaderSubtopic
	headerRetain          = "retain"           // gateway.HeaderRetain
)

// Command errors, answered from the error table.
var (
	// ErrNotConnected is a command to a device its shadow says is not
	// connected, without CommandRequest.Queue.
	ErrNotConnected = errors.New("api: device not connected")
	// ErrCommandTimeout is a command the device did not answer within
	// its timeout. The command may still reach the device.
	ErrCommandTimeout = errors.New("api: no answer from the device within the timeout")
)

// CommandRequest is the body of POST /api/v1/devices/{id}/commands.
type CommandRequest struct {
	// Name is the command, one MQTT topic level: letters, digits, '.',
	// '_' and '-', at most 64 bytes.
	Name string `json:"name"`
	// Payload is the JSON value sent to the device; absent: {}.
	Payload json.RawMessage `json:"payload,omitempty"`
	// Timeout is how long to wait for the answer, a Go duration such as
	// "10s", at most MaxCommandTimeout. Empty: DefaultCommandTimeout.
	Timeout string `json:"timeout,omitempty"`
	// Queue sends the command to a device that is not connected (it gets
	// it when it comes back, if within the timeout) instead of refusing
	// it.
	Queue bool `json:"queue,omitempty"`
}

// Command is a checked command request.
type Command struct {
	Name    string
	Payload json.RawMessage
	Timeout time.Duration
	Queue   bool
}

// CommandResult is the answer of a device to a command.
type CommandResult struct {
	// ID is the command's request id.
	ID   string `json:"id"`
	Name string `json:"name"`
	// Response is the device's answer: its JSON as published, or a JSON
	// string holding it when it is not JSON.
	Response json.RawMessage `json:"response"`
	// LatencyMS is the time from sending the command to its answer being
	// stored on this node, in milliseconds.
	LatencyMS float64 `json:"latency_ms"`
}

// ParseCommand reads a command request body: one JSON object, no unknown
// members, nothing after it. Errors are for the client to read, except
// *http.MaxBytesError, which means 413.
func ParseCommand(r io.Reader) (Command, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var req CommandRequest
	if err := dec.Decode(&req); err != nil {
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			return Command{}, err
		case errors.Is(err, io.EOF):
			return Command{}, errors.New("empty body")
		}
		return Command{}, fmt.Errorf("body: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return Command{}, err
		}
		return Command{}, errors.New("body: data after the JSON object")
	}
	return req.check()
}

// check validates a request and applies its defaults.
func (req CommandRequest) check() (Command, error) {
	cmd := Command{Name: req.Name, Timeout: DefaultCommandTimeout, Queue: req.Queue}
	if !validCommandName(req.Name) {
		return cmd, fmt.Errorf("name %q: want 1 to %d letters, digits, '.', '_' or '-'", req.Name, maxCommandName)
	}
	if req.Timeout != "" {
		d, err := time.ParseDuration(req.Timeout)
		if err != nil || d <= 0 || d > MaxCommandTimeout {
			return cmd, fmt.Errorf("timeout %q: want a duration above 0s and at most %s, such as 10s", req.Timeout, MaxCommandTimeout)
		}
		cmd.Timeout = d
	}
	if len(req.Payload) > MaxCommandPayload {
		return cmd, fmt.Errorf("payload: larger than %d bytes", MaxCommandPayload)
	}
	cmd.Payload = json.RawMessage(`{}`)
	if len(req.Payload) > 0 {
		var b bytes.Buffer
		if err := json.Compact(&b, req.Payload); err != nil {
			return cmd, fmt.Errorf("payload: %v", err)
		}
		cmd.Payload = b.Bytes()
	}
	return cmd, nil
}

func validCommandName(s string) bool {
	return len(s) <= maxCommandName && certs.ValidName(s)
}

// CommandResponseTopic is the MQTT topic on which device id answers the
// command requestID.
func CommandResponseTopic(id, requestID string) string {
	return "devices/" + id + "/commands/" + requestID + "/response"
}

// CommandSubtopic is the subtopic header of command name with requestID:
// the gateway delivers it on updates/device/<id>/commands/<name>/<request-id>.
func CommandSubtopic(name, requestID string) string {
	return "commands/" + name + "/" + requestID
}

// newRequestID returns a fresh request id: 26 characters of base32 (upper
// case letters and digits), a valid MQTT topic level.
func newRequestID() string { return rand.Text() }

// SendCommand sends command cmd to device id for the holder of token c
// and waits up to cmd.Timeout for the device's answer. The command goes to
// /updates/down, topic device/<id>, together with its audit record; the
// answer is the device's publish on CommandResponseTopic, found in
// /telemetry/by_device (this node's, or replicated from the device's
// edge) or in the /uplink/events of the device's edge, where the gateway
// copies answers. A device outside the token's scope is store.ErrNotFound; one not
// connected is ErrNotConnected unless cmd.Queue; no answer in time is
// ErrCommandTimeout. The outcome is audited too.
func (s *Server) SendCommand(ctx context.Context, c *certs.TokenClaims, id string, cmd Command) (CommandResult, error) {
	if c == nil || !c.Role.Allows(certs.RoleOperator) {
		return CommandResult{}, errNoRole
	}
	d, err := s.Device(ctx, c, id)
	if err != nil {
		return CommandResult{}, err
	}
	rid := newRequestID()
	res := CommandResult{ID: rid, Name: cmd.Name}
	object := store.ShadowsTable + "/" + id
	outcome := func(action string, detail map[string]any) {
		detail["id"], detail["name"] = rid, cmd.Name
		if err := s.cfg.Store.Audit(context.WithoutCancel(ctx), c.Subject, action, object, detail); err != nil {
			RequestLogger(ctx, s.log).Error("audit record not written", "device", id, "action", action, "err", err)
		}
	}
	if !d.Connected && !cmd.Queue {
		outcome("device.command.refused", map[string]any{"reason": "not_connected"})
		return res, fmt.Errorf("%w: device %s; send with \"queue\": true to have it delivered when the device comes back", ErrNotConnected, id)
	}

	// Where the answer will be: the device's history, and the uplink of its
	// edge (where the edge copies answers, so that they reach the core
	// whether or not it replicates the history); the end of each partition
	// of both, taken before the command can reach the device.
	var srcs []answerSource
	for _, at := range []struct{ path, topic string }{{store.ByDeviceStream, id}, {store.UplinkStream, d.Edge}} {
		if at.topic == "" {
			continue
		}
		src, err := s.answerSource(ctx, at.path, at.topic)
		if err != nil {
			return res, err
		}
		srcs = append(srcs, src)
	}

	respTopic := CommandResponseTopic(id, rid)
	msg := store.Message{Key: []byte(rid), Value: cmd.Payload, Headers: map[string]string{
		headerSubtopic:        CommandSubtopic(cmd.Name, rid),
		headerRetain:          "false",
		HeaderResponseTopic:   respTopic,
		HeaderCorrelationData: base64.StdEncoding.EncodeToString([]byte(rid)),
	}}
	rec, err := s.auditFor(c.Subject, "device.command", object, map[string]any{
		"id": rid, "name": cmd.Name, "payload": cmd.Payload, "timeout": cmd.Timeout.String(), "queue": cmd.Queue})
	if err != nil {
		return res, err
	}
	start := s.now()
	// Through the node's one path of core-owned writes (on a core
	// cluster's node, held by a majority and sent by every node).
	if _, err := shadow.DownOf(s.cfg.Store).Write(ctx, shadow.Write{
		Records: []store.AppendRequest{{Path: store.UpdatesStream, Topic: s.CommandTopic(id), Partition: -1, Messages: []store.Message{msg}}},
		Local:   []store.AppendRequest{rec},
	}); err != nil {
		outcome("device.command.refused", map[string]any{"reason": "not_sent"})
		return res, err
	}

	wctx, cancel := context.WithTimeout(ctx, cmd.Timeout)
	defer cancel()
	answer, err := awaitAnswer(wctx, srcs, respTopic)
	switch {
	case err == nil:
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		outcome("device.command.timed_out", map[string]any{"timeout": cmd.Timeout.String()})
		return res, fmt.Errorf("%w: device %s, command %s (%s), waited %s", ErrCommandTimeout, id, cmd.Name, rid, cmd.Timeout)
	case ctx.Err() != nil:
		outcome("device.command.abandoned", map[string]any{})
		return res, err
	default:
		return res, err
	}
	latency := s.now().Sub(start)
	res.LatencyMS = float64(latency.Microseconds()) / 1000
	res.Response = answer.Value
	if !json.Valid(res.Response) {
		res.Response, _ = json.Marshal(string(answer.Value))
	}
	outcome("device.command.answered", map[string]any{"latency_ms": res.LatencyMS})
	return res, nil
}

// CommandTopic is the topic of /updates/down that this node sends device
// id's commands on: device/<id>, where this node writes the device's
// updates. On a node whose updates are another's (Config.DesiredReadOnly:
// an edge linked to a core), device/<id> is the core's — a stream topic
// has one writer — so the node uses a topic of its own, local/device/<id>.
func (s *Server) CommandTopic(id string) string {
	if s.cfg.DesiredReadOnly {
		return LocalCommandPrefix + shadow.DeviceTopic(id)
	}
	return shadow.DeviceTopic(id)
}

// LocalCommandPrefix starts the topics of /updates/down that an edge
// linked to a core writes itself (CommandTopic): the gateway delivers
// local/device/<id> as it does device/<id>.
const LocalCommandPrefix = "local/"

// answerSource is a topic of a stream where a command's answer may come,
// and the end of each of its partitions before the command was sent.
type answerSource struct {
	st    *store.Stream
	topic string
	from  []uint64
}

func (s *Server) answerSource(ctx context.Context, path, topic string) (answerSource, error) {
	info, err := s.cfg.Store.Stat(ctx, path)
	if err != nil {
		return answerSource{}, err
	}
	src := answerSource{st: s.cfg.Store.Stream(path), topic: topic, from: make([]uint64, max(info.Partitions, 1))}
	for p := range src.from {
		if _, src.from[p], err = src.st.Bounds(ctx, topic, p); err != nil {
			return answerSource{}, err
		}
	}
	return src, nil
}

// awaitAnswer waits for the first message, in any of the sources at or
// after their ends before the command, whose MQTT topic is respTopic.
func awaitAnswer(ctx context.Context, srcs []answerSource, respTopic string) (store.Message, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	n := 0
	for _, src := range srcs {
		n += len(src.from)
	}
	found := make(chan store.Message, n)
	failed := make(chan error, n)
	var wg sync.WaitGroup
	for _, src := range srcs {
		for p, off := range src.from {
			wg.Go(func() {
				for {
					msgs, err := src.st.ReadWait(ctx, src.topic, p, off, store.ReadOptions{Limit: 256})
					if errors.Is(err, store.ErrTrimmed) {
						// Retention went past the reader: go on from what is left.
						if off, _, err = src.st.Bounds(ctx, src.topic, p); err == nil {
							continue
						}
					}
					if err != nil {
						failed <- err
						return
					}
					for _, m := range msgs {
						if m.Headers[headerMQTTTopic] == respTopic {
							found <- m
							return
						}
						off = m.Offset + 1
					}
				}
			})
		}
	}
	defer wg.Wait()
	select {
	case m := <-found:
		return m, nil
	case err := <-failed:
		select {
		case m := <-found:
			return m, nil
		default:
			return store.Message{}, err
		}
	}
}

// commandPost serves POST /api/v1/devices/{id}/commands.
func (s *Server) commandPost(w http.ResponseWriter, r *http.Request) {
	cmd, err := ParseCommand(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		badBody(w, err, "")
		return
	}
	res, err := s.SendCommand(r.Context(), Claims(r.Context()), r.PathValue("id"), cmd)
	if err != nil {
		s.deviceError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}
