package gateway

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/weft-io/weft/store"
)

// The denial-of-service suite: real sockets on loopback, attackers and
// the well-behaved device on distinct source addresses of 127.0.0.0/8,
// the real gateway. Each test asserts that the gateway keeps serving (a
// device on another address connects and gets its PUBACK) and that what
// the attack makes it hold stays under a bound, asserted as counts
// (connections tracked, each one goroutine; limiters; subscriptions;
// inflight messages; messages stored).

// loopback is the address 127.0.0.n.
func loopback(n int) *net.TCPAddr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(n))}
}

// dialFrom opens a TCP connection from 127.0.0.n.
func dialFrom(n int, addr string) (net.Conn, error) {
	d := &net.Dialer{LocalAddr: loopback(n), Timeout: 5 * time.Second}
	return d.Dial("tcp", addr)
}

// probe is a well-behaved device on 127.0.0.n: it connects with MQTT 5
// and publishes QoS 1, and the test fails unless it gets its PUBACK.
func (e *env) probe(t testing.TB, n int) {
	t.Helper()
	if err := e.probeErr(t, n); err != nil {
		t.Fatal(err)
	}
}

// probeErr is probe returning what went wrong.
func (e *env) probeErr(t testing.TB, n int) error {
	return e.probeAs(t, n, "probe-1")
}

// probeAs is probeErr as device id.
func (e *env) probeAs(t testing.TB, n int, id string) error {
	d := e.device(t, id, "probe")
	raw, err := dialFrom(n, e.addr())
	if err != nil {
		return fmt.Errorf("probe dial: %w", err)
	}
	conn := tls.Client(raw, e.clientTLS(d.cert))
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(conn)
	if _, err := conn.Write(connectPacket(5, d.id, nil)); err != nil {
		return fmt.Errorf("probe connect: %w", err)
	}
	pk, err := readPacket(r, 5)
	if err != nil || pk.FixedHeader.Type != packets.Connack || pk.ReasonCode != 0 {
		return fmt.Errorf("probe not connected: %v %+v %#x", err, pk.FixedHeader, pk.ReasonCode)
	}
	conn.Write(publishPacket(5, "devices/"+id+"/telemetry", 1, 1, []byte("ok"), nil))
	pk, err = readPacket(r, 5)
	if err != nil || pk.FixedHeader.Type != packets.Puback || pk.ReasonCode != 0 {
		return fmt.Errorf("probe publish not acknowledged: %v %+v %#x", err, pk.FixedHeader, pk.ReasonCode)
	}
	conn.Write([]byte{packets.Disconnect << 4, 0})
	return nil
}

// tracked is the number of connections the listener holds (each runs one
// goroutine, two more once past its CONNECT).
func (e *env) tracked() int {
	e.srv.ln.mu.Lock()
	defer e.srv.ln.mu.Unlock()
	return len(e.srv.ln.conns)
}

// holder keeps n TCP connections from 127.0.0.addr open and dials again
// each one the gateway closes, until stop.
type holder struct {
	dials atomic.Int64
	wg    sync.WaitGroup
	stop  chan struct{}
	once  sync.Once
}

func hold(e *env, addrs []int, perAddr int, first []byte) *holder {
	h := &holder{stop: make(chan struct{})}
	for _, a := range addrs {
		for range perAddr {
			h.wg.Add(1)
			go func() {
				defer h.wg.Done()
				buf := make([]byte, 64)
				for {
					select {
					case <-h.stop:
						return
					default:
					}
					c, err := dialFrom(a, e.addr())
					h.dials.Add(1)
					if err != nil {
						select {
						case <-h.stop:
							return
						case <-time.After(10 * time.Millisecond):
						}
						continue
					}
					if first != nil {
						c.Write(first)
					}
					done := make(chan struct{})
					go func() {
						defer close(done)
						for {
							if _, err := c.Read(buf); err != nil {
								return
							}
						}
					}()
					select {
					case <-done:
					case <-h.stop:
					}
					c.Close()
					<-done
				}
			}()
		}
	}
	return h
}

func (h *holder) close() {
	h.once.Do(func() { close(h.stop) })
	h.wg.Wait()
}

