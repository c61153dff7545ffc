package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	pahopackets "github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/internal/testenv/wait"
	"github.com/weft-io/weft/store"
)

const testEdge = "edge-1"

// env is a certificate directory, a store and a gateway on 127.0.0.1:0.
type env struct {
	t     testing.TB
	dir   string
	auth  *certs.Authority
	pool  *x509.CertPool
	rev   *certs.Revocations
	pair  *certs.KeyPair
	st    *store.Store
	cfg   Config
	srv   *Server
	devMu sync.Mutex
	devs  map[string]*devCert
	// remote, if set, is the address of a gateway in another process
	// (BenchmarkDoS), used in place of srv's.
	remote string
}

// devCert is an issued device certificate, on disk and loaded.
type devCert struct {
	id, class         string
	certFile, keyFile string
	cert              tls.Certificate
}

// newEnv sets everything up and starts a gateway; mod may change its
// config (a short ConnectTimeout, small limits).
func newEnv(t testing.TB, mod func(*Config)) *env {
	t.Helper()
	return newEnvStore(t, nil, mod)
}

// newEnvStore is newEnv with a store opened with the config stMod
// changes (partitions of its streams).
func newEnvStore(t testing.TB, stMod func(*store.Config), mod func(*Config)) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), devs: map[string]*devCert{}}
	if err := certs.Init(e.dir, false); err != nil {
		t.Fatal(err)
	}
	auth, err := certs.Load(e.dir)
	if err != nil {
		t.Fatal(err)
	}
	e.auth = auth
	gw, err := auth.IssueGateway("gw-1", []string{"127.0.0.1", "localhost"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := auth.Save(gw)
	if err != nil {
		t.Fatal(err)
	}
	if e.pair, err = certs.LoadKeyPair(certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	if e.pool, err = certs.Pool(auth.DeviceCA.PEM); err != nil {
		t.Fatal(err)
	}
	if e.rev, err = auth.Revocations(nil); err != nil {
		t.Fatal(err)
	}
	stCfg := store.Config{Dir: t.TempDir(), Name: testEdge, MinFreeBytes: -1, RetentionInterval: -1}
	if stMod != nil {
		stMod(&stCfg)
	}
	e.st, err = store.Open(stCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.st.Close() })
	e.cfg = Config{
		Store:          e.st,
		Name:           testEdge,
		Addr:           "127.0.0.1:0",
		Certificate:    e.pair,
		DeviceCAs:      e.pool,
		Revocations:    e.rev,
		ConnectTimeout: 2 * time.Second,
		// Tests connect the same devices many times in a row; the connect
		// rate has tests of its own.
		ConnectRate: -1,
	}
	if mod != nil {
		mod(&e.cfg)
	}
	e.start()
	return e
}

// start starts a new gateway on the env's store (after stop, a restart).
func (e *env) start() {
	e.t.Helper()
	srv, err := New(e.cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	e.srv = srv
	e.t.Cleanup(func() { e.stopServer(srv) })
}

func (e *env) stopServer(srv *Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		e.t.Errorf("shutdown: %v", err)
	}
}

// stop shuts the gateway down.
func (e *env) stop() {
	e.t.Helper()
	e.stopServer(e.srv)
}

func (e *env) addr() string {
	if e.remote != "" {
		return e.remote
	}
	return e.srv.Addr().String()
}

// device issues (once) a certificate for device id of class.
func (e *env) device(t testing.TB, id, class string) *devCert {
	t.Helper()
	e.devMu.Lock()
	defer e.devMu.Unlock()
	if d := e.devs[id]; d != nil {
		return d
	}
	iss, err := e.auth.IssueDevice(id, class, 0)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := e.auth.Save(iss)
	if err != nil {
		t.Fatal(err)
	}
	c, err := tls.X509KeyPair(iss.CertPEM, iss.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	d := &devCert{id: id, class: class, certFile: certFile, keyFile: keyFile, cert: c}
	e.devs[id] = d
	return d
}

// clientTLS is the TLS configuration of a device presenting cert.
func (e *env) clientTLS(cert tls.Certificate) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      e.pool,
		ServerName:   "127.0.0.1",
		MinVersion:   tls.VersionTLS12,
	}
}

// dial opens a TLS connection presenting cert. With TLS 1.3 a refused
// client certificate shows on the first read, not here.
func (e *env) dial(cert tls.Certificate) (*tls.Conn, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	return tls.DialWithDialer(d, "tcp", e.addr(), e.clientTLS(cert))
}

// pahoClient is a connected paho MQTT 5 client with the messages it
// receives.
type pahoClient struct {
	*paho.Client
	connack *paho.Connack
	msgs    chan *paho.Publish
	stop    chan struct{} // closed by close: the handler stops waiting for a reader
	once    sync.Once
}

