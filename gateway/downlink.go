package gateway

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/store"
)

// Headers of a message in /updates/down that steer its delivery.
const (
	// HeaderSubtopic is appended to the MQTT topic: a message of stream
	// topic device/pump-7 with subtopic config goes out on
	// updates/device/pump-7/config. Without it, on updates/device/pump-7.
	HeaderSubtopic = "subtopic"
	// HeaderDownQoS is the QoS the message is delivered with, "0", "1" or
	// "2" (capped by each subscription's QoS). Default 1.
	HeaderDownQoS = "qos"
	// HeaderRetain "false" delivers a message without retaining it; by
	// default the latest message of each MQTT topic is retained for
	// devices that subscribe later. (In a device message's envelope,
	// "true" says the PUBLISH had the retain flag.)
	HeaderRetain = "retain"
)

// HeaderShadowVersion is the header of a delta that holds the shadow
// version it is of (as shadow.HeaderVersion); it goes out to MQTT 5
// devices as the user property PropertyVersion. Every other header that
// does not steer the delivery goes out as a user property of its own name,
// but content_type, response_topic and correlation_data, which go out as
// the MQTT 5 properties of those names (downProperties).
const HeaderShadowVersion = "shadow_version"

// HeaderDesired is the header of a delta that holds the whole desired
// state it was computed from (as shadow.HeaderDesired); the gateway keeps
// it to send the current delta again (converge) and never sends it to
// devices.
const HeaderDesired = "desired"

// PropertyVersion is the MQTT 5 user property holding a delta's shadow
// version.
const PropertyVersion = "version"

// userProperties returns the headers of a downlink message that go out to
// MQTT 5 devices as user properties, sorted by name. Headers that are not
// valid UTF-8 are left out. mochi encodes no properties for MQTT 3.1.1.
func userProperties(h map[string]string) []packets.UserProperty {
	var out []packets.UserProperty
	for k, v := range h {
		switch k {
		case HeaderSubtopic, HeaderDownQoS, HeaderRetain, HeaderDesired:
			continue
		case HeaderShadowVersion:
			k = PropertyVersion
		}
		if !utf8.ValidString(k) || !utf8.ValidString(v) || strings.ContainsRune(k+v, 0) {
			continue
		}
		out = append(out, packets.UserProperty{Key: k, Val: v})
	}
	slices.SortFunc(out, func(a, b packets.UserProperty) int { return strings.Compare(a.Key, b.Key) })
	return out
}

// downlinkClientID is the mochi client id of the downlink's inline client.
// It is not a valid device id, so no device can take it over.
const downlinkClientID = "$weft-downlink"

// CursorGroup returns the consumer group under which the gateway called
// name records how far it has delivered /updates/down.
func CursorGroup(name string) string { return "gateway-" + name }

// downlink delivers the messages of /updates/down to the devices
// subscribed to their MQTT topics. It follows every topic and partition of
// the stream with the store's Consumer, under the group CursorGroup(Name):
// woken by commits to the stream, never polling. The consumer moves its
// cursor past a batch only once the handler returns, and the handler
// returns only once the batch is published and the inflight and retained
// messages it caused are durable: a restart neither loses nor replays what
// was delivered. A partition without a cursor is delivered from its oldest
// message, so that the latest of each MQTT topic ends up retained.
type downlink struct {
	s      *Server
	st     *store.Stream
	group  string
	client *mqtt.Client
}

// downlinkBatch is the most messages the downlink publishes before it
// makes their state durable and moves its cursor.
const downlinkBatch = 256

func newDownlink(s *Server) *downlink {
	return &downlink{
		s:      s,
		st:     s.cfg.Store.Stream(store.UpdatesStream),
		group:  CursorGroup(s.cfg.Name),
		client: s.mqtt.NewClient(nil, mqtt.LocalListener, downlinkClientID, true),
	}
}