// TestDoSPendingOneAddress: one address holds and re-dials 1,100
// sockets that send nothing. It gets MaxPendingPerIP of them at most;
// a device on another address connects and publishes every time.
func TestDoSPendingOneAddress(t *testing.T) {
	e := newEnv(t, nil) // default MaxPending 1024, MaxPendingPerIP 64
	h := hold(e, []int{2}, 1100, nil)
	defer h.close()
	m := e.srv.Metrics()
	waitFor(t, "attack refused", func() bool { return m.Refusals(RefuseMaxPendingPerIP) > 100 })
	for range 5 {
		e.probe(t, 3)
		if n := e.tracked(); n > DefaultMaxPendingPerIP+1 {
			t.Fatalf("%d connections tracked, want at most %d", n, DefaultMaxPendingPerIP+1)
		}
	}
	h.close()
	waitFor(t, "pending slots free", func() bool { return e.srv.ln.pending.Load() == 0 && e.tracked() == 0 })
}

// TestDoSSilentSocketsStayInKernel: sockets that send nothing are not
// handed to the gateway before the first-byte deadline (TCP_DEFER_ACCEPT):
// they take no pending slot and no goroutine, and a device never queues
// behind them.
func TestDoSSilentSocketsStayInKernel(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.FirstByteTimeout, c.HandshakeTimeout = time.Minute, time.Minute })
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range 500 {
		c, err := dialFrom(2, e.addr())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	for range 3 {
		e.probe(t, 3)
	}
	if n := e.srv.ln.pending.Load(); n != 0 {
		t.Fatalf("%d silent sockets hold pending slots, want 0", n)
	}
	if n := e.srv.Metrics().Refusals(RefuseMaxPendingPerIP); n != 0 {
		t.Fatalf("%d silent sockets were accepted and refused, want none accepted", n)
	}
}

// TestDoSPendingManyAddresses: addresses that together fill MaxPending
// cannot keep a newcomer out: it takes the slot of the oldest pending
// connection of the address holding the most.
func TestDoSPendingManyAddresses(t *testing.T) {
	const max, per = 64, 8
	e := newEnv(t, func(c *Config) { c.MaxPending, c.MaxPendingPerIP = max, per })
	var addrs []int
	for i := range 12 { // 96 sockets wanted, 64 slots
		addrs = append(addrs, 10+i)
	}
	h := hold(e, addrs, per, nil)
	defer h.close()
	waitFor(t, "pending table full", func() bool { return e.srv.ln.pending.Load() == max })
	m := e.srv.Metrics()
	for range 5 {
		e.probe(t, 3)
		if n := e.tracked(); n > max+1 {
			t.Fatalf("%d connections tracked, want at most %d", n, max+1)
		}
	}
	if m.Refusals(RefuseMaxPending) == 0 {
		t.Fatal("no pending connection closed to make room")
	}
	h.close()
	waitFor(t, "pending slots free", func() bool { return e.srv.ln.pending.Load() == 0 })
}

// TestDoSSlowHandshake: connections that send the first bytes of a
// ClientHello and then nothing are closed at HandshakeTimeout, and those
// that send nothing at FirstByteTimeout, each counted.
func TestDoSSlowHandshake(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		// Short enough to see many of each, long enough for the probe's
		// own handshake on a loaded machine.
		c.FirstByteTimeout, c.HandshakeTimeout, c.ConnectTimeout = time.Second, 3*time.Second, 5*time.Second
	})
	slow := hold(e, []int{2}, 100, []byte{0x16, 0x03, 0x01})
	defer slow.close()
	silent := hold(e, []int{4}, 100, nil)
	defer silent.close()
	m := e.srv.Metrics()
	waitFor(t, "handshake timeouts", func() bool {
		return m.Refusals(RefuseHandshakeTimeout) >= 64 && m.Refusals(RefuseFirstByteTimeout) >= 64
	})
	for range 3 {
		e.probe(t, 3)
		if n := e.tracked(); n > 2*DefaultMaxPendingPerIP+1 {
			t.Fatalf("%d connections tracked", n)
		}
	}
}

