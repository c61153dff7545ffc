package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/weft-io/weft/store"
)

func TestPublishStoresEnvelope(t *testing.T) {
	e := newEnv(t, nil)
	d := e.device(t, "pump-1", "pump")
	c := e.mustPaho(t, d, nil)
	for qos := range byte(3) {
		r := c.publish(t, fmt.Sprintf("devices/pump-1/telemetry/q%d", qos), qos, []byte(fmt.Sprintf("payload %d \x00\xff", qos)))
		if r.ReasonCode >= 0x80 {
			t.Fatalf("QoS %d: reason %#x", qos, r.ReasonCode)
		}
	}
	waitFor(t, "3 messages stored", func() bool { return len(e.messages(t, store.ByDeviceStream, "pump-1")) == 3 })
	for _, s := range []struct{ path, topic string }{{store.EventsStream, testEdge}, {store.ByDeviceStream, "pump-1"}} {
		msgs := e.messages(t, s.path, s.topic)
		if len(msgs) != 3 {
			t.Fatalf("%s/%s: %d messages", s.path, s.topic, len(msgs))
		}
		for i, m := range msgs {
			qos := byte(i)
			if m.Offset != uint64(i) {
				t.Errorf("%s: offset %d at %d", s.path, m.Offset, i)
			}
			if want := fmt.Sprintf("payload %d \x00\xff", qos); string(m.Value) != want {
				t.Errorf("%s: payload %q, want %q", s.path, m.Value, want)
			}
			if string(m.Key) != "pump-1" {
				t.Errorf("%s: key %q", s.path, m.Key)
			}
			want := map[string]string{
				HeaderDevice:  "pump-1",
				HeaderClass:   "pump",
				HeaderGateway: testEdge,
				HeaderTopic:   fmt.Sprintf("devices/pump-1/telemetry/q%d", qos),
				HeaderQoS:     fmt.Sprint(qos),
			}
			for k, v := range want {
				if m.Headers[k] != v {
					t.Errorf("%s offset %d: header %s = %q, want %q", s.path, i, k, m.Headers[k], v)
				}
			}
			rt, err := time.Parse(time.RFC3339Nano, m.Headers[HeaderReceived])
			if err != nil || time.Since(rt) > time.Minute {
				t.Errorf("%s: received %q: %v", s.path, m.Headers[HeaderReceived], err)
			}
		}
	}
	m := e.srv.Metrics()
	for q := range byte(3) {
		if m.MessagesIn(q) != 1 {
			t.Errorf("messages in QoS %d = %d", q, m.MessagesIn(q))
		}
	}
	// QoS 0 and 1 messages waiting together share an append.
	if m.Appends() < 2 || m.Appends() > 3 || m.Connections() != 1 || m.BytesIn() == 0 {
		t.Errorf("appends %d, connections %d, bytes in %d", m.Appends(), m.Connections(), m.BytesIn())
	}
}