// run delivers until ctx ends. A failed pass (a store error, a panic) is
// retried by the consumer from the durable cursors.
func (d *downlink) run(ctx context.Context) {
	// Topics of /updates/down that are not for devices (the nodes' own:
	// alarm settings, revoked tokens, ...) are someone else's to read.
	notForDevices := func(topic string) bool { return !forDevices(topic) }
	c, err := d.st.Consumer(store.ConsumerConfig{Group: d.group, Limit: downlinkBatch, Logger: d.s.log, Skip: notForDevices})
	if err != nil { // the group is a valid name by construction
		d.s.log.Error("downlink not started", "err", err)
		return
	}
	c.Run(ctx, d.handle)
}

// handle publishes a batch of one topic partition, in order, and returns
// once the session state it changed (messages queued or in flight for
// each subscriber, retained messages) is durable, so that the consumer
// may commit its cursor past the batch.
func (d *downlink) handle(ctx context.Context, b store.Batch) (func(*store.Tx) error, error) {
	for _, m := range b.Messages {
		d.publish(b.Topic, m)
	}
	// Published: the state it made is flushed and the cursor moved even if
	// the gateway is stopping, or a restart would publish it again.
	if err := d.s.state.w.flush(context.WithoutCancel(ctx)); err != nil {
		return nil, fmt.Errorf("gateway: downlink %s topic %q partition %d: %w", store.UpdatesStream, b.Topic, b.Partition, err)
	}
	return nil, nil
}

func (d *downlink) publish(topic string, m store.Message) {
	name, ok := DownlinkTopic(topic, m.Headers[HeaderSubtopic])
	if !ok {
		d.s.log.Warn("downlink message skipped: bad topic or subtopic", "topic", topic, "subtopic", m.Headers[HeaderSubtopic], "offset", m.Offset)
		return
	}
	qos := byte(1)
	switch m.Headers[HeaderDownQoS] {
	case "0":
		qos = 0
	case "2":
		qos = 2
	}
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos, Retain: m.Headers[HeaderRetain] != "false"},
		TopicName:   name,
		Payload:     m.Value,
		PacketID:    uint16(qos), // mochi checks an inline publish has one; it never uses it
		Properties:  downProperties(m.Headers),
	}
	if err := d.inject(pk); err != nil {
		d.s.log.Warn("downlink message not published", "topic", name, "offset", m.Offset, "err", err)
	}
}

// inject hands pk to mochi while no SUBSCRIBE is being handled.
func (d *downlink) inject(pk packets.Packet) error {
	d.s.deliver.Lock()
	defer d.s.deliver.Unlock()
	return d.s.mqtt.InjectPacket(d.client, pk)
}

// forDevices reports whether a topic of /updates/down is meant for
// devices: all, class/..., device/... or local/device/....
func forDevices(topic string) bool {
	return topic == "all" || strings.HasPrefix(topic, "class/") || strings.HasPrefix(topic, "device/") ||
		strings.HasPrefix(topic, "local/device/")
}

// DownlinkTopic returns the MQTT topic on which a message of
// /updates/down with the given stream topic and subtopic header is
// delivered: updates/<topic>[/<subtopic>]. The stream topic must be all,
// class/<class> or device/<id>; the subtopic, if any, one or more
// non-empty levels without wildcards.
func DownlinkTopic(topic, subtopic string) (string, bool) {
	// An edge linked to a core writes its own messages to a device (the
	// commands of its API) under local/device/<id>: device/<id> has one
	// writer, the core. They go out as the core's do.
	if rest, ok := strings.CutPrefix(topic, "local/"); ok && strings.HasPrefix(rest, "device/") {
		topic = rest
	}
	switch {
	case topic == "all":
	case strings.HasPrefix(topic, "class/") && certs.ValidName(topic[len("class/"):]):
	case strings.HasPrefix(topic, "device/") && certs.ValidName(topic[len("device/"):]):
	default:
		return "", false
	}
	if subtopic == "" {
		return "updates/" + topic, true
	}
	if len(subtopic) > 1024 || !utf8.ValidString(subtopic) || strings.ContainsAny(subtopic, "+#\x00") ||
		strings.HasPrefix(subtopic, "$") {
		return "", false
	}
	for _, l := range strings.Split(subtopic, "/") {
		if l == "" {
			return "", false
		}
	}
	return "updates/" + topic + "/" + subtopic, true
}
