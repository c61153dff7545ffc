package gateway

import (
	"testing"
	"time"
)

// FuzzConnection feeds raw bytes to a live gateway connection, after the
// TLS handshake and, depending on prefix, a valid MQTT 3.1.1 (4) or 5 (5)
// CONNECT, then checks the gateway still serves a good client. It is
// seeded with the malformed packets of the attack matrix.
func FuzzConnection(f *testing.F) {
	for _, m := range malformed {
		f.Add(m.v, m.bytes)
	}
	f.Add(byte(0), []byte{0x10, 0x00})
	f.Add(byte(0), connectPacket(5, "fuzz-1", nil))
	f.Add(byte(5), subscribePacket(5, 1, "updates/all/#"))
	f.Add(byte(4), publishPacket(4, "devices/fuzz-1/telemetry", 1, 1, []byte("x"), nil))
	f.Add(byte(5), []byte{0x30, 0x80, 0xe0, 0x12, 0x00})
	e := newEnv(f, func(c *Config) { c.ConnectTimeout = time.Second })
	d := e.device(f, "fuzz-1", "pump")
	e.device(f, "good-1", "probe")
	f.Fuzz(func(t *testing.T, prefix byte, data []byte) {
		conn, err := e.dial(d.cert)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(2 * time.Second))
		if v := prefix % 8; v == 4 || v == 5 {
			if _, err := conn.Write(connectPacket(v, d.id, nil)); err != nil {
				t.Fatal(err)
			}
			if _, err := readPacket(newReader(conn), v); err != nil {
				t.Fatalf("no CONNACK: %v", err)
			}
		}
		conn.Write(data)
		// Read whatever comes back for a moment, or until closed.
		conn.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
		buf := make([]byte, 4096)
		for {
			if _, err := conn.Read(buf); err != nil {
				break
			}
		}
		conn.Close()
		e.goodClient(t)
	})
}
