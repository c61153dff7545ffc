package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/weft-io/weft/shadow"
	"github.com/weft-io/weft/store"
)

// Envelope headers of a device message in /telemetry/events and
// /telemetry/by_device. The value is the MQTT payload, unchanged.
const (
	HeaderDevice   = "device"     // device id, from the certificate
	HeaderClass    = "class"      // device class, from the certificate
	HeaderGateway  = "gateway"    // the gateway's Name
	HeaderTopic    = "mqtt_topic" // the MQTT topic published to
	HeaderQoS      = "qos"        // "0", "1" or "2"
	HeaderReceived = "received"   // receive time, RFC 3339 with nanoseconds, UTC
	HeaderWill     = "will"       // "true" on a Will message
)

const (
	shadowReported  = "shadow/reported"
	devicesTopicPfx = "devices/"
)

// OnPublish is the publish path. It runs in the device's connection
// goroutine before mochi acknowledges anything: the message is checked
// against the device's rate limits and wrapped in its envelope. QoS 0 and
// 1 telemetry goes to the connection's publishQueue, which appends it and
// sends the PUBACK once it is durable; a shadow report (also merged into
// the shadow) or a QoS 2 message is appended here, after the queue, and
// only then does mochi send the PUBACK or PUBREC. Stored messages are
// not forwarded to MQTT subscribers.
//
// A refused message gets, from an MQTT 5 device's point of view, a PUBACK
// or PUBREC with the reason code (0x96 rate, 0x97 quota, 0x99 not a JSON
// object, 0x80 other store errors); a QoS 0 message over the rate limit
// closes the connection with DISCONNECT 0x96, other refused QoS 0
// messages are dropped. MQTT 3.1.1 has no negative acknowledgement, so a
// refused QoS 1 or 2 message closes the connection; a device never gets
// a PUBACK for a message that is not on disk.
func (h *hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil // the downlink
	}
	sess := sessionOf(cl)
	if sess == nil {
		h.s.metrics.publishRefusals.inc(RefuseNoSessionState)
		return pk, packets.ErrRejectPacket
	}
	qos := pk.FixedHeader.Qos
	if len(pk.TopicName) > h.s.cfg.MaxTopicLength {
		h.s.metrics.aclRefusals.inc(OpLabelPublish, ReasonTopicLength)
		return h.refusePublish(cl, sess, pk, codeTopicLength, DisconnectTopicLength, false)
	}
	if r := sess.limiter.allow(h.s.cfg.Now(), publishSize(pk)); r != "" {
		h.s.metrics.publishRefusals.inc(r)
		return h.refusePublish(cl, sess, pk, codeRateTooHigh, r, true)
	}
	if strings.HasSuffix(pk.TopicName, "/"+shadowReported) && !isJSONObject(pk.Payload) {
		h.s.metrics.publishRefusals.inc(RefusePayloadFormat)
		return h.refusePublish(cl, sess, pk, codePayloadFormat, DisconnectPayloadFormat, false)
	}
	if qos <= 1 && !strings.HasSuffix(pk.TopicName, "/"+shadowReported) {
		// Telemetry and events: made durable in order, in batches, while
		// the connection reads on; the PUBACK follows the append.
		sess.queue.push(cl, pk)
		return pk, packets.ErrRejectPacket
	}
	// Shadow reports and QoS 2 take the direct path, after what is queued.
	sess.queue.drain()
	if err := h.s.ingest(sess, sess.dev, pk, false); err != nil {
		code, reason := storeRefusal(err)
		h.s.metrics.publishRefusals.inc(reason)
		h.s.log.Warn("message not stored", "device", sess.dev.ID, "topic", pk.TopicName, "err", err)
		return h.refusePublish(cl, sess, pk, code, DisconnectStore, false)
	}
	h.s.metrics.messagesIn.inc(qosLabel(qos))
	// Acknowledge as usual, but do not retain or forward: devices cannot
	// subscribe to device topics anyway.
	return pk, packets.CodeSuccessIgnore
}

