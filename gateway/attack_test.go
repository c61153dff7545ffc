package gateway

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/store"
)

// leafTemplate is a valid device certificate template; attack cases spoil
// one thing in it.
func leafTemplate(id, class string) *x509.Certificate {
	now := time.Now()
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	u, _ := url.Parse("weft://device/" + class + "/" + id)
	return &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: id},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs:                  []*url.URL{u},
	}
}

// signLeaf signs tmpl with ca (the device CA if nil) and returns it as a
// TLS certificate.
func (e *env) signLeaf(t testing.TB, tmpl *x509.Certificate, ca *certs.CA) tls.Certificate {
	t.Helper()
	if ca == nil {
		ca = e.auth.DeviceCA
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := tls.X509KeyPair(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// otherCA makes a CA unrelated to the device CA.
func otherCA(t testing.TB) *certs.CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(7),
		Subject:               pkix.Name{CommonName: "Some Other CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &certs.CA{Cert: cert, Key: key}
}

// refused checks that a connection with cert is refused: the handshake,
// or with TLS 1.3 the first read, fails.
func (e *env) refused(t testing.TB, cert tls.Certificate, cfg func(*tls.Config)) {
	t.Helper()
	c := e.clientTLS(cert)
	// Send the certificate even if its issuer is not one the server asks
	// for (Go's client would otherwise send none).
	c.Certificates = nil
	c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	if cfg != nil {
		cfg(c)
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", e.addr(), c)
	if err != nil {
		return
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	conn.Write(connectPacket(5, "x", nil))
	if _, err := conn.Read(make([]byte, 16)); err == nil {
		t.Fatal("connection with a bad certificate answered")
	}
}

// attack is one case of the matrix: do runs the attack and check says
// which counter must have moved.
type attack struct {
	name  string
	do    func(t *testing.T, e *env)
	moved func(m *Metrics) uint64
}

func refusal(reason string) func(*Metrics) uint64 {
	return func(m *Metrics) uint64 { return m.Refusals(reason) }
}

func disconnect(reason string) func(*Metrics) uint64 {
	return func(m *Metrics) uint64 { return m.Disconnects(reason) }
}

func aclRefusal(op, reason string) func(*Metrics) uint64 {
	return func(m *Metrics) uint64 { return m.ACLRefusalsOp(op, reason) }
}

// malformed packets, sent after a valid CONNECT of the given version,
// from published MQTT broker vulnerabilities and mochi's own (upstream
// #501). Every one must close the connection, and only it. They also seed
// FuzzConnection.
var malformed = []struct {
	name   string
	v      byte
	bytes  []byte
	reason string
}{
	// CVE-2021-34432 (mosquitto) and others: PUBLISH with a zero-length
	// topic and no topic alias.
	{"zero-length topic v5", 5, []byte{0x30, 0x03, 0x00, 0x00, 0x00}, DisconnectProtocolViolation},
	{"zero-length topic v3", 4, []byte{0x30, 0x02, 0x00, 0x00}, DisconnectProtocolViolation},
	{"zero-length topic QoS 1 v3", 4, []byte{0x32, 0x04, 0x00, 0x00, 0x00, 0x01}, DisconnectProtocolViolation},
	// mochi #501: a v5 SUBSCRIBE whose last filter has no options byte
	// indexes past the end of the packet and panics.
	{"truncated v5 SUBSCRIBE", 5, []byte{0x82, 0x06, 0x00, 0x01, 0x00, 0x00, 0x01, 'a'}, DisconnectPanic},
	{"truncated v5 SUBSCRIBE second filter", 5, []byte{0x82, 0x0b, 0x00, 0x02, 0x00, 0x00, 0x01, 'a', 0x01, 0x00, 0x02, 'b', '/'}, DisconnectPanic},
	{"truncated v3 SUBSCRIBE", 4, []byte{0x82, 0x05, 0x00, 0x01, 0x00, 0x01, 'a'}, DisconnectMalformed},
	// Remaining length of five bytes.
	{"remaining length overflow", 5, []byte{0x30, 0xff, 0xff, 0xff, 0xff, 0x7f}, DisconnectMalformed},
	// Reserved packet type 0 and 15 (AUTH) in 3.1.1.
	{"reserved packet type", 5, []byte{0x00, 0x00}, DisconnectMalformed},
	// PUBLISH with both QoS bits set.
	{"QoS 3", 5, []byte{0x36, 0x05, 0x00, 0x01, 'a', 0x00, 0x01}, DisconnectProtocolViolation},
	// SUBSCRIBE with wrong reserved flags.
	{"SUBSCRIBE flags", 4, []byte{0x80, 0x06, 0x00, 0x01, 0x00, 0x01, 'a', 0x00}, DisconnectMalformed},
	// A second CONNECT.
	{"second CONNECT", 4, connectPacket(4, "again", nil), DisconnectProtocolViolation},
	// v5 PUBLISH whose properties claim more bytes than the packet has.
	{"property length overrun", 5, []byte{0x30, 0x05, 0x00, 0x01, 'a', 0x7f, 0x01}, DisconnectMalformed},
	// v5 PUBLISH with a property not valid in a PUBLISH (session expiry).
	{"wrong property", 5, []byte{0x30, 0x09, 0x00, 0x01, 'a', 0x05, 0x11, 0x00, 0x00, 0x00, 0x01}, DisconnectMalformed},
	// Topic with invalid UTF-8 and a NUL.
	{"bad UTF-8 topic", 4, []byte{0x30, 0x05, 0x00, 0x03, 'a', 0xff, 'b'}, DisconnectMalformed},
	{"NUL in topic", 4, []byte{0x30, 0x05, 0x00, 0x03, 'a', 0x00, 'b'}, DisconnectMalformed},
	// SUBSCRIBE with no filter.
	{"SUBSCRIBE without filters", 4, []byte{0x82, 0x02, 0x00, 0x01}, DisconnectProtocolViolation},
	// QoS 1 PUBLISH without its packet id.
	{"missing packet id", 4, []byte{0x32, 0x03, 0x00, 0x01, 'a'}, DisconnectMalformed},
}

func TestAttackMatrix(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.ConnectTimeout = time.Second })
	dev := e.device(t, "dev-1", "pump")
	cases := []attack{
		{"unknown CA", func(t *testing.T, e *env) {
			e.refused(t, e.signLeaf(t, leafTemplate("dev-x", "pump"), otherCA(t)), nil)
		}, refusal(RefuseUnknownCA)},
		{"expired", func(t *testing.T, e *env) {
			tmpl := leafTemplate("dev-x", "pump")
			tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour)
			e.refused(t, e.signLeaf(t, tmpl, nil), nil)
		}, refusal(RefuseExpired)},
		{"not yet valid", func(t *testing.T, e *env) {
			tmpl := leafTemplate("dev-x", "pump")
			tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(time.Hour), time.Now().Add(2*time.Hour)
			e.refused(t, e.signLeaf(t, tmpl, nil), nil)
		}, refusal(RefuseNotYetValid)},
		{"two weft SANs", func(t *testing.T, e *env) {
			tmpl := leafTemplate("dev-x", "pump")
			u, _ := url.Parse("weft://device/pump/dev-y")
			tmpl.URIs = append(tmpl.URIs, u)
			e.refused(t, e.signLeaf(t, tmpl, nil), nil)
		}, refusal(RefuseMultipleIdentities)},
		{"CA certificate as leaf", func(t *testing.T, e *env) {
			tmpl := leafTemplate("dev-x", "pump")
			tmpl.IsCA = true
			tmpl.KeyUsage |= x509.KeyUsageCertSign
			e.refused(t, e.signLeaf(t, tmpl, nil), nil)
		}, refusal(RefuseCALeaf)},
		{"device CA itself as leaf", func(t *testing.T, e *env) {
			c, err := tls.X509KeyPair(e.auth.DeviceCA.PEM, caKeyPEM(t, e.auth.DeviceCA))
			if err != nil {
				t.Fatal(err)
			}
			e.refused(t, c, nil)
		}, refusal(RefuseCALeaf)},
		{"no client certificate", func(t *testing.T, e *env) {
			e.refused(t, tls.Certificate{}, nil)
		}, refusal(RefuseNoCertificate)},
		{"client id not the device id", func(t *testing.T, e *env) {
			r := e.raw(t, dev.cert, 5)
			if ack := r.connect("dev-2", nil); ack.ReasonCode != 0x85 {
				t.Fatalf("v5 connack %#x, want 0x85", ack.ReasonCode)
			}
			r.closed()
			r = e.raw(t, dev.cert, 4)
			if ack := r.connect("#", nil); ack.ReasonCode != 0x02 {
				t.Fatalf("v3 connack %#x, want 0x02", ack.ReasonCode)
			}
			r.closed()
			r = e.raw(t, dev.cert, 5)
			if ack := r.connect("", nil); ack.ReasonCode != 0x85 {
				t.Fatalf("empty client id: connack %#x, want 0x85", ack.ReasonCode)
			}
		}, refusal(RefuseClientID)},
		{"publish to another device's topic", func(t *testing.T, e *env) {
			c := e.mustPaho(t, dev, nil)
			defer c.close()
			if r := c.publish(t, "devices/dev-2/telemetry", 1, []byte("spoof")); r.ReasonCode != 0x87 {
				t.Fatalf("reason %#x, want 0x87", r.ReasonCode)
			}
			if r := c.publish(t, "devices/dev-1/config", 2, []byte("x")); r.ReasonCode != 0x87 {
				t.Fatalf("reason %#x, want 0x87", r.ReasonCode)
			}
			if n := len(e.messages(t, store.ByDeviceStream, "dev-2")); n != 0 {
				t.Fatalf("%d messages stored for dev-2", n)
			}
		}, aclRefusal(OpLabelPublish, ReasonOtherDevice)},
		{"publish to $SYS", func(t *testing.T, e *env) {
			c := e.mustPaho(t, dev, nil)
			defer c.close()
			if r := c.publish(t, "$SYS/broker/clients", 1, []byte("x")); r.ReasonCode != 0x87 {
				t.Fatalf("reason %#x, want 0x87", r.ReasonCode)
			}
		}, aclRefusal(OpLabelPublish, ReasonSystem)},
		{"wildcard in a publish topic", func(t *testing.T, e *env) {
			r := e.raw(t, dev.cert, 5)
			r.connect("dev-1", nil)
			r.send(publishPacket(5, "devices/dev-1/telemetry/+", 1, 1, []byte("x"), nil))
			if d := r.closed(); d == nil || d.ReasonCode != 0x82 {
				t.Fatalf("disconnect %+v, want 0x82", d)
			}
		}, aclRefusal(OpLabelPublish, ReasonWildcard)},
		{"subscribe to #", subscribeRefused("#"), aclRefusal(OpLabelSubscribe, ReasonWildcard)},
		{"subscribe to devices/+/telemetry", subscribeRefused("devices/+/telemetry"), aclRefusal(OpLabelSubscribe, ReasonNotAllowed)},
		{"subscribe to another device's updates", subscribeRefused("updates/device/dev-2/#"), aclRefusal(OpLabelSubscribe, ReasonOtherDevice)},
		{"subscribe to another class's updates", subscribeRefused("updates/class/valve/#"), aclRefusal(OpLabelSubscribe, ReasonOtherClass)},
		{"subscribe to $share", subscribeRefusedWith("$share/g/updates/all/#", 0x9E), aclRefusal(OpLabelSubscribe, ReasonShared)},
		{"subscribe to $SYS", subscribeRefused("$SYS/#"), aclRefusal(OpLabelSubscribe, ReasonSystem)},
		{"Will on another device's topic", func(t *testing.T, e *env) {
			for _, v := range []byte{4, 5} {
				r := e.raw(t, dev.cert, v)
				ack := r.connect("dev-1", func(p *packets.Packet) {
					p.Connect.WillFlag = true
					p.Connect.WillTopic = "devices/dev-2/events/offline"
					p.Connect.WillPayload = []byte("gone")
				})
				want := byte(0x87)
				if v == 4 {
					want = 0x05
				}
				if ack.ReasonCode != want {
					t.Fatalf("v%d connack %#x, want %#x", v, ack.ReasonCode, want)
				}
				r.closed()
			}
		}, refusal(RefuseWill)},
		{"v5 topic alias to reach another topic", func(t *testing.T, e *env) {
			r := e.raw(t, dev.cert, 5)
			ack := r.connect("dev-1", nil)
			if ack.Properties.TopicAliasMaximum == 0 {
				t.Fatal("topic aliases not offered")
			}
			alias := func(a uint16) func(*packets.Packet) {
				return func(p *packets.Packet) { p.Properties.TopicAlias, p.Properties.TopicAliasFlag = a, true }
			}
			// A legitimate alias works.
			r.send(publishPacket(5, "devices/dev-1/telemetry/aliased", 1, 1, []byte("a"), alias(1)))
			if pk := r.mustRead(packets.Puback); pk.ReasonCode != 0 {
				t.Fatalf("own topic with alias: %#x", pk.ReasonCode)
			}
			r.send(publishPacket(5, "", 1, 2, []byte("b"), alias(1)))
			if pk := r.mustRead(packets.Puback); pk.ReasonCode != 0 {
				t.Fatalf("alias alone: %#x", pk.ReasonCode)
			}
			// An alias set on a refused topic stays refused when used.
			r.send(publishPacket(5, "devices/dev-2/telemetry", 1, 3, []byte("c"), alias(2)))
			if pk := r.mustRead(packets.Puback); pk.ReasonCode != 0x87 {
				t.Fatalf("other topic with alias: %#x", pk.ReasonCode)
			}
			r.send(publishPacket(5, "", 1, 4, []byte("d"), alias(2)))
			if pk := r.mustRead(packets.Puback); pk.ReasonCode != 0x87 {
				t.Fatalf("alias of other topic: %#x", pk.ReasonCode)
			}
			// Rebinding an alias to another device's topic.
			r.send(publishPacket(5, "devices/dev-2/telemetry", 1, 5, []byte("e"), alias(1)))
			if pk := r.mustRead(packets.Puback); pk.ReasonCode != 0x87 {
				t.Fatalf("rebound alias: %#x", pk.ReasonCode)
			}
			r.send(publishPacket(5, "", 1, 6, []byte("f"), alias(1)))
			if pk := r.mustRead(packets.Puback); pk.ReasonCode != 0x87 {
				t.Fatalf("use of rebound alias: %#x", pk.ReasonCode)
			}
			// An alias never set.
			r.send(publishPacket(5, "", 1, 7, []byte("g"), alias(9)))
			if d := r.closed(); d == nil || d.ReasonCode != 0x94 {
				t.Fatalf("unknown alias: disconnect %+v, want 0x94", d)
			}
			for _, m := range e.messages(t, store.ByDeviceStream, "dev-1") {
				if m.Headers[HeaderTopic] != "devices/dev-1/telemetry/aliased" && m.Headers[HeaderDevice] == "dev-1" &&
					m.Headers[HeaderTopic] != "devices/dev-1/telemetry" {
					t.Fatalf("stored on %s", m.Headers[HeaderTopic])
				}
			}
			if n := len(e.messages(t, store.ByDeviceStream, "dev-2")); n != 0 {
				t.Fatalf("%d messages stored for dev-2", n)
			}
		}, aclRefusal(OpLabelPublish, ReasonTopicAlias)},
		{"oversized packet v5", func(t *testing.T, e *env) {
			r := e.raw(t, dev.cert, 5)
			r.connect("dev-1", nil)
			// A PUBLISH announcing 300 KiB; the body never needs to come.
			r.send([]byte{0x30, 0x80, 0xe0, 0x12, 0x00, 0x01, 'a'})
			if d := r.closed(); d == nil || d.ReasonCode != 0x95 {
				t.Fatalf("disconnect %+v, want 0x95", d)
			}
		}, disconnect(DisconnectPacketTooLarge)},
		{"oversized packet v3", func(t *testing.T, e *env) {
			r := e.raw(t, dev.cert, 4)
			r.connect("dev-1", nil)
			r.send([]byte{0x30, 0x81, 0x80, 0x10})
			r.closed()
		}, disconnect(DisconnectPacketTooLarge)},
		{"oversized CONNECT", func(t *testing.T, e *env) {
			r := e.raw(t, dev.cert, 4)
			r.send([]byte{0x10, 0xff, 0xff, 0x7f})
			r.closed()
		}, refusal(RefusePacketTooLarge)},
		{"no CONNECT within the deadline", func(t *testing.T, e *env) {
			r := e.raw(t, dev.cert, 4)
			start := time.Now()
			r.closed()
			if d := time.Since(start); d > 3*time.Second {
				t.Fatalf("closed after %v", d)
			}
		}, refusal(RefuseConnectTimeout)},
		{"no TLS handshake within the deadline", func(t *testing.T, e *env) {
			c, err := net.Dial("tcp", e.addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Read(make([]byte, 1)); err == nil {
				t.Fatal("read succeeded")
			} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("connection not closed")
			}
		}, refusal(RefuseFirstByteTimeout)},
		{"TLS handshake started, never finished", func(t *testing.T, e *env) {
			c, err := net.Dial("tcp", e.addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.Write([]byte{0x16, 0x03, 0x01}) // the start of a ClientHello record
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Read(make([]byte, 1)); err == nil {
				t.Fatal("read succeeded")
			} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("connection not closed")
			}
		}, refusal(RefuseHandshakeTimeout)},
		{"first packet not CONNECT", func(t *testing.T, e *env) {
			r := e.raw(t, dev.cert, 4)
			r.send(publishPacket(4, "devices/dev-1/telemetry", 0, 0, []byte("x"), nil))
			r.closed()
		}, refusal(RefuseBadConnect)},
		{"QoS 2 duplicate packet ids without PUBREL", func(t *testing.T, e *env) {
			for _, v := range []byte{4, 5} {
				id := fmt.Sprintf("dup-%d", v)
				d := e.device(t, id, "pump")
				r := e.raw(t, d.cert, v)
				r.connect(id, nil)
				topic := "devices/" + id + "/telemetry"
				for i := range 5 {
					r.send(publishPacket(v, topic, 2, 7, []byte("once"), func(p *packets.Packet) { p.FixedHeader.Dup = i > 0 }))
					if pk := r.mustRead(packets.Pubrec); pk.PacketID != 7 || pk.ReasonCode != 0 {
						t.Fatalf("v%d send %d: pubrec %d reason %#x", v, i, pk.PacketID, pk.ReasonCode)
					}
				}
				if n := len(e.messages(t, store.ByDeviceStream, id)); n != 1 {
					t.Fatalf("stored %d times", n)
				}
				r.send(pubrelPacket(v, 7))
				r.mustRead(packets.Pubcomp)
				// After PUBREL the id is free again: a new message.
				r.send(publishPacket(v, topic, 2, 7, []byte("twice"), nil))
				r.mustRead(packets.Pubrec)
				r.send(pubrelPacket(v, 7))
				r.mustRead(packets.Pubcomp)
				if n := len(e.messages(t, store.ByDeviceStream, id)); n != 2 {
					t.Fatalf("stored %d messages", n)
				}

				// A persistent session: the message is sent again after a
				// reconnect, before its PUBREL.
				persist := func(p *packets.Packet) {
					p.Connect.Clean = false
					p.Properties.SessionExpiryInterval, p.Properties.SessionExpiryIntervalFlag = 60, true
				}
				r.conn.Close()
				r = e.raw(t, d.cert, v)
				r.connect(id, persist)
				r.send(publishPacket(v, topic, 2, 9, []byte("thrice"), nil))
				r.mustRead(packets.Pubrec)
				r.conn.Close()
				r = e.raw(t, d.cert, v)
				if ack := r.connect(id, persist); !ack.SessionPresent {
					t.Fatalf("v%d: session not present", v)
				}
				if pk := r.mustRead(packets.Pubrec); pk.PacketID != 9 { // resent by the gateway with the session
					t.Fatalf("v%d: resent pubrec %d", v, pk.PacketID)
				}
				r.send(publishPacket(v, topic, 2, 9, []byte("thrice"), func(p *packets.Packet) { p.FixedHeader.Dup = true }))
				if pk := r.mustRead(packets.Pubrec); pk.PacketID != 9 || pk.ReasonCode != 0 {
					t.Fatalf("v%d resend after reconnect: pubrec %d reason %#x", v, pk.PacketID, pk.ReasonCode)
				}
				r.send(pubrelPacket(v, 9))
				r.mustRead(packets.Pubcomp)
				if n := len(e.messages(t, store.ByDeviceStream, id)); n != 3 {
					t.Fatalf("stored %d messages", n)
				}
			}
		}, func(m *Metrics) uint64 { return m.PublishRefusals(RefuseDuplicateQoS2) }},
	}
	for _, mp := range malformed {
		cases = append(cases, attack{"malformed: " + mp.name, func(t *testing.T, e *env) {
			r := e.raw(t, dev.cert, mp.v)
			if ack := r.connect("dev-1", nil); ack.ReasonCode != 0 {
				t.Fatalf("connack %#x", ack.ReasonCode)
			}
			r.send(mp.bytes)
			r.closed()
		}, disconnect(mp.reason)})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := e.srv.Metrics()
			before := tc.moved(m)
			tc.do(t, e)
			waitFor(t, "the refusal counted", func() bool { return tc.moved(m) > before })
			e.goodClient(t)
		})
	}
}

