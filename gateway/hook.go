package gateway

import (
	"context"
	"encoding/json"
	"log/slog"
	"math/big"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/shadow"
	"github.com/weft-io/weft/store"
)

// session is what the gateway knows of one device connection. It lives
// as long as the TCP connection; mochi's Client reaches it through the
// guardConn it reads from.
type session struct {
	s    *Server
	conn *guardConn
	id   certs.Identity
	dev  Device

	version     atomic.Uint32 // MQTT protocol version, once CONNECT is read
	client      atomic.Pointer[mqtt.Client]
	onConnect   func()      // releases the pending-connection slot
	counted     atomic.Bool // counted in the connections gauge
	refused     atomic.Bool // refused with a counted reason
	established atomic.Bool // OnSessionEstablish ran
	ended       atomic.Bool // OnDisconnect ran
	reason      atomic.Pointer[string]

	// Used by the connection's reading goroutine only.
	limiter     *limiter          // the device's, shared by its connections
	aliases     map[uint16]string // v5 inbound topic aliases
	subscribing bool              // holds Server.deliver for reading
	resuming    bool              // likewise, while the session is set up

	queue *publishQueue // telemetry on its way to the store

	// seen is the last_seen time (Unix nanoseconds) last written to the
	// device's shadow by this connection.
	seen atomic.Int64
}

// markClose records why the gateway closes the session; the first
// reason stays.
func (sess *session) markClose(reason string) {
	sess.reason.CompareAndSwap(nil, &reason)
}

func (sess *session) closeReason() string {
	if r := sess.reason.Load(); r != nil {
		return *r
	}
	return ""
}

// sessionOf returns the session of a client connected through the
// gateway's listener, nil for the downlink's inline client and for
// sessions restored from the store while their device is away.
func sessionOf(cl *mqtt.Client) *session {
	if cl == nil {
		return nil
	}
	if g, ok := cl.Net.Conn.(*guardConn); ok {
		return g.sess
	}
	return nil
}

// registry knows each device with a session: the client of its current
// connection, and the class and serial it last connected with (to check
// deliveries to its session while it is away). Its per-device lock orders
// the connected/disconnected shadow writes of a device's successive
// connections.
type registry struct {
	mu   sync.Mutex
	devs map[string]*devEntry
}

type devEntry struct {
	mu      sync.Mutex
	current *mqtt.Client
	dev     Device
	serial  *big.Int
}

func newRegistry() *registry { return &registry{devs: map[string]*devEntry{}} }

func (r *registry) entry(id string) *devEntry {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.devs[id]
	if e == nil {
		e = &devEntry{}
		r.devs[id] = e
	}
	return e
}

func (r *registry) lookup(id string) (Device, *big.Int, bool) {
	r.mu.Lock()
	e := r.devs[id]
	r.mu.Unlock()
	if e == nil {
		return Device{}, nil, false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.dev.ID == "" {
		return Device{}, nil, false
	}
	return e.dev, e.serial, true
}

// remember records the identity of a session restored from the store.
func (r *registry) remember(id, class, serialHex string) {
	if id == "" || class == "" {
		return
	}
	e := r.entry(id)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.dev.ID == "" {
		e.dev = Device{ID: id, Class: class}
		if serialHex != "" {
			e.serial, _ = new(big.Int).SetString(serialHex, 16)
		}
	}
}

func (r *registry) forget(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := r.devs[id]; e != nil {
		e.mu.Lock()
		if e.current == nil {
			delete(r.devs, id)
		}
		e.mu.Unlock()
	}
}

// isCurrent reports whether cl is its device's current connection.
func (r *registry) isCurrent(cl *mqtt.Client) bool {
	r.mu.Lock()
	e := r.devs[cl.ID]
	r.mu.Unlock()
	if e == nil {
		return false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.current == cl
}

// hook is the gateway's mochi hook: authentication from the certificate,
// the ACL, limits, the publish path into the store and the device's
// connection state in its shadow. It is the only hook that authenticates;
// mochi's allow-all hook is never added.
type hook struct {
	mqtt.HookBase
	s *Server
}

// ID implements mqtt.Hook.
func (h *hook) ID() string { return "weft" }

// Provides implements mqtt.Hook.
func (h *hook) Provides(b byte) bool {
	switch b {
	case mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnACLCheck,
		mqtt.OnSessionEstablish, mqtt.OnSessionEstablished, mqtt.OnDisconnect,
		mqtt.OnPacketRead, mqtt.OnPacketEncode, mqtt.OnPacketSent,
		mqtt.OnSubscribe, mqtt.OnPacketProcessed, mqtt.OnPublish, mqtt.OnWillSent,
		mqtt.OnPublishDropped:
		return true
	}
	return false
}

// connack answers a refused CONNECT with the v5 reason code or the 3.1.1
// return code.
func (h *hook) connack(cl *mqtt.Client, v5, v3 packets.Code) {
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}, ReasonCode: v3.Code}
	if cl.Properties.ProtocolVersion == 5 {
		pk.ReasonCode = v5.Code
		pk.Properties.ReasonString = v5.Reason
	}
	cl.WritePacket(pk)
}