// TestDoSConnectRate: a device reconnecting in a loop is refused with
// CONNACK 0x9F beyond its connect burst, keeps one limiter, and does not
// keep another device out.
func TestDoSConnectRate(t *testing.T) {
	clock := newTestClock(time.Now())
	e := newEnv(t, func(c *Config) { c.ConnectRate, c.ConnectBurst, c.Now = 1, 3, clock.now })
	d := e.device(t, "loop-1", "pump")
	codes := map[byte]int{}
	for _, v := range []byte{5, 5, 5, 5, 4, 5} {
		r := e.raw(t, d.cert, v)
		pk := r.connect(d.id, nil)
		codes[pk.ReasonCode]++
		r.conn.Close()
	}
	if codes[0] != 3 || codes[0x9F] != 2 || codes[0x03] != 1 {
		t.Fatalf("connack codes %v; want 3 accepted, 2 x 0x9F (v5), 1 x 0x03 (v3)", codes)
	}
	m := e.srv.Metrics()
	waitFor(t, "connect_rate refusals", func() bool { return m.Refusals(RefuseConnectRate) == 3 })
	clock.set(clock.now().Add(time.Second)) // one connect earned
	if pk := e.raw(t, d.cert, 5).connect(d.id, nil); pk.ReasonCode != 0 {
		t.Fatalf("connack %#x after a second", pk.ReasonCode)
	}
	e.probe(t, 3)
	waitFor(t, "limiters", func() bool { return e.srv.limits.len() <= 2 })
}

// TestDoSBucketsKeptAcrossReconnects: a device that reconnects after
// every refusal, or holds two connections (a takeover), stores no more
// than its burst plus its rate over the time that passed.
func TestDoSBucketsKeptAcrossReconnects(t *testing.T) {
	const rate, burst = 5, 10
	clock := newTestClock(time.Now())
	e := newEnv(t, func(c *Config) { c.MessageRate, c.MessageBurst, c.Now = rate, burst, clock.now })
	d := e.device(t, "greedy-1", "pump")
	publishUntilRefused := func(c *pahoClient) int {
		n := 0
		for {
			r := c.publish(t, "devices/greedy-1/telemetry", 1, []byte("x"))
			if r.ReasonCode != 0 {
				if r.ReasonCode != 0x96 {
					t.Fatalf("reason %#x", r.ReasonCode)
				}
				return n
			}
			n++
			if n > 10*burst {
				t.Fatal("never refused")
			}
		}
	}
	stored := 0
	for range 5 { // reconnect after every refusal: nothing refilled
		c := e.mustPaho(t, d, nil)
		stored += publishUntilRefused(c)
		c.close()
	}
	if stored != burst {
		t.Fatalf("stored %d over five connections at one instant, want the burst %d", stored, burst)
	}
	// Two connections at once (the second takes the first over) share it.
	clock.set(clock.now().Add(time.Second))
	a := e.mustPaho(t, d, nil)
	b := e.mustPaho(t, d, nil)
	stored += publishUntilRefused(b)
	a.close()
	b.close()
	if stored != burst+rate {
		t.Fatalf("stored %d after one second, want burst+rate %d", stored, burst+rate)
	}
	got := len(e.messages(t, store.ByDeviceStream, "greedy-1"))
	if got != burst+rate {
		t.Fatalf("%d messages in the store, want %d", got, burst+rate)
	}
	if n := e.srv.Metrics().PublishRefusals(RefuseMessageRate); n != 6 {
		t.Fatalf("message_rate refusals = %d, want 6", n)
	}
	e.probe(t, 3)
	// Once unused and full again, the limiter is forgotten.
	clock.set(clock.now().Add(time.Hour))
	waitFor(t, "sessions ended", func() bool { return e.srv.Metrics().Connections() == 0 })
	if n := e.srv.limits.evict(clock.now()); n < 1 || e.srv.limits.len() != 0 {
		t.Fatalf("evicted %d, %d left", n, e.srv.limits.len())
	}
}

// TestDoSByteBudgetWholePublish: the byte budget charges the topic and
// properties, not only the payload: empty messages with large user
// properties run out of it.
func TestDoSByteBudgetWholePublish(t *testing.T) {
	clock := newTestClock(time.Now())
	e := newEnv(t, func(c *Config) {
		c.MaxPacketSize, c.ByteRate, c.ByteBurst, c.Now = 4096, 1000, 4096, clock.now
	})
	d := e.device(t, "props-1", "pump")
	c := e.mustPaho(t, d, nil)
	big := strings.Repeat("p", 900)
	accepted := 0
	for i := range 20 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		r, err := c.Publish(ctx, &paho.Publish{Topic: "devices/props-1/telemetry", QoS: 1,
			Properties: &paho.PublishProperties{User: paho.UserProperties{{Key: "k", Value: big}}}})
		cancel()
		if r == nil {
			t.Fatalf("publish %d: %v", i, err)
		}
		if r.ReasonCode == 0x96 {
			break
		}
		accepted++
	}
	if accepted == 0 || accepted > 4 {
		t.Fatalf("%d publishes of 900-byte properties within a 4096-byte burst", accepted)
	}
	if e.srv.Metrics().PublishRefusals(RefuseByteRate) != 1 {
		t.Fatal("byte_rate refusal not counted")
	}
	e.probe(t, 3)
}