func subscribeRefused(filter string) func(t *testing.T, e *env) {
	return subscribeRefusedWith(filter, 0x87)
}

// subscribeRefusedWith is subscribeRefused with the v5 reason code code.
func subscribeRefusedWith(filter string, code byte) func(t *testing.T, e *env) {
	return func(t *testing.T, e *env) {
		for _, v := range []byte{4, 5} {
			r := e.raw(t, e.device(t, "dev-3", "pump").cert, v)
			r.connect("dev-3", nil)
			r.send(subscribePacket(v, 1, filter, "updates/device/dev-3/#"))
			want := []byte{0x80, 1} // MQTT 3.1.1 has only "failure"
			if v == 5 {
				want = []byte{code, 1}
			}
			if sa := r.mustRead(packets.Suback); !bytes.Equal(sa.ReasonCodes, want) {
				t.Fatalf("v%d suback %x, want %x", v, sa.ReasonCodes, want)
			}
		}
	}
}

func caKeyPEM(t testing.TB, ca *certs.CA) []byte {
	t.Helper()
	b, err := x509.MarshalPKCS8PrivateKey(ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: b})
}

func TestRevocation(t *testing.T) {
	e := newEnv(t, nil)
	m := e.srv.Metrics()

	// A live session is closed within 5 s of the revocation, by the
	// gateway's own CRL reload.
	live := e.device(t, "rev-live", "pump")
	c := e.mustPaho(t, live, nil)
	if _, err := e.auth.RevokeDevice("rev-live"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("live session of a revoked device not closed within 5 s")
	}
	t.Logf("closed %v after the revocation", time.Since(start).Round(time.Millisecond))
	waitFor(t, "revoked disconnect counted", func() bool { return m.Disconnects(DisconnectRevoked) == 1 })

	// A new connection is refused at the handshake, resumed or not.
	d := e.device(t, "rev-new", "pump")
	cache := tls.NewLRUClientSessionCache(4)
	connect := func() (*tls.Conn, error) {
		cfg := e.clientTLS(d.cert)
		cfg.ClientSessionCache = cache
		conn, err := tls.Dial("tcp", e.addr(), cfg)
		if err != nil {
			return nil, err
		}
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		conn.Write(connectPacket(4, "rev-new", nil))
		if _, err := conn.Read(make([]byte, 4)); err != nil { // the CONNACK, and the session ticket with it
			conn.Close()
			return nil, err
		}
		return conn, nil
	}
	conn, err := connect()
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	conn, err = connect()
	if err != nil {
		t.Fatal(err)
	}
	if !conn.ConnectionState().DidResume {
		t.Fatal("second connection did not resume its TLS session")
	}
	conn.Close()
	if _, err := e.auth.RevokeDevice("rev-new"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.rev.Reload(); err != nil {
		t.Fatal(err)
	}
	before := m.Refusals(RefuseRevoked)
	if conn, err := connect(); err == nil {
		conn.Close()
		t.Fatal("revoked device connected with a resumed session")
	}
	waitFor(t, "revoked refusal counted", func() bool { return m.Refusals(RefuseRevoked) > before })
	before = m.Refusals(RefuseRevoked)
	e.refused(t, d.cert, nil)
	waitFor(t, "revoked refusal counted", func() bool { return m.Refusals(RefuseRevoked) > before })
	e.goodClient(t)
}

func TestConnectFlood(t *testing.T) {
	const max, flood = 5, 24
	e := newEnv(t, func(c *Config) { c.MaxConnections = max; c.MaxPending = 64 })
	devs := make([]*devCert, flood)
	for i := range devs {
		devs[i] = e.device(t, "flood-"+string(rune('a'+i)), "pump")
	}
	var (
		mu       sync.Mutex
		accepted []*tls.Conn
		refused  int
		wg       sync.WaitGroup
	)
	for _, d := range devs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := e.dial(d.cert)
			if err != nil {
				t.Error(err)
				return
			}
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			conn.Write(connectPacket(5, d.id, nil))
			pk, err := readPacket(newReader(conn), 5)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				t.Errorf("%s: %v", d.id, err)
				conn.Close()
			case pk.ReasonCode == 0:
				accepted = append(accepted, conn)
			case pk.ReasonCode == 0x97:
				refused++
				conn.Close()
			default:
				t.Errorf("%s: connack %#x", d.id, pk.ReasonCode)
				conn.Close()
			}
		}()
	}
	wg.Wait()
	if len(accepted) != max || refused != flood-max {
		t.Fatalf("accepted %d, refused %d; want %d and %d", len(accepted), refused, max, flood-max)
	}
	m := e.srv.Metrics()
	if got := m.Refusals(RefuseMaxConnections); got != flood-max {
		t.Fatalf("max_connections refusals = %d", got)
	}
	if m.Connections() != max {
		t.Fatalf("connections gauge = %d", m.Connections())
	}
	for _, c := range accepted {
		c.Close()
	}
	waitFor(t, "connections closed", func() bool { return m.Connections() == 0 })
	e.goodClient(t)
}