func TestShadowAndConnectionState(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Site = "plant-3" })
	d := e.device(t, "pump-2", "pump")
	c := e.mustPaho(t, d, nil)
	var doc struct {
		Reported  map[string]any `json:"reported"`
		Connected bool           `json:"connected"`
		LastSeen  string         `json:"last_seen"`
		Class     string         `json:"class"`
		Edge      string         `json:"edge"`
		Site      string         `json:"site"`
	}
	read := func() {
		t.Helper()
		doc.Reported = nil
		if err := json.Unmarshal(e.shadow(t, "pump-2"), &doc); err != nil {
			t.Fatal(err)
		}
	}
	read()
	if !doc.Connected || doc.LastSeen == "" || doc.Class != "pump" || doc.Edge != testEdge || doc.Site != "plant-3" {
		t.Fatalf("after connect: %+v", doc)
	}
	c.publish(t, "devices/pump-2/shadow/reported", 1, []byte(`{"temp": 21, "fw": {"v": 1}}`))
	c.publish(t, "devices/pump-2/shadow/reported", 1, []byte(`{"hum": 40, "fw": {"b": 2}}`))
	read()
	want := map[string]any{"temp": 21.0, "hum": 40.0, "fw": map[string]any{"v": 1.0, "b": 2.0}}
	if got, _ := json.Marshal(doc.Reported); !bytes.Equal(got, mustJSON(want)) {
		t.Fatalf("reported = %s, want %s", got, mustJSON(want))
	}
	// Not an object: refused with 0x99, counted, not stored.
	before := len(e.messages(t, store.ByDeviceStream, "pump-2"))
	for _, p := range []string{`[1,2]`, `42`, `"x"`, `{"broken"`, ``} {
		if r := c.publish(t, "devices/pump-2/shadow/reported", 1, []byte(p)); r.ReasonCode != 0x99 {
			t.Fatalf("payload %q: reason %#x, want 0x99", p, r.ReasonCode)
		}
	}
	if got := e.srv.Metrics().PublishRefusals(RefusePayloadFormat); got != 5 {
		t.Fatalf("payload refusals = %d", got)
	}
	if after := len(e.messages(t, store.ByDeviceStream, "pump-2")); after != before {
		t.Fatalf("refused reports stored: %d -> %d", before, after)
	}
	// The reports themselves are in the device's history.
	if before != 2 {
		t.Fatalf("history has %d messages, want 2", before)
	}
	last := doc.LastSeen
	time.Sleep(2 * time.Millisecond)
	c.close()
	waitFor(t, "disconnected in shadow", func() bool { read(); return !doc.Connected })
	if doc.LastSeen == last {
		t.Fatal("last_seen not moved at disconnect")
	}
	waitFor(t, "connections gauge back to 0", func() bool { return e.srv.Metrics().Connections() == 0 })
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func TestDownlink(t *testing.T) {
	e := newEnv(t, nil)
	d := e.device(t, "pump-3", "pump")
	c := e.mustPaho(t, d, nil)
	sa := c.subscribe(t, 1, "updates/device/pump-3/#", "updates/class/pump/#", "updates/all/#")
	for i, r := range sa.Reasons {
		if r != 1 {
			t.Fatalf("subscription %d: reason %#x", i, r)
		}
	}
	cases := []struct {
		topic, subtopic, want string
		qos                   string
	}{
		{"device/pump-3", "config", "updates/device/pump-3/config", ""},
		{"class/pump", "firmware/announce", "updates/class/pump/firmware/announce", "0"},
		{"all", "", "updates/all", "2"},
		{"device/pump-3", "shadow/delta", "updates/device/pump-3/shadow/delta", "1"},
	}
	for i, tc := range cases {
		h := map[string]string{}
		if tc.qos != "" {
			h[HeaderDownQoS] = tc.qos
		}
		payload := fmt.Sprintf("msg-%d", i)
		e.down(t, tc.topic, tc.subtopic, payload, h)
		m := c.next(t)
		if m.Topic != tc.want || string(m.Payload) != payload {
			t.Fatalf("got %s %q, want %s %q", m.Topic, m.Payload, tc.want, payload)
		}
		wantQoS := byte(1)
		if tc.qos != "" {
			wantQoS = tc.qos[0] - '0'
		}
		if m.QoS != min(wantQoS, 1) {
			t.Errorf("%s: QoS %d, want %d", tc.want, m.QoS, min(wantQoS, 1))
		}
	}
	// Another device's and another class's updates do not reach it.
	e.down(t, "device/pump-99", "config", "not for you", nil)
	e.down(t, "class/valve", "config", "not for you", nil)
	e.down(t, "device/pump-3", "config", "last", nil)
	if m := c.next(t); string(m.Payload) != "last" {
		t.Fatalf("got %s %q", m.Topic, m.Payload)
	}
	// The cursor records what was delivered.
	waitFor(t, "cursor at 3", func() bool {
		off, ok, err := e.st.Stream(store.UpdatesStream).Cursor(context.Background(), CursorGroup(testEdge), "device/pump-3", 0)
		return err == nil && ok && off == 3
	})
	if e.srv.Metrics().MessagesOut(1) < 3 {
		t.Fatalf("messages out QoS 1 = %d", e.srv.Metrics().MessagesOut(1))
	}
}

