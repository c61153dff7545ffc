package gateway

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/weft-io/weft/store"
)

// orderCases are the ways a device meets the deltas made while it is
// away: MQTT 5 with a receive maximum of 1 or 65535, MQTT 3.1.1, and each
// with or without a gateway restart in between (on the same store).
var orderCases = []struct {
	name    string
	version byte
	rm      uint16
	restart bool
}{
	{"v5/rm1", 5, 1, false},
	{"v5/rm1/restart", 5, 1, true},
	{"v5/rm65535", 5, 65535, false},
	{"v5/rm65535/restart", 5, 65535, true},
	{"v311", 4, 0, false},
	{"v311/restart", 4, 0, true},
}

// downCursor waits until the downlink has delivered n messages of topic.
func (e *env) downCursor(t testing.TB, topic string, n uint64) {
	t.Helper()
	waitFor(t, "downlink cursor", func() bool {
		off, ok, _ := e.st.Stream(store.UpdatesStream).Cursor(context.Background(), CursorGroup(testEdge), topic, 0)
		return ok && off == n
	})
}

// inflightRecords counts the inflight records of a device in the state
// table.
func (e *env) inflightRecords(t testing.TB, id string) int {
	t.Helper()
	docs, _, err := e.st.Table(StateTable(testEdge)).Scan(context.Background(), keyInflight+id+"/", "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	return len(docs)
}

// orderedDevice is one device of an ordering test, over either protocol.
type orderedDevice struct {
	e       *env
	t       *testing.T
	d       *devCert
	version byte
	rm      uint16
	p       *pahoClient
	r       *raw
}

func (o *orderedDevice) connect() (sessionPresent bool) {
	o.t.Helper()
	if o.version == 5 {
		cp := persistent()
		rm := o.rm
		cp.Properties.ReceiveMaximum = &rm
		o.p = o.e.mustPaho(o.t, o.d, cp)
		return o.p.connack.SessionPresent
	}
	o.r = o.e.raw(o.t, o.d.cert, 4)
	ack := o.r.connect(o.d.id, func(p *packets.Packet) { p.Connect.Clean = false })
	if ack.ReasonCode != 0 {
		o.t.Fatalf("connack %#x", ack.ReasonCode)
	}
	return ack.SessionPresent
}

func (o *orderedDevice) subscribe(filter string) {
	o.t.Helper()
	if o.version == 5 {
		o.p.subscribe(o.t, 1, filter)
		return
	}
	o.r.send(subscribePacket(4, 1, filter))
	o.r.mustRead(packets.Suback)
}

func (o *orderedDevice) close() {
	o.t.Helper()
	if o.version == 5 {
		o.p.close()
	} else {
		o.r.send([]byte{packets.Disconnect << 4, 0})
		o.r.closed()
	}
	waitFor(o.t, "disconnect", func() bool { return o.e.srv.Metrics().Connections() == 0 })
}

// next returns the next message's payload and version property,
// acknowledging it (paho does so itself).
func (o *orderedDevice) next() (payload, version string) {
	o.t.Helper()
	if o.version == 5 {
		m := o.p.next(o.t)
		if m.Properties != nil {
			version = m.Properties.User.Get(PropertyVersion)
		}
		return string(m.Payload), version
	}
	pk := o.r.mustRead(packets.Publish)
	if pk.FixedHeader.Qos > 0 {
		o.r.send(pubackPacket(4, pk.PacketID))
	}
	return string(pk.Payload), ""
}

// TestPersistentSessionGetsDeltasInOrder: deltas made in the same second
// to an away device reach it in the order they were made, once each, and
// none it acknowledged comes again after a restart.
func TestPersistentSessionGetsDeltasInOrder(t *testing.T) {
	for i, tc := range orderCases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			id := fmt.Sprintf("order-%d", i)
			topic := "device/" + id
			o := &orderedDevice{e: e, t: t, d: e.device(t, id, "pump"), version: tc.version, rm: tc.rm}
			o.connect()
			o.subscribe("updates/device/" + id + "/#")
			o.close()

			const n = 5
			for k := range n {
				e.down(t, topic, "shadow/delta", fmt.Sprintf("delta-%d", k),
					map[string]string{HeaderShadowVersion: fmt.Sprint(k + 1), HeaderRetain: "false"})
			}
			e.downCursor(t, topic, n)
			if tc.restart {
				e.stop()
				e.start()
			}
			if !o.connect() {
				t.Fatal("session not present")
			}
			for k := range n {
				got, version := o.next()
				if want := fmt.Sprintf("delta-%d", k); got != want {
					t.Fatalf("message %d: got %q, want %q", k, got, want)
				}
				if tc.version == 5 && version != fmt.Sprint(k+1) {
					t.Fatalf("message %d: version property %q, want %d", k, version, k+1)
				}
			}
			// Nothing comes twice: the next message is a new one.
			e.down(t, topic, "shadow/delta", "after", map[string]string{HeaderRetain: "false"})
			if got, _ := o.next(); got != "after" {
				t.Fatalf("got %q, want \"after\"", got)
			}
			waitFor(t, "acknowledged messages forgotten", func() bool { return e.inflightRecords(t, id) == 0 })
			o.close()

			// After a restart nothing acknowledged is sent again.
			e.stop()
			e.start()
			if !o.connect() {
				t.Fatal("session not present after restart")
			}
			e.down(t, topic, "shadow/delta", "last", map[string]string{HeaderRetain: "false"})
			if got, _ := o.next(); got != "last" {
				t.Fatalf("after restart: got %q, want \"last\"", got)
			}
		})
	}
}