func TestPendingFlood(t *testing.T) {
	const pending = 4
	e := newEnv(t, func(c *Config) {
		c.MaxPending = pending
		c.ConnectTimeout, c.HandshakeTimeout, c.FirstByteTimeout = 5*time.Second, 5*time.Second, 5*time.Second
	})
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	// One pending connection from each of pending addresses: the table
	// is full, and no address holds more than a newcomer's share. Each
	// sends the first byte of a ClientHello, without which the kernel
	// would not hand the connection over yet (TCP_DEFER_ACCEPT).
	for i := range pending {
		c, err := dialFrom(i+2, e.addr())
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte{0x16})
		conns = append(conns, c)
	}
	m := e.srv.Metrics()
	waitFor(t, "pending connections", func() bool { return e.srv.ln.pending.Load() == pending })
	// Connections beyond MaxPending are closed (reset) at once.
	for i := range 5 {
		c, err := dialFrom(pending+2, e.addr())
		if errors.Is(err, syscall.ECONNRESET) {
			continue // reset before the dial returned
		}
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte{0x16})
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatal("read succeeded")
		} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("extra connection %d not closed", i)
		}
		c.Close()
	}
	waitFor(t, "max_pending refusals", func() bool { return m.Refusals(RefuseMaxPending) == 5 })
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	waitFor(t, "pending slots free", func() bool { return e.srv.ln.pending.Load() == 0 })
	e.goodClient(t)
}