func TestRetainedForLaterSubscriber(t *testing.T) {
	e := newEnv(t, nil)
	e.down(t, "class/pump", "config", "v1", nil)
	e.down(t, "class/pump", "config", "v2", nil)
	e.down(t, "class/pump", "other", "o1", nil)
	waitFor(t, "downlink cursor", func() bool {
		off, ok, _ := e.st.Stream(store.UpdatesStream).Cursor(context.Background(), CursorGroup(testEdge), "class/pump", 0)
		return ok && off == 3
	})
	c := e.mustPaho(t, e.device(t, "pump-4", "pump"), nil)
	c.subscribe(t, 1, "updates/class/pump/config")
	m := c.next(t)
	if m.Topic != "updates/class/pump/config" || string(m.Payload) != "v2" || !m.Retain {
		t.Fatalf("got %s %q retain %v, want the latest, retained", m.Topic, m.Payload, m.Retain)
	}
	// A device of another class gets nothing of it.
	v := e.mustPaho(t, e.device(t, "valve-1", "valve"), nil)
	sa := v.subscribe(t, 1, "updates/class/pump/#")
	if sa.Reasons[0] != 0x87 {
		t.Fatalf("valve subscribing to pump updates: reason %#x", sa.Reasons[0])
	}
	select {
	case m := <-v.msgs:
		t.Fatalf("valve got %s", m.Topic)
	case <-time.After(200 * time.Millisecond):
	}
}

// persistent returns the CONNECT of a persistent MQTT 5 session.
func persistent() *paho.Connect {
	exp := uint32(3600)
	return &paho.Connect{CleanStart: false, Properties: &paho.ConnectProperties{SessionExpiryInterval: &exp}}
}

func TestPersistentSessionGetsMissedMessages(t *testing.T) {
	e := newEnv(t, nil)
	d := e.device(t, "pump-5", "pump")
	c := e.mustPaho(t, d, persistent())
	c.subscribe(t, 1, "updates/device/pump-5/#")
	c.close()
	waitFor(t, "disconnect", func() bool { return e.srv.Metrics().Connections() == 0 })

	e.down(t, "device/pump-5", "a", "missed-1", map[string]string{HeaderRetain: "false"})
	e.down(t, "device/pump-5", "b", "missed-2", map[string]string{HeaderRetain: "false"})
	waitFor(t, "downlink cursor", func() bool {
		off, ok, _ := e.st.Stream(store.UpdatesStream).Cursor(context.Background(), CursorGroup(testEdge), "device/pump-5", 0)
		return ok && off == 2
	})
	c = e.mustPaho(t, d, persistent())
	if !c.connack.SessionPresent {
		t.Fatal("session not present")
	}
	got := map[string]bool{}
	for range 2 {
		m := c.next(t)
		got[string(m.Payload)] = true
	}
	if !got["missed-1"] || !got["missed-2"] {
		t.Fatalf("got %v", got)
	}
}

