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
	if m.Appends() != 3 || m.Connections() != 1 || m.BytesIn() == 0 {
		t.Errorf("appends %d, connections %d, bytes in %d", m.Appends(), m.Connections(), m.BytesIn())
	}
}

func TestShadowAndConnectionState(t *testing.T) {
	e := newEnv(t, nil)
	d := e.device(t, "pump-2", "pump")
	c := e.mustPaho(t, d, nil)
	var doc struct {
		Reported  map[string]any `json:"reported"`
		Connected bool           `json:"connected"`
		LastSeen  string         `json:"last_seen"`
		Class     string         `json:"class"`
		Edge      string         `json:"edge"`
	}
	read := func() {
		t.Helper()
		doc.Reported = nil
		if err := json.Unmarshal(e.shadow(t, "pump-2"), &doc); err != nil {
			t.Fatal(err)
		}
	}
	read()
	if !doc.Connected || doc.LastSeen == "" || doc.Class != "pump" || doc.Edge != testEdge {
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