// refuse counts and answers a refused CONNECT; mochi then closes the
// connection.
func (h *hook) refuse(cl *mqtt.Client, sess *session, reason string, v5, v3 packets.Code) error {
	sess.refused.Store(true)
	h.s.metrics.refusals.inc(reason)
	level := slog.LevelInfo
	if reason == RefuseConnectRate {
		level = slog.LevelDebug // a device reconnecting in a loop must not flood the log; counted
	}
	h.s.log.Log(context.Background(), level, "connect refused", "device", sess.dev.ID, "client_id", cl.ID, "reason", reason)
	h.connack(cl, v5, v3)
	return v5
}

// OnConnect checks a CONNECT against the certificate's identity: the
// device must be within its connect rate, the client id must be the
// device id, the Will topic one the device may publish to, and there
// must be room for another session.
func (h *hook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	sess := sessionOf(cl)
	if sess == nil {
		return packets.ErrNotAuthorized
	}
	if sess.onConnect != nil {
		sess.onConnect()
	}
	sess.version.Store(uint32(pk.ProtocolVersion))
	sess.client.Store(cl)
	if sess.refused.Load() {
		return packets.ErrNotAuthorized // its pending slot was taken; closed already
	}
	if !sess.limiter.allowConnect(h.s.cfg.Now()) {
		return h.refuse(cl, sess, RefuseConnectRate, codeConnectRate, code3ServerUnavailable)
	}
	if pk.Connect.ClientIdentifier != sess.dev.ID {
		return h.refuse(cl, sess, RefuseClientID, codeClientID, code3ClientID)
	}
	if h.s.cfg.Revocations.Revoked(sess.id.Serial) {
		return h.refuse(cl, sess, RefuseRevoked, codeRevoked, code3NotAuthorized)
	}
	if pk.Connect.WillFlag && pk.Connect.WillRetain && pk.ProtocolVersion == 5 {
		return h.refuse(cl, sess, RefuseWillRetain, codeRetain, code3NotAuthorized) // [MQTT-3.2.2-13]
	}
	if pk.Connect.WillFlag && len(pk.Connect.WillTopic) > h.s.cfg.MaxTopicLength {
		h.s.metrics.aclRefusals.inc(OpLabelWill, ReasonTopicLength)
		return h.refuse(cl, sess, RefuseTopicLength, codeTopicLength, code3NotAuthorized)
	}
	if pk.Connect.WillFlag {
		if r := Allow(sess.dev, OpPublish, pk.Connect.WillTopic); r != "" {
			h.s.metrics.aclRefusals.inc(OpLabelWill, r)
			return h.refuse(cl, sess, RefuseWill, codeNotAuthorized, code3NotAuthorized)
		}
	}
	if h.s.metrics.connections.Add(1) > int64(h.s.cfg.MaxConnections) {
		h.s.metrics.connections.Add(-1)
		return h.refuse(cl, sess, RefuseMaxConnections, codeMaxConnections, code3ServerUnavailable)
	}
	sess.counted.Store(true)
	return nil
}

// OnConnectAuthenticate accepts exactly the connections OnConnect let
// through: the identity is the certificate's, verified during the TLS
// handshake.
func (h *hook) OnConnectAuthenticate(cl *mqtt.Client, _ packets.Packet) bool {
	sess := sessionOf(cl)
	return sess != nil && sess.counted.Load() && !sess.refused.Load()
}