func TestRestartKeepsSessions(t *testing.T) {
	e := newEnv(t, nil)
	d := e.device(t, "pump-6", "pump")
	c := e.mustPaho(t, d, persistent())
	c.subscribe(t, 1, "updates/device/pump-6/#")
	e.down(t, "device/pump-6", "before", "before-restart", map[string]string{HeaderRetain: "false"})
	if m := c.next(t); string(m.Payload) != "before-restart" {
		t.Fatalf("got %q", m.Payload)
	}
	e.down(t, "class/pump", "config", "retained-before", nil)
	waitFor(t, "downlink cursor", func() bool {
		off, ok, _ := e.st.Stream(store.UpdatesStream).Cursor(context.Background(), CursorGroup(testEdge), "class/pump", 0)
		return ok && off == 1
	})
	c.close()
	waitFor(t, "disconnect", func() bool { return e.srv.Metrics().Connections() == 0 })
	e.stop()

	// Appended while the gateway is down.
	e.down(t, "device/pump-6", "during", "during-restart", map[string]string{HeaderRetain: "false"})
	e.start()
	waitFor(t, "downlink cursor", func() bool {
		off, ok, _ := e.st.Stream(store.UpdatesStream).Cursor(context.Background(), CursorGroup(testEdge), "device/pump-6", 0)
		return ok && off == 2
	})
	c = e.mustPaho(t, d, persistent())
	if !c.connack.SessionPresent {
		t.Fatal("session not present after restart")
	}
	if m := c.next(t); string(m.Payload) != "during-restart" {
		t.Fatalf("got %q, want the message appended during the restart only", m.Payload)
	}
	// The subscription survived: a new message arrives without
	// subscribing again.
	e.down(t, "device/pump-6", "after", "after-restart", nil)
	if m := c.next(t); string(m.Payload) != "after-restart" {
		t.Fatalf("got %q", m.Payload)
	}
	select {
	case m := <-c.msgs:
		t.Fatalf("redelivered %q", m.Payload)
	case <-time.After(200 * time.Millisecond):
	}
	// The retained message came back from the store, not from the stream
	// (the cursor is past it).
	late := e.mustPaho(t, e.device(t, "pump-6b", "pump"), nil)
	late.subscribe(t, 1, "updates/class/pump/#")
	if m := late.next(t); string(m.Payload) != "retained-before" || !m.Retain {
		t.Fatalf("got %q retain %v", m.Payload, m.Retain)
	}
}

func TestStoreRefusalIsNotAcknowledged(t *testing.T) {
	e := newEnv(t, nil)
	d := e.device(t, "pump-7", "pump")
	c := e.mustPaho(t, d, nil)
	c.publish(t, "devices/pump-7/telemetry", 1, []byte("fits"))
	if err := e.st.SetVolume(context.Background(), "telemetry", store.VolumeOptions{Quota: 1}); err != nil {
		t.Fatal(err)
	}
	before := len(e.messages(t, store.ByDeviceStream, "pump-7"))
	for qos := byte(1); qos <= 2; qos++ {
		r := c.publish(t, "devices/pump-7/telemetry", qos, bytes.Repeat([]byte("x"), 1000))
		if r.ReasonCode != 0x97 {
			t.Fatalf("QoS %d: reason %#x, want 0x97 quota exceeded", qos, r.ReasonCode)
		}
	}
	if after := len(e.messages(t, store.ByDeviceStream, "pump-7")); after != before {
		t.Fatalf("stored anyway: %d -> %d", before, after)
	}
	if got := e.srv.Metrics().PublishRefusals(RefuseQuota); got != 2 {
		t.Fatalf("quota refusals = %d", got)
	}

	// MQTT 3.1.1 has no negative PUBACK: the connection is closed
	// instead, and no PUBACK comes.
	d3 := e.device(t, "pump-7b", "pump")
	r := e.raw(t, d3.cert, 4)
	if ack := r.connect("pump-7b", nil); ack.ReasonCode != 0 {
		t.Fatalf("connack %#x", ack.ReasonCode)
	}
	r.send(publishPacket(4, "devices/pump-7b/telemetry", 1, 9, []byte("no room"), nil))
	for {
		pk, err := r.read()
		if err != nil {
			break
		}
		if pk.FixedHeader.Type == packets.Puback {
			t.Fatal("PUBACK for a message not stored")
		}
	}
	waitFor(t, "store disconnect counted", func() bool { return e.srv.Metrics().Disconnects(DisconnectStore) == 1 })

	// Room again: the same device is served.
	if err := e.st.SetVolume(context.Background(), "telemetry", store.VolumeOptions{}); err != nil {
		t.Fatal(err)
	}
	c.publish(t, "devices/pump-7/telemetry", 1, []byte("fits again"))
}