// TestLiveDeltasInOrder: on a live connection a device with a receive
// maximum of 1 gets every delta, in order, one at a time.
func TestLiveDeltasInOrder(t *testing.T) {
	e := newEnv(t, nil)
	o := &orderedDevice{e: e, t: t, d: e.device(t, "live-1", "pump"), version: 5, rm: 1}
	o.connect()
	o.subscribe("updates/device/live-1/#")
	const n = 5
	var want []string
	for k := range n {
		want = append(want, fmt.Sprintf("delta-%d", k))
		e.down(t, "device/live-1", "shadow/delta", want[k], map[string]string{HeaderShadowVersion: fmt.Sprint(k + 1)})
	}
	var got []string
	for range n {
		p, _ := o.next()
		got = append(got, p)
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("got %v, want %v", got, want)
	}
	waitFor(t, "acknowledged messages forgotten", func() bool { return e.inflightRecords(t, "live-1") == 0 })
	o.close()
	e.stop()
	e.start()
	o.connect()
	e.down(t, "device/live-1", "shadow/delta", "last", nil)
	if p, _ := o.next(); p != "last" {
		t.Fatalf("after restart: got %q, want \"last\"", p)
	}
}

// TestDownlinkUserProperties: headers other than the steering ones reach
// MQTT 5 devices as user properties, the shadow version as "version", and
// content_type, response_topic and correlation_data as the properties of
// those names.
func TestDownlinkUserProperties(t *testing.T) {
	e := newEnv(t, nil)
	c := e.mustPaho(t, e.device(t, "props-1", "pump"), nil)
	c.subscribe(t, 1, "updates/device/props-1/#")
	e.down(t, "device/props-1", "shadow/delta", `{"x":1}`, map[string]string{
		HeaderShadowVersion: "7", "trace": "abc", HeaderDownQoS: "1", HeaderRetain: "false",
		HeaderContentType: "application/json", HeaderResponseTopic: "devices/props-1/commands/r1/response",
		HeaderCorrelationData: "cjE=",
	})
	m := c.next(t)
	if m.Properties.ContentType != "application/json" || m.Properties.ResponseTopic != "devices/props-1/commands/r1/response" ||
		string(m.Properties.CorrelationData) != "r1" {
		t.Fatalf("properties: content type %q, response topic %q, correlation data %q",
			m.Properties.ContentType, m.Properties.ResponseTopic, m.Properties.CorrelationData)
	}
	var got []string
	for _, p := range m.Properties.User {
		got = append(got, p.Key+"="+p.Value)
	}
	if want := []string{"trace=abc", "version=7"}; !bytes.Equal([]byte(strings.Join(got, ",")), []byte(strings.Join(want, ","))) {
		t.Fatalf("user properties %v, want %v", got, want)
	}
}

// TestMQTT311ClosedWithoutDisconnect: MQTT 3.1.1 has no DISCONNECT from
// server to client; a takeover and a shutdown just close the connection.
func TestMQTT311ClosedWithoutDisconnect(t *testing.T) {
	e := newEnv(t, nil)
	d := e.device(t, "v3-takeover", "pump")
	a := e.raw(t, d.cert, 4)
	a.connect(d.id, nil)
	b := e.raw(t, d.cert, 4)
	b.connect(d.id, nil)
	if pk := a.closed(); pk != nil {
		t.Fatalf("takeover: got DISCONNECT %#x", pk.ReasonCode)
	}
	e.stop()
	if pk := b.closed(); pk != nil {
		t.Fatalf("shutdown: got DISCONNECT %#x", pk.ReasonCode)
	}
}

// TestRetainedPublishRefused: the gateway retains nothing devices send,
// so it says Retain Available 0 and refuses retained publishes instead of
// acknowledging them as retained: MQTT 5 with DISCONNECT 0x9A, MQTT 3.1.1
// by closing the connection. Neither is stored.
func TestRetainedPublishRefused(t *testing.T) {
	e := newEnv(t, nil)
	d := e.device(t, "retain-1", "pump")
	for i, v := range []byte{5, 4} {
		r := e.raw(t, d.cert, v)
		ack := r.connect(d.id, nil)
		if v == 5 && (!ack.Properties.RetainAvailableFlag || ack.Properties.RetainAvailable != 0) {
			t.Fatalf("CONNACK retain available flag %v value %d, want 0", ack.Properties.RetainAvailableFlag, ack.Properties.RetainAvailable)
		}
		r.send(publishPacket(v, "devices/retain-1/telemetry", 1, 1, []byte("kept?"), func(p *packets.Packet) { p.FixedHeader.Retain = true }))
		pk := r.closed()
		switch {
		case v == 5 && (pk == nil || pk.ReasonCode != 0x9A):
			t.Fatalf("v5: got DISCONNECT %v, want 0x9A", pk)
		case v == 4 && pk != nil:
			t.Fatalf("v3.1.1: got DISCONNECT %#x", pk.ReasonCode)
		}
		waitFor(t, "disconnect counted", func() bool { return e.srv.Metrics().Disconnects(DisconnectRetain) == uint64(i+1) })
	}
	if n := len(e.messages(t, store.ByDeviceStream, "retain-1")); n != 0 {
		t.Fatalf("%d retained messages stored", n)
	}
	// An MQTT 5 Will to be retained is refused at CONNECT.
	r := e.raw(t, d.cert, 5)
	ack := r.connect(d.id, func(p *packets.Packet) {
		p.Connect.WillFlag, p.Connect.WillRetain = true, true
		p.Connect.WillTopic, p.Connect.WillPayload = "devices/retain-1/events/offline", []byte("gone")
	})
	if ack.ReasonCode != 0x9A {
		t.Fatalf("CONNACK %#x, want 0x9A", ack.ReasonCode)
	}
}