// OnSessionEstablish makes the connection its device's current one,
// before mochi takes over (and closes) an older connection of the device,
// and marks the device connected in its shadow before the CONNACK.
func (h *hook) OnSessionEstablish(cl *mqtt.Client, _ packets.Packet) {
	sess := sessionOf(cl)
	if sess == nil {
		return
	}
	sess.established.Store(true)
	// No downlink message reaches the device until its session is set up
	// and its inflight messages are queued again: none may overtake them.
	h.s.deliver.RLock()
	sess.resuming = true
	h.s.metrics.connects.Add(1)
	h.s.log.Debug("device connected", "device", sess.dev.ID, "class", sess.dev.Class, "version", cl.Properties.ProtocolVersion, "clean", cl.Properties.Clean)
	e := h.s.reg.entry(sess.dev.ID)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.current, e.dev, e.serial = cl, sess.dev, sess.id.Serial
	now := h.s.cfg.Now().UTC()
	sess.seen.Store(now.UnixNano())
	h.patchShadow(sess.dev, map[string]any{
		"connected": true,
		"last_seen": now.Format(time.RFC3339Nano),
		// For the cert_expiring alarm of the device's edge.
		shadow.FieldCertExpires: sess.id.NotAfter.UTC().Format(time.RFC3339Nano),
		"class":                 sess.dev.Class,
		"edge":                  h.s.cfg.Name,
		"site":                  h.s.cfg.Site,
	})
}

// OnSessionEstablished lets the downlink go on once the session is set
// up.
func (h *hook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	h.endSubscribe(sessionOf(cl))
}

// OnDisconnect marks the device disconnected in its shadow, unless a newer
// connection of the device has taken over.
func (h *hook) OnDisconnect(cl *mqtt.Client, _ error, expire bool) {
	sess := sessionOf(cl)
	if sess == nil || sess.ended.Swap(true) {
		return
	}
	e := h.s.reg.entry(sess.dev.ID)
	e.mu.Lock()
	if e.current == cl {
		e.current = nil
		h.patchShadow(sess.dev, map[string]any{
			"connected": false,
			"last_seen": h.s.cfg.Now().UTC().Format(time.RFC3339Nano),
		})
	}
	e.mu.Unlock()
	if expire {
		h.s.reg.forget(sess.dev.ID)
	}
}

func (h *hook) patchShadow(dev Device, patch map[string]any) {
	b, _ := json.Marshal(patch)
	if _, err := h.s.cfg.Store.Table(store.ShadowsTable).Patch(h.s.storeCtx, dev.ID, b); err != nil {
		h.s.log.Warn("shadow not updated", "device", dev.ID, "err", err)
	}
}

// disconnect closes a session for reason, telling an MQTT 5 device why.
func (h *hook) disconnect(cl *mqtt.Client, sess *session, code packets.Code, reason string) {
	sess.markClose(reason)
	if cl.Properties.ProtocolVersion == 5 {
		h.s.mqtt.DisconnectClient(cl, code)
		return
	}
	cl.Stop(code)
}

// OnACLCheck applies Allow to publishes (write) and to subscriptions and
// deliveries (read). Every refusal is counted.
func (h *hook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	op, label := OpSubscribe, OpLabelSubscribe
	if write {
		op, label = OpPublish, OpLabelPublish
	}
	dev, _, ok := h.s.deviceOf(cl, true)
	if !ok {
		h.s.metrics.aclRefusals.inc(label, ReasonNotAllowed)
		return false
	}
	if r := Allow(dev, op, topic); r != "" {
		h.s.metrics.aclRefusals.inc(label, r)
		h.s.log.Debug("topic refused", "device", dev.ID, "op", label, "topic", topic, "reason", r)
		return false
	}
	return true
}