func TestMQTT311(t *testing.T) {
	e := newEnv(t, nil)
	d := e.device(t, "pump-8", "pump")
	r := e.raw(t, d.cert, 4)
	if ack := r.connect("pump-8", nil); ack.ReasonCode != 0 {
		t.Fatalf("connack %#x", ack.ReasonCode)
	}
	r.send(publishPacket(4, "devices/pump-8/telemetry", 0, 0, []byte("q0"), nil))
	r.send(publishPacket(4, "devices/pump-8/telemetry", 1, 1, []byte("q1"), nil))
	if pk := r.mustRead(packets.Puback); pk.PacketID != 1 {
		t.Fatalf("puback id %d", pk.PacketID)
	}
	r.send(publishPacket(4, "devices/pump-8/events/alarm", 2, 2, []byte("q2"), nil))
	if pk := r.mustRead(packets.Pubrec); pk.PacketID != 2 {
		t.Fatalf("pubrec id %d", pk.PacketID)
	}
	r.send(pubrelPacket(4, 2))
	r.mustRead(packets.Pubcomp)
	r.send(subscribePacket(4, 3, "updates/device/pump-8/#", "updates/device/other/#"))
	sa := r.mustRead(packets.Suback)
	if !bytes.Equal(sa.ReasonCodes, []byte{1, 0x80}) {
		t.Fatalf("suback %x", sa.ReasonCodes)
	}
	e.down(t, "device/pump-8", "config", "hello", nil)
	pub := r.mustRead(packets.Publish)
	if pub.TopicName != "updates/device/pump-8/config" || string(pub.Payload) != "hello" {
		t.Fatalf("got %s %q", pub.TopicName, pub.Payload)
	}
	msgs := e.messages(t, store.ByDeviceStream, "pump-8")
	if len(msgs) != 3 {
		t.Fatalf("%d messages stored", len(msgs))
	}
	for i, m := range msgs {
		if m.Headers[HeaderQoS] != fmt.Sprint(i) || string(m.Value) != fmt.Sprintf("q%d", i) {
			t.Errorf("message %d: %v %q", i, m.Headers, m.Value)
		}
	}
}

func TestRateLimits(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.MessageRate, c.MessageBurst = 0.5, 3
		c.MaxPacketSize, c.ByteRate, c.ByteBurst = 1024, 1, 1000 // the burst is raised to 1024
	})
	m := e.srv.Metrics()
	c := e.mustPaho(t, e.device(t, "rate-1", "pump"), nil)
	for i := range 3 {
		if r := c.publish(t, "devices/rate-1/telemetry", 1, []byte("x")); r.ReasonCode != 0 {
			t.Fatalf("message %d: %#x", i, r.ReasonCode)
		}
	}
	for qos := byte(1); qos <= 2; qos++ {
		if r := c.publish(t, "devices/rate-1/telemetry", qos, []byte("x")); r.ReasonCode != 0x96 {
			t.Fatalf("QoS %d over the rate: %#x, want 0x96", qos, r.ReasonCode)
		}
	}
	if got := m.PublishRefusals(RefuseMessageRate); got != 2 {
		t.Fatalf("message rate refusals = %d", got)
	}
	if n := len(e.messages(t, store.ByDeviceStream, "rate-1")); n != 3 {
		t.Fatalf("%d messages stored", n)
	}
	// QoS 0 over the rate: DISCONNECT 0x96.
	c.publish(t, "devices/rate-1/telemetry", 0, []byte("x"))
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("not disconnected")
	}
	waitFor(t, "rate disconnect counted", func() bool { return m.Disconnects(DisconnectMessageRate) == 1 })

	// Bytes: 1024 in the bucket, 1 a second.
	c = e.mustPaho(t, e.device(t, "rate-2", "pump"), nil)
	if r := c.publish(t, "devices/rate-2/telemetry", 1, make([]byte, 700)); r.ReasonCode != 0 {
		t.Fatalf("first 700 bytes: %#x", r.ReasonCode)
	}
	if r := c.publish(t, "devices/rate-2/telemetry", 1, make([]byte, 700)); r.ReasonCode != 0x96 {
		t.Fatalf("next 700 bytes: %#x, want 0x96", r.ReasonCode)
	}
	if got := m.PublishRefusals(RefuseByteRate); got != 1 {
		t.Fatalf("byte rate refusals = %d", got)
	}
	// MQTT 3.1.1: the connection is closed, with no PUBACK.
	r := e.raw(t, e.device(t, "rate-3", "pump").cert, 4)
	r.connect("rate-3", nil)
	for i := range 3 {
		r.send(publishPacket(4, "devices/rate-3/telemetry", 1, uint16(i+1), []byte("x"), nil))
		r.mustRead(packets.Puback)
	}
	r.send(publishPacket(4, "devices/rate-3/telemetry", 1, 4, []byte("x"), nil))
	if pk, err := r.read(); err == nil {
		t.Fatalf("got packet type %d, want the connection closed", pk.FixedHeader.Type)
	}
	waitFor(t, "rate disconnect counted", func() bool { return m.Disconnects(DisconnectMessageRate) == 2 })
}