// publishSize is what a publish costs the device's byte budget: the
// whole packet after its fixed header as it came (topic, packet id,
// properties, payload), at least its topic and payload.
func publishSize(pk packets.Packet) int {
	return max(pk.FixedHeader.Remaining, 2+len(pk.TopicName)+len(pk.Payload))
}

// storeRefusal is the reason code and metric label for a store error.
func storeRefusal(err error) (packets.Code, string) {
	if errors.Is(err, store.ErrQuotaExceeded) || errors.Is(err, store.ErrDiskFull) {
		return codeQuotaExceeded, RefuseQuota
	}
	return codeUnspecified, RefuseStore
}

// refusePublish answers a publish that was not stored and tells mochi to
// do nothing more with it. closeQoS0 closes the connection of a v5 device
// for a QoS 0 message too (rate limits).
func (h *hook) refusePublish(cl *mqtt.Client, sess *session, pk packets.Packet, code packets.Code, reason string, closeQoS0 bool) (packets.Packet, error) {
	v5 := cl.Properties.ProtocolVersion == 5
	switch {
	case v5 && pk.FixedHeader.Qos > 0:
		h.ack(cl, pk, code)
	case v5 && closeQoS0, !v5 && pk.FixedHeader.Qos > 0, !v5 && closeQoS0:
		h.disconnect(cl, sess, code, reason)
	}
	return pk, packets.ErrRejectPacket
}

func isJSONObject(b []byte) bool {
	b = bytes.TrimLeft(b, " \t\r\n")
	return len(b) > 0 && b[0] == '{' && json.Valid(b)
}

// ingest makes a device message durable: its envelope appended in one
// commit to /telemetry/events (topic: the gateway name, key: the device
// id) and /telemetry/by_device (topic: the device id). A shadow report is
// merged into the device's shadow in that same commit, with the times of
// the fields it changes (shadow.Report): a crash leaves the report in
// both the shadow and the history, or in neither.
func (s *Server) ingest(sess *session, dev Device, pk packets.Packet, will bool) error {
	now := s.cfg.Now().UTC()
	payload := pk.Payload
	msgs := []store.Message{s.envelope(dev, pk, will, now)}
	if pk.TopicName != devicesTopicPfx+dev.ID+"/"+shadowReported {
		return s.appendMessages(sess, dev, msgs)
	}
	if !isJSONObject(payload) {
		return fmt.Errorf("gateway: shadow of %s: %w", dev.ID, store.ErrBadDocument)
	}
	start := time.Now()
	src := shadow.Source{Class: dev.Class, Edge: s.cfg.Name, Site: s.cfg.Site}
	doc, err := shadow.Report(s.storeCtx, s.cfg.Store, dev.ID, payload, src, now, s.historyRequests(dev, msgs))
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	s.metrics.observeAppend(time.Since(start))
	s.converge(s.storeCtx, dev.ID, doc.Reported)
	return nil
}

// envelope wraps a device message for the store: the payload unchanged,
// the device's identity, the MQTT details and the publish's MQTT 5
// properties (publishHeaders) in headers.
func (s *Server) envelope(dev Device, pk packets.Packet, will bool, now time.Time) store.Message {
	headers := map[string]string{
		HeaderDevice:   dev.ID,
		HeaderClass:    dev.Class,
		HeaderGateway:  s.cfg.Name,
		HeaderTopic:    pk.TopicName,
		HeaderQoS:      strconv.Itoa(int(pk.FixedHeader.Qos)),
		HeaderReceived: now.Format(time.RFC3339Nano),
	}
	maps.Copy(headers, publishHeaders(pk)) // their names never collide with those above
	if will {
		headers[HeaderWill] = "true"
	}
	return store.Message{Key: []byte(dev.ID), Value: pk.Payload, Headers: headers, Timestamp: now}
}

// lastSeenEvery is how often a device's messages move last_seen in its
// shadow: at most once in this time per connection, so that telemetry
// does not cost a shadow write each.
const lastSeenEvery = 30 * time.Second