// OnPacketRead sees every packet a device sends, decoded, before mochi
// handles it. For a PUBLISH it resolves a v5 topic alias (so the ACL
// always judges the topic the message really goes to) and counts the
// refusals mochi makes before asking the ACL.
func (h *hook) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Type != packets.Publish {
		return pk, nil
	}
	sess := sessionOf(cl)
	if sess == nil {
		return pk, nil
	}
	if cl.Properties.ProtocolVersion == 5 && pk.Properties.TopicAliasFlag {
		a := pk.Properties.TopicAlias
		if a == 0 || int(a) > h.s.cfg.TopicAliasMaximum {
			h.s.metrics.aclRefusals.inc(OpLabelPublish, ReasonTopicAlias)
			return pk, nil // mochi answers DISCONNECT 0x94
		}
		if pk.TopicName == "" {
			t, ok := sess.aliases[a]
			if !ok {
				h.s.metrics.aclRefusals.inc(OpLabelPublish, ReasonTopicAlias)
				h.disconnect(cl, sess, codeTopicAlias, DisconnectTopicAlias)
				return pk, packets.ErrRejectPacket
			}
			pk.TopicName = t
		} else if len(pk.TopicName) <= h.s.cfg.MaxTopicLength { // a longer one is refused in OnPublish
			if sess.aliases == nil {
				sess.aliases = map[uint16]string{}
			}
			sess.aliases[a] = pk.TopicName
		}
	}
	if pk.FixedHeader.Retain {
		// The CONNACK says Retain Available 0 [MQTT-3.3.1-19]; MQTT 3.1.1
		// has no way to refuse it but closing.
		h.s.metrics.publishRefusals.inc(RefuseRetain)
		h.disconnect(cl, sess, codeRetain, DisconnectRetain)
		return pk, packets.ErrRejectPacket
	}
	topic := pk.TopicName
	switch {
	case topic == "":
		// mochi answers DISCONNECT 0x82 (protocol violation).
	case strings.ContainsAny(topic, "+#"):
		h.s.metrics.aclRefusals.inc(OpLabelPublish, ReasonWildcard)
		// mochi answers DISCONNECT 0x82.
	case !mqtt.IsValidFilter(topic, true):
		// A $SYS topic: mochi would drop it without an answer.
		h.s.metrics.aclRefusals.inc(OpLabelPublish, ReasonSystem)
		if pk.FixedHeader.Qos > 0 {
			if cl.Properties.ProtocolVersion != 5 {
				h.disconnect(cl, sess, codeNotAuthorized, DisconnectNotAuthorized)
				return pk, packets.ErrRejectPacket
			}
			h.ack(cl, pk, codeNotAuthorized)
		}
	case pk.FixedHeader.Qos == 2:
		if in, ok := cl.State.Inflight.Get(pk.PacketID); ok && in.FixedHeader.Type == packets.Pubrec {
			// A QoS 2 message sent again before its PUBREL: it is stored
			// already. mochi answers the same PUBREC and neither publishes
			// nor hands it to OnPublish [MQTT-4.3.3-10].
			h.s.metrics.publishRefusals.inc(RefuseDuplicateQoS2)
		}
	}
	return pk, nil
}

// ack sends the PUBACK (QoS 1) or PUBREC (QoS 2) of a publish the
// gateway answers itself: a refused one, or one made durable by its queue.
func (h *hook) ack(cl *mqtt.Client, pk packets.Packet, code packets.Code) {
	t := byte(packets.Puback)
	if pk.FixedHeader.Qos == 2 {
		t = packets.Pubrec
	}
	ack := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: t},
		PacketID:    pk.PacketID,
		ReasonCode:  code.Code,
	}
	if code.Code >= packets.ErrUnspecifiedError.Code {
		ack.Properties.ReasonString = code.Reason
	}
	cl.WritePacket(ack)
}

// OnPacketEncode adds the gateway's limits to a v5 CONNACK, and before the
// CONNACK of a resumed session, drops the inflight messages the device
// may no longer receive (mochi resends them right after without asking
// the ACL, upstream #504).
func (h *hook) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if pk.FixedHeader.Type != packets.Connack || pk.ReasonCode >= packets.ErrUnspecifiedError.Code {
		return pk
	}
	if sess := sessionOf(cl); sess == nil || sess.refused.Load() {
		return pk // a 3.1.1 refusal (its return codes are below 0x80)
	}
	if cl.Properties.ProtocolVersion == 5 {
		pk.Properties.MaximumPacketSize = uint32(h.s.cfg.MaxPacketSize)
		pk.Properties.TopicAliasMaximum = uint16(h.s.cfg.TopicAliasMaximum)
		pk.Properties.SharedSubAvailable, pk.Properties.SharedSubAvailableFlag = 0, true
		pk.Properties.RetainAvailable, pk.Properties.RetainAvailableFlag = 0, true // devices' messages go to the store
	}
	dev, _, ok := h.s.deviceOf(cl, true)
	for _, tk := range cl.State.Inflight.GetAll(false) {
		if tk.FixedHeader.Type != packets.Publish {
			continue
		}
		r := ReasonNotAllowed
		if ok {
			r = Allow(dev, OpSubscribe, tk.TopicName)
		}
		if r == "" {
			continue
		}
		if cl.State.Inflight.Delete(tk.PacketID) {
			atomic.AddInt64(&h.s.mqtt.Info.Inflight, -1)
			h.s.state.OnQosDropped(cl, tk)
			h.s.metrics.aclRefusals.inc(OpLabelResend, r)
		}
	}
	return pk
}

// OnPacketSent counts messages sent to devices.
func (h *hook) OnPacketSent(cl *mqtt.Client, pk packets.Packet, _ []byte) {
	if pk.FixedHeader.Type == packets.Publish {
		h.s.metrics.messagesOut.inc(qosLabel(pk.FixedHeader.Qos))
	}
}