func TestWillStored(t *testing.T) {
	e := newEnv(t, nil)
	d := e.device(t, "will-1", "pump")
	for _, v := range []byte{4, 5} {
		r := e.raw(t, d.cert, v)
		r.connect("will-1", func(p *packets.Packet) {
			p.Connect.WillFlag = true
			p.Connect.WillTopic = "devices/will-1/events/offline"
			p.Connect.WillPayload = []byte(fmt.Sprintf("gone v%d", v))
			p.Connect.WillQos = 1
		})
		r.conn.Close() // no DISCONNECT: the Will goes out
		waitFor(t, "will stored", func() bool { return len(e.messages(t, store.ByDeviceStream, "will-1")) == int(v-3) })
		m := e.messages(t, store.ByDeviceStream, "will-1")[v-4]
		if string(m.Value) != fmt.Sprintf("gone v%d", v) || m.Headers[HeaderWill] != "true" ||
			m.Headers[HeaderTopic] != "devices/will-1/events/offline" || m.Headers[HeaderDevice] != "will-1" {
			t.Fatalf("stored %q %v", m.Value, m.Headers)
		}
	}
	// A clean DISCONNECT drops the Will.
	r := e.raw(t, d.cert, 5)
	r.connect("will-1", func(p *packets.Packet) {
		p.Connect.WillFlag = true
		p.Connect.WillTopic = "devices/will-1/events/offline"
		p.Connect.WillPayload = []byte("not sent")
	})
	r.send([]byte{0xe0, 0x00})
	r.closed()
	waitFor(t, "disconnected", func() bool { return e.srv.Metrics().Connections() == 0 })
	if n := len(e.messages(t, store.ByDeviceStream, "will-1")); n != 2 {
		t.Fatalf("%d messages", n)
	}
}