// appendMessages appends a device's messages, in one durable commit, to
// /telemetry/events (topic: the gateway name, key: the device id) and
// /telemetry/by_device (topic: the device id). When sess last wrote the
// device's last_seen lastSeenEvery or more before the last message, the
// same commit moves it to that message's time. A shadow that cannot take
// it (a damaged document, say) does not keep the messages out: they are
// appended alone.
func (s *Server) appendMessages(sess *session, dev Device, msgs []store.Message) error {
	start := time.Now()
	reqs := s.historyRequests(dev, msgs)
	if !s.appendSeen(sess, dev.ID, reqs, msgs[len(msgs)-1].Timestamp) {
		if _, err := s.cfg.Store.AppendMany(s.storeCtx, reqs); err != nil {
			return fmt.Errorf("gateway: append: %w", err)
		}
	}
	s.metrics.observeAppend(time.Since(start))
	return nil
}

// appendSeen makes reqs durable in one commit with last_seen = at in the
// device's shadow, when sess last wrote it lastSeenEvery or more before
// at; it reports whether it did.
func (s *Server) appendSeen(sess *session, id string, reqs []store.AppendRequest, at time.Time) bool {
	if sess == nil || at.UnixNano()-sess.seen.Load() < int64(lastSeenEvery) {
		return false
	}
	err := s.cfg.Store.Write(s.storeCtx, func(tx *store.Tx) error {
		if _, err := tx.Append(reqs...); err != nil {
			return err
		}
		return markSeen(tx, id, at)
	})
	if err != nil {
		return false
	}
	sess.seen.Store(at.UnixNano())
	return true
}

// markSeen stages last_seen = at in the shadow of device id, unless it
// holds a later time already (a disconnect written meanwhile).
func markSeen(tx *store.Tx, id string, at time.Time) error {
	old, exists, err := tx.Get(store.ShadowsTable, id)
	if err != nil {
		return err
	}
	if exists {
		var doc struct {
			LastSeen time.Time `json:"last_seen"`
		}
		if json.Unmarshal(old.Value, &doc) == nil && !doc.LastSeen.Before(at) {
			return nil
		}
	}
	patch, _ := json.Marshal(map[string]string{"last_seen": at.UTC().Format(time.RFC3339Nano)})
	_, err = tx.Patch(store.ShadowsTable, id, patch)
	return err
}

// historyRequests are the appends of a device's messages to
// /telemetry/events and /telemetry/by_device, and of the answers to
// commands and the firmware status reports among them to /uplink/events
// too (topic: the gateway name), which every edge sends to its core: the
// core that sent a command or runs a rollout finds them there whether or
// not the edge replicates the history.
func (s *Server) historyRequests(dev Device, msgs []store.Message) []store.AppendRequest {
	reqs := []store.AppendRequest{
		{Path: store.EventsStream, Topic: s.cfg.Name, Partition: -1, Messages: msgs},
		{Path: store.ByDeviceStream, Topic: dev.ID, Partition: -1, Messages: msgs},
	}
	var answers []store.Message
	for _, m := range msgs {
		if t := m.Headers[HeaderTopic]; isCommandResponse(dev.ID, t) || t == devicesTopicPfx+dev.ID+"/firmware/status" {
			answers = append(answers, m)
		}
	}
	if answers != nil {
		reqs = append(reqs, store.AppendRequest{Path: store.UplinkStream, Topic: s.cfg.Name, Partition: -1, Messages: answers})
	}
	return reqs
}

// isCommandResponse reports whether topic is where device id answers a
// command: devices/<id>/commands/<request-id>/response.
func isCommandResponse(id, topic string) bool {
	rest, ok := strings.CutPrefix(topic, devicesTopicPfx+id+"/commands/")
	if !ok {
		return false
	}
	rid, ok := strings.CutSuffix(rest, "/response")
	return ok && rid != "" && !strings.Contains(rid, "/")
}