// TestDoSTopicLength: a topic longer than MaxTopicLength is refused
// (PUBACK 0x90, or the connection closed for MQTT 3.1.1; a Will at
// CONNACK 0x90) and never stored or kept as an alias.
func TestDoSTopicLength(t *testing.T) {
	e := newEnv(t, nil)
	d := e.device(t, "long-1", "pump")
	pfx := "devices/long-1/telemetry/"
	ok := pfx + strings.Repeat("a", DefaultMaxTopicLength-len(pfx))
	long := ok + "a"
	r := e.raw(t, d.cert, 5)
	r.connect(d.id, nil)
	r.send(publishPacket(5, ok, 1, 1, []byte("x"), nil))
	if pk := r.mustRead(packets.Puback); pk.ReasonCode != 0 {
		t.Fatalf("256-byte topic: %#x", pk.ReasonCode)
	}
	r.send(publishPacket(5, long, 1, 2, []byte("x"), func(pk *packets.Packet) {
		pk.Properties.TopicAlias, pk.Properties.TopicAliasFlag = 1, true
	}))
	if pk := r.mustRead(packets.Puback); pk.ReasonCode != 0x90 {
		t.Fatalf("257-byte topic: %#x, want 0x90", pk.ReasonCode)
	}
	// The alias was not kept: using it is an unknown alias.
	r.send(publishPacket(5, "", 1, 3, []byte("x"), func(pk *packets.Packet) {
		pk.Properties.TopicAlias, pk.Properties.TopicAliasFlag = 1, true
	}))
	if pk := r.closed(); pk == nil || pk.ReasonCode != 0x94 {
		t.Fatalf("alias of a refused topic: %+v", pk)
	}
	v3 := e.raw(t, d.cert, 4)
	v3.connect(d.id, nil)
	v3.send(publishPacket(4, long, 1, 1, []byte("x"), nil))
	v3.closed()
	w := e.raw(t, d.cert, 5)
	if pk := w.connect(d.id, func(pk *packets.Packet) {
		pk.Connect.WillFlag, pk.Connect.WillTopic, pk.Connect.WillPayload = true, long, []byte("bye")
	}); pk.ReasonCode != 0x90 {
		t.Fatalf("long Will topic: connack %#x", pk.ReasonCode)
	}
	m := e.srv.Metrics()
	waitFor(t, "refusals counted", func() bool {
		return m.ACLRefusalsOp(OpLabelPublish, ReasonTopicLength) == 2 && m.ACLRefusalsOp(OpLabelWill, ReasonTopicLength) == 1 &&
			m.Disconnects(DisconnectTopicLength) == 1 && m.Refusals(RefuseTopicLength) == 1
	})
	if n := len(e.messages(t, store.ByDeviceStream, "long-1")); n != 1 {
		t.Fatalf("%d messages stored, want 1", n)
	}
	e.probe(t, 3)
}