// paho connects device d with MQTT 5; cp may be nil (clean start).
func (e *env) paho(t testing.TB, d *devCert, cp *paho.Connect) (*pahoClient, error) {
	conn, err := e.dial(d.cert)
	if err != nil {
		return nil, err
	}
	msgs := make(chan *paho.Publish, 100)
	stop := make(chan struct{})
	c := paho.NewClient(paho.ClientConfig{
		Conn: pahopackets.NewThreadSafeConn(conn),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){
			func(pr paho.PublishReceived) (bool, error) {
				// A test that stops reading must not keep paho's
				// workers, and so Disconnect, from finishing.
				select {
				case msgs <- pr.Packet:
				case <-stop:
				}
				return true, nil
			},
		},
	})
	if cp == nil {
		cp = &paho.Connect{CleanStart: true}
	}
	if cp.ClientID == "" {
		cp.ClientID = d.id
	}
	if cp.KeepAlive == 0 {
		cp.KeepAlive = 30
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, cp)
	if err != nil {
		conn.Close()
		return &pahoClient{connack: ca}, err
	}
	pc := &pahoClient{Client: c, connack: ca, msgs: msgs, stop: stop}
	t.Cleanup(func() { pc.close() })
	return pc, nil
}

func (e *env) mustPaho(t testing.TB, d *devCert, cp *paho.Connect) *pahoClient {
	t.Helper()
	c, err := e.paho(t, d, cp)
	if err != nil {
		t.Fatalf("connect %s: %v", d.id, err)
	}
	return c
}

func (c *pahoClient) close() {
	if c.Client == nil {
		return
	}
	c.once.Do(func() { close(c.stop) })
	done := make(chan struct{})
	go func() {
		c.Disconnect(&paho.Disconnect{})
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
}

func (c *pahoClient) publish(t testing.TB, topic string, qos byte, payload []byte) *paho.PublishResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: qos, Payload: payload})
	if err != nil && (r == nil || r.ReasonCode < 0x80) {
		t.Fatalf("publish %s: %v", topic, err)
	}
	return r
}

func (c *pahoClient) subscribe(t testing.TB, qos byte, filters ...string) *paho.Suback {
	t.Helper()
	s := &paho.Subscribe{}
	for _, f := range filters {
		s.Subscriptions = append(s.Subscriptions, paho.SubscribeOptions{Topic: f, QoS: qos})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sa, err := c.Subscribe(ctx, s)
	if sa == nil {
		t.Fatalf("subscribe %v: %v", filters, err)
	}
	return sa
}

// next returns the next message received, failing after 10 s.
func (c *pahoClient) next(t testing.TB) *paho.Publish {
	t.Helper()
	select {
	case m := <-c.msgs:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no message received")
		return nil
	}
}

// waitFor polls cond with a deadline (wait.For).
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	wait.For(t, 10*time.Second, what, cond)
}

// messages reads a whole topic of a stream.
func (e *env) messages(t testing.TB, path, topic string) []store.Message {
	t.Helper()
	msgs, err := e.st.Stream(path).Read(context.Background(), topic, 0, 0, store.ReadOptions{Limit: 10000})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		t.Fatal(err)
	}
	return msgs
}

// shadow returns a device's shadow document, nil if none.
func (e *env) shadow(t testing.TB, id string) []byte {
	t.Helper()
	d, err := e.st.Table(store.ShadowsTable).Get(context.Background(), id)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return d.Value
}

// down appends a message to /updates/down.
func (e *env) down(t testing.TB, topic, subtopic string, payload string, headers map[string]string) {
	t.Helper()
	h := map[string]string{}
	for k, v := range headers {
		h[k] = v
	}
	if subtopic != "" {
		h[HeaderSubtopic] = subtopic
	}
	if _, err := e.st.Stream(store.UpdatesStream).Append(context.Background(), topic, store.Message{Value: []byte(payload), Headers: h}); err != nil {
		t.Fatal(err)
	}
}

// goodClient checks the gateway still serves: a device connects,
// publishes QoS 1 and gets its PUBACK.
func (e *env) goodClient(t testing.TB) {
	t.Helper()
	d := e.device(t, "good-1", "probe")
	c, err := e.paho(t, d, nil)
	if err != nil {
		t.Fatalf("good client refused: %v", err)
	}
	defer c.close()
	if r := c.publish(t, "devices/good-1/telemetry", 1, []byte("ok")); r.ReasonCode != 0 {
		t.Fatalf("good client publish: reason %#x", r.ReasonCode)
	}
}

// Raw MQTT, for MQTT 3.1.1 and malformed packets.

// raw is a TLS connection speaking hand-encoded MQTT.
type raw struct {
	t    testing.TB
	conn *tls.Conn
	r    *bufio.Reader
	v    byte
}

func (e *env) raw(t testing.TB, cert tls.Certificate, v byte) *raw {
	t.Helper()
	conn, err := e.dial(cert)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return &raw{t: t, conn: conn, r: bufio.NewReader(conn), v: v}
}

// connect sends a CONNECT and returns the CONNACK.
func (r *raw) connect(id string, mod func(*packets.Packet)) packets.Packet {
	r.t.Helper()
	r.send(connectPacket(r.v, id, mod))
	pk, err := r.read()
	if err != nil {
		r.t.Fatalf("no CONNACK: %v", err)
	}
	if pk.FixedHeader.Type != packets.Connack {
		r.t.Fatalf("got packet type %d, want CONNACK", pk.FixedHeader.Type)
	}
	return pk
}

