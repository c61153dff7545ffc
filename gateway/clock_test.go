package gateway

import (
	"crypto/x509"
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