// TestDoSSubscriptions: a session holds at most MaxSubscriptions; the
// filters beyond get SUBACK 0x97 (0x80 for MQTT 3.1.1), over-long ones
// 0x8F (shared ones get 0x9E: TestAttackMatrix).
func TestDoSSubscriptions(t *testing.T) {
	const max = 10
	e := newEnv(t, func(c *Config) { c.MaxSubscriptions = max })
	d := e.device(t, "subs-1", "pump")
	c := e.mustPaho(t, d, nil)
	var filters []string
	for i := range max + 3 {
		filters = append(filters, fmt.Sprintf("updates/device/subs-1/f%d", i))
	}
	sa := c.subscribe(t, 1, filters[:max-1]...)
	for i, code := range sa.Reasons {
		if code != 1 {
			t.Fatalf("filter %d: %#x", i, code)
		}
	}
	// One held again, one new (the last slot), three beyond, one too long, one shared.
	long := "updates/device/subs-1/" + strings.Repeat("x", DefaultMaxFilterLength)
	sa = c.subscribe(t, 1, filters[0], filters[max-1], filters[max], filters[max+1], long, filters[max+2])
	want := []byte{1, 1, 0x97, 0x97, 0x8F, 0x97}
	if fmt.Sprint(sa.Reasons) != fmt.Sprint(want) {
		t.Fatalf("suback %x, want %x", sa.Reasons, want)
	}
	cl, ok := e.srv.mqtt.Clients.Get("subs-1")
	if !ok || cl.State.Subscriptions.Len() != max {
		t.Fatalf("session holds %d subscriptions, want %d", cl.State.Subscriptions.Len(), max)
	}
	c.close()
	r := e.raw(t, d.cert, 4)
	r.connect(d.id, nil)
	sub := subscribePacket(4, 1, filters...)
	r.send(sub)
	pk := r.mustRead(packets.Suback)
	if got := pk.ReasonCodes[max]; got != 0x80 {
		t.Fatalf("v3 suback beyond the cap: %#x", got)
	}
	m := e.srv.Metrics()
	if m.ACLRefusalsOp(OpLabelSubscribe, ReasonMaxSubs) != 3+3 || m.ACLRefusalsOp(OpLabelSubscribe, ReasonTopicLength) != 1 {
		t.Fatal("refusals not counted")
	}
	e.probe(t, 3)
}

// TestDoSDownlinkInflightCap: updates to a device that never takes them
// stop at MaxInflight held for it; the rest are dropped and counted.
func TestDoSDownlinkInflightCap(t *testing.T) {
	e := newEnv(t, nil)
	d := e.device(t, "away-1", "pump")
	expiry := uint32(3600)
	c := e.mustPaho(t, d, &paho.Connect{CleanStart: false, Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}})
	c.subscribe(t, 1, "updates/device/away-1/#")
	c.close()
	const extra = 20
	msgs := make([]store.Message, MaxInflight+extra)
	for i := range msgs {
		msgs[i] = store.Message{Value: []byte("u"), Headers: map[string]string{"subtopic": "config", "retain": "false"}}
	}
	if _, err := e.st.Stream(store.UpdatesStream).Append(context.Background(), "device/away-1", msgs...); err != nil {
		t.Fatal(err)
	}
	m := e.srv.Metrics()
	waitFor(t, "drops counted", func() bool { return m.DownlinkDropped(DropInflightCap) == extra })
	cl, ok := e.srv.mqtt.Clients.Get("away-1")
	if !ok || cl.State.Inflight.Len() != MaxInflight {
		t.Fatalf("session holds %d messages, want %d", cl.State.Inflight.Len(), MaxInflight)
	}
	e.probe(t, 3)
}

// fakeListener returns errs from Accept, then net.ErrClosed.
type fakeListener struct {
	net.Listener
	mu   sync.Mutex
	errs []error
}

func (f *fakeListener) Accept() (net.Conn, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.errs) == 0 {
		return nil, net.ErrClosed
	}
	err := f.errs[0]
	f.errs = f.errs[1:]
	return nil, err
}

// TestAcceptBackoff: out of file descriptors, the accept loop waits and
// tries again instead of spinning or giving up.
func TestAcceptBackoff(t *testing.T) {
	var d time.Duration
	var got []time.Duration
	for range 10 {
		d = acceptBackoff(d)
		got = append(got, d)
	}
	want := "[5ms 10ms 20ms 40ms 80ms 160ms 320ms 640ms 1s 1s]"
	if fmt.Sprint(got) != want {
		t.Fatalf("delays %v, want %v", got, want)
	}
	e := newEnv(t, nil)
	errs := []error{
		&net.OpError{Op: "accept", Err: syscall.EMFILE},
		&net.OpError{Op: "accept", Err: syscall.ENFILE},
		&net.OpError{Op: "accept", Err: syscall.EMFILE},
	}
	l := newListener(e.srv)
	l.ln = &fakeListener{errs: errs}
	l.serving.Add(1)
	l.Serve(nil) // returns at net.ErrClosed
	if n := e.srv.Metrics().AcceptBackoffs(); n != 3 {
		t.Fatalf("%d backoffs, want 3", n)
	}
	if temporary(errors.New("boom")) {
		t.Fatal("a permanent error is temporary")
	}
	e.probe(t, 3)
}