// TestResendChecksACL: a device whose new certificate names another class
// does not get the messages queued for its old class (mochi resends
// inflight messages without asking the ACL, upstream #504).
func TestResendChecksACL(t *testing.T) {
	e := newEnv(t, nil)
	old := e.device(t, "morph-1", "pump")
	c := e.mustPaho(t, old, persistent())
	c.subscribe(t, 1, "updates/class/pump/#", "updates/device/morph-1/#")
	c.close()
	waitFor(t, "disconnect", func() bool { return e.srv.Metrics().Connections() == 0 })
	e.down(t, "class/pump", "config", "for pumps", map[string]string{HeaderRetain: "false"})
	e.down(t, "device/morph-1", "config", "for me", map[string]string{HeaderRetain: "false"})
	waitFor(t, "downlink cursor", func() bool {
		off, ok, _ := e.st.Stream(store.UpdatesStream).Cursor(context.Background(), CursorGroup(testEdge), "device/morph-1", 0)
		return ok && off == 1
	})

	iss, err := e.auth.IssueDevice("morph-1", "valve", 0)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tlsPair(iss.CertPEM, iss.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	c = e.mustPaho(t, &devCert{id: "morph-1", class: "valve", cert: cert}, persistent())
	if !c.connack.SessionPresent {
		t.Fatal("session not present")
	}
	if m := c.next(t); string(m.Payload) != "for me" {
		t.Fatalf("got %s %q", m.Topic, m.Payload)
	}
	select {
	case m := <-c.msgs:
		t.Fatalf("got %s %q", m.Topic, m.Payload)
	case <-time.After(300 * time.Millisecond):
	}
	if got := e.srv.Metrics().ACLRefusalsOp(OpLabelResend, ReasonOtherClass); got != 1 {
		t.Fatalf("resend refusals = %d", got)
	}
	// The old subscription no longer delivers either.
	e.down(t, "class/pump", "config", "for pumps again", nil)
	e.down(t, "device/morph-1", "config", "for me again", nil)
	if m := c.next(t); string(m.Payload) != "for me again" {
		t.Fatalf("got %s %q", m.Topic, m.Payload)
	}
	if got := e.srv.Metrics().ACLRefusalsOp(OpLabelSubscribe, ReasonOtherClass); got == 0 {
		t.Fatal("delivery refusal not counted")
	}
}

func TestTakeoverKeepsConnected(t *testing.T) {
	e := newEnv(t, nil)
	d := e.device(t, "twice-1", "pump")
	connected := func() bool {
		var doc struct {
			Connected bool `json:"connected"`
		}
		json.Unmarshal(e.shadow(t, "twice-1"), &doc)
		return doc.Connected
	}
	for range 5 {
		a := e.mustPaho(t, d, nil)
		b := e.mustPaho(t, d, nil) // takes over a's session
		select {
		case <-a.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("first connection not closed")
		}
		waitFor(t, "one connection", func() bool { return e.srv.Metrics().Connections() == 1 })
		if !connected() {
			t.Fatal("device shown disconnected while its second connection is up")
		}
		b.close()
		waitFor(t, "disconnected", func() bool { return !connected() })
	}
	if got := e.srv.Metrics().Disconnects(""); got != 0 {
		t.Fatalf("takeovers counted as forced disconnects: %d", got)
	}
}

func TestSessionRecords(t *testing.T) {
	e := newEnv(t, nil)
	tab := e.st.Table(StateTable(testEdge))
	has := func(key string) bool {
		_, err := tab.Get(context.Background(), key)
		return err == nil
	}
	clean := e.mustPaho(t, e.device(t, "rec-clean", "pump"), nil)
	clean.subscribe(t, 1, "updates/all/#")
	kept := e.mustPaho(t, e.device(t, "rec-kept", "pump"), persistent())
	kept.subscribe(t, 1, "updates/all/#")
	for _, k := range []string{clientKey("rec-clean"), subKey("rec-clean", "updates/all/#"), clientKey("rec-kept"), subKey("rec-kept", "updates/all/#")} {
		if !has(k) {
			t.Fatalf("%s not stored before the SUBACK", k)
		}
	}
	clean.close()
	kept.close()
	waitFor(t, "disconnects", func() bool { return e.srv.Metrics().Connections() == 0 })
	e.stop() // makes pending state writes durable
	if has(clientKey("rec-clean")) || has(subKey("rec-clean", "updates/all/#")) {
		t.Fatal("clean session kept")
	}
	if !has(clientKey("rec-kept")) || !has(subKey("rec-kept", "updates/all/#")) {
		t.Fatal("persistent session lost")
	}
	var rec clientRecord
	d, _ := tab.Get(context.Background(), clientKey("rec-kept"))
	if err := json.Unmarshal(d.Value, &rec); err != nil || rec.Class != "pump" || rec.Serial == "" {
		t.Fatalf("record %s: %v", d.Value, err)
	}
}

func TestSiteDefaultsToName(t *testing.T) {
	e := newEnv(t, nil)
	cfg, err := e.cfg.withDefaults()
	if err != nil || cfg.Site != testEdge {
		t.Fatalf("site %q, %v; want the gateway's name", cfg.Site, err)
	}
	bad := e.cfg
	bad.Site = "no spaces"
	if _, err := bad.withDefaults(); err == nil {
		t.Fatal("an invalid site was taken")
	}
}
