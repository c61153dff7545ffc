package gateway

import (
	"crypto/x509"
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"
)

// testClock is a clock a test sets.
type testClock struct{ ns atomic.Int64 }

func (c *testClock) set(t time.Time) { c.ns.Store(t.UnixNano()) }
func (c *testClock) now() time.Time  { return time.Unix(0, c.ns.Load()) }
func newTestClock(t time.Time) *testClock {
	c := &testClock{}
	c.set(t)
	return c
}

// TestClockCertificateValidity checks that device certificates are valid
// or not by Config.Now, at the handshake and for live sessions.
func TestClockCertificateValidity(t *testing.T) {
	clock := newTestClock(time.Now())
	e := newEnv(t, func(c *Config) { c.Now = clock.now })
	d := e.device(t, "clock-1", "pump")
	leaf, err := x509.ParseCertificate(d.cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	m := e.srv.Metrics()

	clock.set(leaf.NotBefore.Add(-time.Minute))
	before := m.Refusals(RefuseNotYetValid)
	e.refused(t, d.cert, nil)
	waitFor(t, "not_yet_valid counted", func() bool { return m.Refusals(RefuseNotYetValid) > before })

	clock.set(leaf.NotAfter.Add(time.Minute))
	before = m.Refusals(RefuseExpired)
	e.refused(t, d.cert, nil)
	waitFor(t, "expired counted", func() bool { return m.Refusals(RefuseExpired) > before })

	// Valid by the clock: it connects; once the clock passes the end of
	// its validity, the sweep closes its session.
	clock.set(leaf.NotAfter.Add(-time.Minute))
	c := e.mustPaho(t, d, nil)
	if r := c.publish(t, "devices/clock-1/telemetry", 1, []byte("x")); r.ReasonCode != 0 {
		t.Fatalf("publish: reason %#x", r.ReasonCode)
	}
	before = m.Disconnects(DisconnectRevoked)
	e.srv.sweep()
	if m.Disconnects(DisconnectRevoked) != before {
		t.Fatal("a valid certificate's session closed")
	}
	clock.set(leaf.NotAfter.Add(time.Second))
	e.srv.sweep()
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("session of an expired certificate not closed")
	}
	waitFor(t, "disconnect counted", func() bool { return m.Disconnects(DisconnectRevoked) > before })
}

// TestLastSeenMovesWithMessages: a device's telemetry moves last_seen in
// its shadow, at most once every lastSeenEvery, in the commit of the
// message that is due.
func TestLastSeenMovesWithMessages(t *testing.T) {
	t0 := time.Now().UTC().Truncate(time.Second)
	clock := newTestClock(t0)
	e := newEnv(t, func(c *Config) { c.Now = clock.now })
	d := e.device(t, "seen-1", "pump")
	c, err := e.paho(t, d, nil)
	if err != nil {
		t.Fatal(err)
	}
	lastSeen := func() time.Time {
		var doc struct {
			LastSeen time.Time `json:"last_seen"`
		}
		if err := json.Unmarshal(e.shadow(t, d.id), &doc); err != nil {
			t.Fatal(err)
		}
		return doc.LastSeen
	}
	if got := lastSeen(); !got.Equal(t0) {
		t.Fatalf("last_seen after connecting %v, want %v", got, t0)
	}
	// The certificate's end, for the edge's cert_expiring alarm.
	leaf, err := x509.ParseCertificate(d.cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		CertExpires time.Time `json:"cert_expires"`
	}
	if err := json.Unmarshal(e.shadow(t, d.id), &doc); err != nil || !doc.CertExpires.Equal(leaf.NotAfter) {
		t.Fatalf("cert_expires %v (%v), want %v", doc.CertExpires, err, leaf.NotAfter)
	}
	clock.set(t0.Add(10 * time.Second))
	c.publish(t, "devices/seen-1/telemetry", 1, []byte(`{"t":1}`))
	if got := lastSeen(); !got.Equal(t0) {
		t.Fatalf("last_seen moved after 10 s: %v, want %v", got, t0)
	}
	for _, step := range []time.Duration{31 * time.Second, 45 * time.Second, 62 * time.Second} {
		clock.set(t0.Add(step))
		c.publish(t, "devices/seen-1/telemetry", 1, []byte(`{"t":2}`))
	}
	// At 31 s it moved; 45 s is within 30 s of that; 62 s is not.
	if got, want := lastSeen(), t0.Add(62*time.Second); !got.Equal(want) {
		t.Fatalf("last_seen %v, want %v", got, want)
	}
	clock.set(t0.Add(80 * time.Second))
	c.publish(t, "devices/seen-1/telemetry", 1, []byte(`{"t":3}`))
	if got, want := lastSeen(), t0.Add(62*time.Second); !got.Equal(want) {
		t.Fatalf("last_seen %v 18 s after it moved, want %v", got, want)
	}
}