func (r *raw) send(b []byte) {
	r.t.Helper()
	r.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.conn.Write(b); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

// read reads the next packet, waiting up to 5 s.
func (r *raw) read() (packets.Packet, error) {
	r.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	return readPacket(r.r, r.v)
}

// mustRead reads a packet of type typ.
func (r *raw) mustRead(typ byte) packets.Packet {
	r.t.Helper()
	pk, err := r.read()
	if err != nil {
		r.t.Fatalf("reading packet type %d: %v", typ, err)
	}
	if pk.FixedHeader.Type != typ {
		r.t.Fatalf("got packet type %d (reason %#x), want %d", pk.FixedHeader.Type, pk.ReasonCode, typ)
	}
	return pk
}

// closed waits for the server to close the connection, returning the
// DISCONNECT it may have sent first.
func (r *raw) closed() *packets.Packet {
	r.t.Helper()
	var last *packets.Packet
	for {
		pk, err := r.read()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				r.t.Fatal("connection not closed")
			}
			return last
		}
		if pk.FixedHeader.Type == packets.Disconnect {
			p := pk
			last = &p
		}
	}
}

func connectPacket(v byte, id string, mod func(*packets.Packet)) []byte {
	pk := packets.Packet{
		FixedHeader:     packets.FixedHeader{Type: packets.Connect},
		ProtocolVersion: v,
		Connect: packets.ConnectParams{
			ProtocolName:     []byte("MQTT"),
			ClientIdentifier: id,
			Clean:            true,
			Keepalive:        30,
		},
	}
	if mod != nil {
		mod(&pk)
	}
	var b bytes.Buffer
	pk.ConnectEncode(&b)
	return b.Bytes()
}

func publishPacket(v byte, topic string, qos byte, id uint16, payload []byte, mod func(*packets.Packet)) []byte {
	pk := packets.Packet{
		FixedHeader:     packets.FixedHeader{Type: packets.Publish, Qos: qos},
		ProtocolVersion: v,
		TopicName:       topic,
		PacketID:        id,
		Payload:         payload,
	}
	if mod != nil {
		mod(&pk)
	}
	var b bytes.Buffer
	if err := pk.PublishEncode(&b); err != nil {
		panic(err)
	}
	return b.Bytes()
}

func subscribePacket(v byte, id uint16, filters ...string) []byte {
	pk := packets.Packet{
		FixedHeader:     packets.FixedHeader{Type: packets.Subscribe, Qos: 1},
		ProtocolVersion: v,
		PacketID:        id,
	}
	for _, f := range filters {
		pk.Filters = append(pk.Filters, packets.Subscription{Filter: f, Qos: 1})
	}
	var b bytes.Buffer
	pk.SubscribeEncode(&b)
	return b.Bytes()
}

func pubackPacket(v byte, id uint16) []byte {
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, ProtocolVersion: v, PacketID: id}
	var b bytes.Buffer
	pk.PubackEncode(&b)
	return b.Bytes()
}

func pubrelPacket(v byte, id uint16) []byte {
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrel, Qos: 1}, ProtocolVersion: v, PacketID: id}
	var b bytes.Buffer
	pk.PubrelEncode(&b)
	return b.Bytes()
}

// readPacket reads and decodes one packet sent by the gateway.
func readPacket(r *bufio.Reader, v byte) (packets.Packet, error) {
	var pk packets.Packet
	b, err := r.ReadByte()
	if err != nil {
		return pk, err
	}
	if err := pk.FixedHeader.Decode(b); err != nil {
		return pk, err
	}
	n, _, err := packets.DecodeLength(r)
	if err != nil {
		return pk, err
	}
	pk.FixedHeader.Remaining = n
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return pk, err
	}
	pk.ProtocolVersion = v
	switch pk.FixedHeader.Type {
	case packets.Connack:
		err = pk.ConnackDecode(body)
	case packets.Publish:
		err = pk.PublishDecode(body)
	case packets.Puback:
		err = pk.PubackDecode(body)
	case packets.Pubrec:
		err = pk.PubrecDecode(body)
	case packets.Pubrel:
		err = pk.PubrelDecode(body)
	case packets.Pubcomp:
		err = pk.PubcompDecode(body)
	case packets.Suback:
		err = pk.SubackDecode(body)
	case packets.Unsuback:
		err = pk.UnsubackDecode(body)
	case packets.Disconnect:
		// mochi's decoder skips a lone reason code (remaining length 1).
		if v == 5 && n >= 1 {
			pk.ReasonCode = body[0]
		}
	case packets.Pingresp:
	default:
		err = fmt.Errorf("unexpected packet type %d", pk.FixedHeader.Type)
	}
	return pk, err
}

// writeFile writes b to a file under dir.
func writeFile(t testing.TB, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func newReader(c net.Conn) *bufio.Reader { return bufio.NewReader(c) }

func tlsPair(certPEM, keyPEM []byte) (tls.Certificate, error) {
	return tls.X509KeyPair(certPEM, keyPEM)
}