// OnSubscribe refuses, with their reason codes, filters longer than
// MaxFilterLength (0x8F), shared subscriptions (0x9E) and the filters
// that would take the session beyond MaxSubscriptions (0x97); counts the
// filters mochi refuses as invalid without asking the ACL; and holds
// back the downlink until the SUBSCRIBE is handled (see Server.deliver).
func (h *hook) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if sess := sessionOf(cl); sess != nil && !sess.subscribing {
		h.s.deliver.RLock()
		sess.subscribing = true
	}
	codes := make([]byte, len(pk.Filters))
	held := cl.State.Subscriptions.Len()
	var added map[string]bool
	for i, f := range pk.Filters {
		switch {
		case len(f.Filter) > h.s.cfg.MaxFilterLength:
			h.s.metrics.aclRefusals.inc(OpLabelSubscribe, ReasonTopicLength)
			codes[i] = codeFilterLength.Code
		case !mqtt.IsValidFilter(f.Filter, false):
			h.s.metrics.aclRefusals.inc(OpLabelSubscribe, ReasonInvalid) // mochi answers 0x8F
		case hasSharePrefix(f.Filter):
			h.s.metrics.aclRefusals.inc(OpLabelSubscribe, ReasonShared)
			codes[i] = codeSharedSubs.Code
		default:
			if _, ok := cl.State.Subscriptions.Get(f.Filter); ok || added[f.Filter] {
				continue // replaces a subscription held
			}
			if held >= h.s.cfg.MaxSubscriptions {
				h.s.metrics.aclRefusals.inc(OpLabelSubscribe, ReasonMaxSubs)
				codes[i] = codeSubscriptions.Code
				continue
			}
			held++
			if added == nil {
				added = map[string]bool{}
			}
			added[f.Filter] = true
		}
	}
	pk.ReasonCodes = codes
	return pk
}

// OnPublishDropped counts the messages to a device mochi dropped: beyond
// the session's MaxInflight (or out of packet ids), or with the
// connection's write queue full.
func (h *hook) OnPublishDropped(cl *mqtt.Client, pk packets.Packet) {
	reason := DropWriteQueue
	if pk.FixedHeader.Qos > 0 && cl.State.Inflight.Len() >= MaxInflight {
		reason = DropInflightCap
	}
	h.s.metrics.downDropped.inc(reason)
	h.s.log.Debug("message to device dropped", "device", cl.ID, "topic", pk.TopicName, "reason", reason)
}

// OnPacketProcessed lets the downlink go on once a SUBSCRIBE is handled,
// its retained messages sent.
func (h *hook) OnPacketProcessed(cl *mqtt.Client, pk packets.Packet, _ error) {
	if pk.FixedHeader.Type == packets.Subscribe {
		h.endSubscribe(sessionOf(cl))
	}
}

// endSubscribe releases the hold OnSubscribe or OnSessionEstablish took,
// if any. It runs on the connection's reading goroutine, as they do, and
// once more when the connection ends (mochi did not finish).
func (h *hook) endSubscribe(sess *session) {
	if sess == nil {
		return
	}
	if sess.subscribing {
		sess.subscribing = false
		h.s.deliver.RUnlock()
	}
	if sess.resuming {
		sess.resuming = false
		h.s.deliver.RUnlock()
	}
}

// OnWillSent stores a Will message like a publish of the device, if its
// topic is still one the device may publish to (upstream #503: mochi
// publishes Wills without asking the ACL).
func (h *hook) OnWillSent(cl *mqtt.Client, pk packets.Packet) {
	if cl.Net.Inline {
		return
	}
	h.storeWillPacket(cl, pk)
}

// storeWill stores cl's pending Will, for connections mochi could not
// end itself.
func (h *hook) storeWill(cl *mqtt.Client) {
	if atomic.LoadUint32(&cl.Properties.Will.Flag) == 0 {
		return
	}
	w := cl.Properties.Will
	atomic.StoreUint32(&cl.Properties.Will.Flag, 0)
	h.storeWillPacket(cl, packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: w.Qos},
		TopicName:   w.TopicName,
		Payload:     w.Payload,
	})
}

func (h *hook) storeWillPacket(cl *mqtt.Client, pk packets.Packet) {
	dev, _, ok := h.s.deviceOf(cl, true)
	if !ok {
		h.s.metrics.aclRefusals.inc(OpLabelWill, ReasonNotAllowed)
		return
	}
	if r := Allow(dev, OpPublish, pk.TopicName); r != "" {
		h.s.metrics.aclRefusals.inc(OpLabelWill, r)
		return
	}
	if err := h.s.ingest(nil, dev, pk, true); err != nil {
		h.s.log.Warn("will not stored", "device", dev.ID, "err", err)
	}
}
