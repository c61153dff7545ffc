package gateway

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/storage"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/weft-io/weft/store"
)

// StateVolume is the volume holding the gateways' MQTT session state,
// created at start if missing.
const StateVolume = "gateway"

// StateTable returns the path of the table where the gateway called name
// keeps its MQTT sessions, subscriptions, retained and inflight messages:
// /gateway/sessions-<name>.
func StateTable(name string) string { return "/" + StateVolume + "/sessions-" + name }

// Keys of the state table. Device ids never hold a slash, so a prefix
// such as "s/<id>/" names exactly one client's records.
const (
	keyClient   = "c/"
	keySub      = "s/"
	keyRetained = "r/"
	keyInflight = "i/"
	keySysInfo  = "sys"
)

// maxKey keeps table keys well under the store's limit; longer ones are
// replaced by a hash (the record holds the full topic).
const maxKey = 512

func shortKey(prefix, s string) string {
	if len(prefix)+len(s) <= maxKey {
		return prefix + s
	}
	sum := sha256.Sum256([]byte(s))
	return prefix + "#" + hex.EncodeToString(sum[:])
}

func clientKey(id string) string             { return keyClient + id }
func subKey(id, filter string) string        { return shortKey(keySub+id+"/", filter) }
func retainedKey(topic string) string        { return shortKey(keyRetained, topic) }
func inflightKey(id string, p uint16) string { return keyInflight + id + "/" + strconv.Itoa(int(p)) }

// clientRecord is mochi's stored client plus the identity the gateway
// needs to check deliveries to the session while its device is away.
type clientRecord struct {
	storage.Client
	Class  string `json:"class,omitempty"`
	Serial string `json:"serial,omitempty"`
}

// stateHook is a mochi storage hook, in the shape of mochi's own badger
// hook, that keeps sessions, subscriptions, retained and inflight
// messages in a table of the store, so they survive a restart.
//
// Writes go through a coalescing writer. Those a device waits for
// (session, SUBSCRIBE, UNSUBSCRIBE, an inbound QoS 2 message awaiting
// PUBREL) are durable before mochi answers; the others (messages queued
// for subscribers, retained messages) are made durable by the downlink
// before it moves its cursor past the messages that caused them.
type stateHook struct {
	mqtt.HookBase
	s     *Server
	table *store.Table
	w     *stateWriter

	mu       sync.Mutex
	inflight map[string]uint64 // keys of inflight records in the table: their seq
	seq      uint64            // the last inflight record's seq
}

// inflightRecord is mochi's stored inflight message plus the order it was
// made in: mochi resends a session's inflight messages in the order they
// were added, and after a restart it adds them in the order they are
// loaded.
type inflightRecord struct {
	storage.Message
	Seq uint64 `json:"seq,omitempty"`
}

func newStateHook(s *Server) *stateHook {
	t := s.cfg.Store.Table(StateTable(s.cfg.Name))
	return &stateHook{
		s:        s,
		table:    t,
		w:        newStateWriter(s.storeCtx, t, s.log),
		inflight: map[string]uint64{},
	}
}

// ID implements mqtt.Hook.
func (h *stateHook) ID() string { return "weft-state" }

// Provides implements mqtt.Hook.
func (h *stateHook) Provides(b byte) bool {
	switch b {
	case mqtt.OnSessionEstablished, mqtt.OnDisconnect, mqtt.OnSubscribed, mqtt.OnUnsubscribed,
		mqtt.OnRetainMessage, mqtt.OnQosPublish, mqtt.OnQosComplete, mqtt.OnQosDropped,
		mqtt.OnClientExpired, mqtt.OnRetainedExpired, mqtt.OnStopped,
		mqtt.StoredClients, mqtt.StoredSubscriptions, mqtt.StoredInflightMessages,
		mqtt.StoredRetainedMessages, mqtt.StoredSysInfo:
		return true
	}
	return false
}

// Stop implements mqtt.Hook: it makes every pending write durable.
func (h *stateHook) Stop() error {
	return h.w.close()
}

func (h *stateHook) wait(seq uint64) {
	if err := h.w.wait(h.s.storeCtx, seq); err != nil {
		h.s.log.Warn("session state not stored", "err", err)
	}
}

func (h *stateHook) clientRecord(cl *mqtt.Client) clientRecord {
	props := cl.Properties.Props.Copy(false)
	rec := clientRecord{Client: storage.Client{
		ID:              cl.ID,
		T:               storage.ClientKey,
		Remote:          cl.Net.Remote,
		Listener:        cl.Net.Listener,
		Clean:           cl.Properties.Clean,
		ProtocolVersion: cl.Properties.ProtocolVersion,
		Properties: storage.ClientProperties{
			SessionExpiryInterval:     props.SessionExpiryInterval,
			SessionExpiryIntervalFlag: props.SessionExpiryIntervalFlag,
			RequestProblemInfo:        props.RequestProblemInfo,
			RequestProblemInfoFlag:    props.RequestProblemInfoFlag,
			RequestResponseInfo:       props.RequestResponseInfo,
			ReceiveMaximum:            props.ReceiveMaximum,
			TopicAliasMaximum:         props.TopicAliasMaximum,
			User:                      props.User,
			MaximumPacketSize:         props.MaximumPacketSize,
		},
		Will: storage.ClientWill(cl.Properties.Will),
	}}
	if dev, serial, ok := h.s.deviceOf(cl, false); ok {
		rec.Class = dev.Class
		if serial != nil {
			rec.Serial = serial.Text(16)
		}
	}
	return rec
}

// OnSessionEstablished stores the client's session.
func (h *stateHook) OnSessionEstablished(cl *mqtt.Client, pk packets.Packet) {
	if cl.Net.Inline || !h.s.reg.isCurrent(cl) {
		return
	}
	h.wait(h.w.put(clientKey(cl.ID), h.clientRecord(cl)))
}

// OnDisconnect keeps the session of a persistent client and forgets a
// clean one. A connection taken over by a newer one of the same device
// changes nothing.
func (h *stateHook) OnDisconnect(cl *mqtt.Client, _ error, expire bool) {
	if cl.Net.Inline {
		return
	}
	if cl.Net.Conn == nil { // a session restored at start
		if expire {
			h.w.del(clientKey(cl.ID))
		}
		return
	}
	if !h.s.reg.isCurrent(cl) {
		return
	}
	if expire {
		h.w.del(clientKey(cl.ID))
		return
	}
	h.w.put(clientKey(cl.ID), h.clientRecord(cl))
}

// OnSubscribed stores the subscriptions granted, before the SUBACK.
func (h *stateHook) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	if cl.Net.Inline {
		return
	}
	var seq uint64
	for i, f := range pk.Filters {
		if i >= len(codes) || codes[i] >= packets.ErrUnspecifiedError.Code {
			continue
		}
		seq = h.w.put(subKey(cl.ID, f.Filter), storage.Subscription{
			ID:                subKey(cl.ID, f.Filter),
			T:                 storage.SubscriptionKey,
			Client:            cl.ID,
			Qos:               codes[i],
			Filter:            f.Filter,
			Identifier:        f.Identifier,
			NoLocal:           f.NoLocal,
			RetainHandling:    f.RetainHandling,
			RetainAsPublished: f.RetainAsPublished,
		})
	}
	if seq != 0 {
		h.wait(seq)
	}
}

// OnUnsubscribed deletes subscriptions, before the UNSUBACK.
func (h *stateHook) OnUnsubscribed(cl *mqtt.Client, pk packets.Packet) {
	if cl.Net.Inline {
		return
	}
	var seq uint64
	for _, f := range pk.Filters {
		seq = h.w.del(subKey(cl.ID, f.Filter))
	}
	if seq != 0 && !cl.Closed() {
		h.wait(seq)
	}
}

func messageRecord(id, client string, pk packets.Packet) storage.Message {
	props := pk.Properties.Copy(false)
	return storage.Message{
		ID:          id,
		Client:      client,
		Origin:      pk.Origin,
		PacketID:    pk.PacketID,
		FixedHeader: pk.FixedHeader,
		TopicName:   pk.TopicName,
		Payload:     pk.Payload,
		Created:     pk.Created,
		Properties: storage.MessageProperties{
			PayloadFormat:          props.PayloadFormat,
			PayloadFormatFlag:      props.PayloadFormatFlag,
			MessageExpiryInterval:  props.MessageExpiryInterval,
			ContentType:            props.ContentType,
			ResponseTopic:          props.ResponseTopic,
			CorrelationData:        props.CorrelationData,
			SubscriptionIdentifier: props.SubscriptionIdentifier,
			User:                   props.User,
		},
	}
}

// OnRetainMessage stores or deletes (r == -1) a retained message.
func (h *stateHook) OnRetainMessage(cl *mqtt.Client, pk packets.Packet, r int64) {
	key := retainedKey(pk.TopicName)
	if r == -1 {
		h.w.del(key)
		return
	}
	rec := messageRecord(key, cl.ID, pk)
	rec.T = storage.RetainedKey
	h.w.put(key, rec)
}

// OnQosPublish stores an inflight message: a QoS 1 or 2 message queued for
// a subscriber, or the PUBREC of an inbound QoS 2 message (durable before
// the PUBREC is sent, so a restart never stores a resent message twice).
// The PUBACK mochi keeps for an instant while acknowledging an inbound QoS
// 1 message is not stored.
func (h *stateHook) OnQosPublish(cl *mqtt.Client, pk packets.Packet, sent int64, _ int) {
	if cl.Net.Inline {
		return
	}
	switch pk.FixedHeader.Type {
	case packets.Publish, packets.Pubrec:
	default:
		return
	}
	key := inflightKey(cl.ID, pk.PacketID)
	rec := inflightRecord{Message: messageRecord(key, cl.ID, pk)}
	rec.T = storage.InflightKey
	rec.Sent = sent
	h.mu.Lock()
	var known bool
	if rec.Seq, known = h.inflight[key]; !known { // a resend keeps its place
		h.seq++
		rec.Seq = h.seq
		h.inflight[key] = rec.Seq
	}
	h.mu.Unlock()
	seq := h.w.put(key, rec)
	if pk.FixedHeader.Type == packets.Pubrec {
		h.wait(seq)
	}
}

// OnQosComplete deletes a resolved inflight message.
func (h *stateHook) OnQosComplete(cl *mqtt.Client, pk packets.Packet) {
	key := inflightKey(cl.ID, pk.PacketID)
	h.mu.Lock()
	_, ok := h.inflight[key]
	delete(h.inflight, key)
	h.mu.Unlock()
	if ok {
		h.w.del(key)
	}
}

// OnQosDropped deletes an abandoned inflight message.
func (h *stateHook) OnQosDropped(cl *mqtt.Client, pk packets.Packet) {
	h.OnQosComplete(cl, pk)
}

// OnClientExpired deletes an expired session and everything it held.
func (h *stateHook) OnClientExpired(cl *mqtt.Client) {
	h.w.del(clientKey(cl.ID))
	for _, prefix := range []string{keySub + cl.ID + "/", keyInflight + cl.ID + "/"} {
		err := h.scan(prefix, func(d store.Doc) error {
			h.mu.Lock()
			delete(h.inflight, d.Key)
			h.mu.Unlock()
			h.w.del(d.Key)
			return nil
		})
		if err != nil {
			h.s.log.Warn("expired session not deleted", "client", cl.ID, "err", err)
		}
	}
	h.s.reg.forget(cl.ID)
}

// OnRetainedExpired deletes an expired retained message.
func (h *stateHook) OnRetainedExpired(topic string) {
	h.w.del(retainedKey(topic))
}

// OnStopped stores the server's counters.
func (h *stateHook) OnStopped() {
	info := h.s.mqtt.Info.Clone()
	h.w.put(keySysInfo, storage.SystemInfo{ID: keySysInfo, T: storage.SysInfoKey, Info: *info})
}

func (h *stateHook) scan(prefix string, fn func(store.Doc) error) error {
	after := ""
	for {
		docs, next, err := h.table.Scan(h.s.storeCtx, prefix, after, 1000)
		if err != nil {
			return err
		}
		for _, d := range docs {
			if err := fn(d); err != nil {
				return err
			}
		}
		if next == "" || len(docs) == 0 {
			return nil
		}
		after = next
	}
}

// StoredClients returns the stored sessions, and remembers each device's
// class and serial for the ACL of deliveries while it is away.
func (h *stateHook) StoredClients() ([]storage.Client, error) {
	var out []storage.Client
	err := h.scan(keyClient, func(d store.Doc) error {
		var rec clientRecord
		if err := json.Unmarshal(d.Value, &rec); err != nil {
			h.s.log.Warn("bad session record", "key", d.Key, "err", err)
			return nil
		}
		h.s.reg.remember(rec.ID, rec.Class, rec.Serial)
		out = append(out, rec.Client)
		return nil
	})
	return out, err
}

// StoredSubscriptions returns the stored subscriptions of the sessions
// restored (mochi drops expired sessions before it asks).
func (h *stateHook) StoredSubscriptions() ([]storage.Subscription, error) {
	var out []storage.Subscription
	err := h.scan(keySub, func(d store.Doc) error {
		var sub storage.Subscription
		if err := json.Unmarshal(d.Value, &sub); err != nil {
			h.s.log.Warn("bad subscription record", "key", d.Key, "err", err)
			return nil
		}
		if _, ok := h.s.mqtt.Clients.Get(sub.Client); !ok {
			h.w.del(d.Key)
			return nil
		}
		out = append(out, sub)
		return nil
	})
	return out, err
}

// StoredInflightMessages returns the stored inflight messages of the
// sessions restored, in the order they were made.
func (h *stateHook) StoredInflightMessages() ([]storage.Message, error) {
	var recs []inflightRecord
	err := h.scan(keyInflight, func(d store.Doc) error {
		var m inflightRecord
		if err := json.Unmarshal(d.Value, &m); err != nil {
			h.s.log.Warn("bad inflight record", "key", d.Key, "err", err)
			return nil
		}
		if _, ok := h.s.mqtt.Clients.Get(m.Client); !ok {
			h.w.del(d.Key)
			return nil
		}
		recs = append(recs, m)
		return nil
	})
	// Records stored before they had a seq (0) go first, in key order.
	slices.SortStableFunc(recs, func(a, b inflightRecord) int { return cmp.Compare(a.Seq, b.Seq) })
	out := make([]storage.Message, len(recs))
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, m := range recs {
		h.seq = max(h.seq, m.Seq)
		h.inflight[m.ID] = m.Seq
		out[i] = m.Message
	}
	return out, err
}

// StoredRetainedMessages returns the stored retained messages.
func (h *stateHook) StoredRetainedMessages() ([]storage.Message, error) {
	var out []storage.Message
	err := h.scan(keyRetained, func(d store.Doc) error {
		var m storage.Message
		if err := json.Unmarshal(d.Value, &m); err != nil {
			h.s.log.Warn("bad retained record", "key", d.Key, "err", err)
			return nil
		}
		out = append(out, m)
		return nil
	})
	return out, err
}

// StoredSysInfo returns the server counters stored at the last stop.
func (h *stateHook) StoredSysInfo() (storage.SystemInfo, error) {
	var v storage.SystemInfo
	d, err := h.table.Get(h.s.storeCtx, keySysInfo)
	if errors.Is(err, store.ErrNotFound) {
		return v, nil
	}
	if err != nil {
		return v, err
	}
	if err := json.Unmarshal(d.Value, &v); err != nil {
		h.s.log.Warn("bad server info record", "err", err)
	}
	return v, nil
}

// stateWriter applies puts and deletes to the state table in the
// background. Writes to the same key are coalesced (the last one wins,
// which is right as each is a whole record); each batch is applied with
// concurrent calls, which the store group-commits. put and del return a
// sequence number; wait returns once the write is durable.
type stateWriter struct {
	ctx   context.Context
	table *store.Table
	log   interface{ Warn(string, ...any) }

	mu        sync.Mutex
	pending   map[string]json.RawMessage // nil: delete
	seq       uint64                     // last sequence number given out
	applied   uint64                     // every write up to it is applied
	failed    []seqRange                 // recent batches that failed
	batchDone chan struct{}              // closed when a batch is applied
	closed    bool

	wake chan struct{}
	done chan struct{}
}

type seqRange struct {
	from, to uint64 // (from, to]
	err      error
}

// stateWriterParallel bounds the concurrent writes of one batch.
const stateWriterParallel = 64

func newStateWriter(ctx context.Context, t *store.Table, log interface{ Warn(string, ...any) }) *stateWriter {
	w := &stateWriter{
		ctx:       ctx,
		table:     t,
		log:       log,
		pending:   map[string]json.RawMessage{},
		batchDone: make(chan struct{}),
		wake:      make(chan struct{}, 1),
		done:      make(chan struct{}),
	}
	go w.run()
	return w
}

func (w *stateWriter) enqueue(key string, val json.RawMessage) uint64 {
	w.mu.Lock()
	if w.closed {
		// A late hook call (mochi's housekeeping racing its own shutdown):
		// write it at once.
		w.mu.Unlock()
		w.apply(map[string]json.RawMessage{key: val}) // logs its errors
		return 0
	}
	w.seq++
	seq := w.seq
	w.pending[key] = val
	select {
	case w.wake <- struct{}{}:
	default:
	}
	w.mu.Unlock()
	return seq
}

func (w *stateWriter) put(key string, v any) uint64 {
	b, err := json.Marshal(v)
	if err != nil { // cannot happen with the record types stored
		w.log.Warn("session state not encoded", "key", key, "err", err)
		return 0
	}
	return w.enqueue(key, b)
}

func (w *stateWriter) del(key string) uint64 { return w.enqueue(key, nil) }

// wait returns when the write numbered seq is durable, with its error.
func (w *stateWriter) wait(ctx context.Context, seq uint64) error {
	for {
		w.mu.Lock()
		if w.applied >= seq {
			var err error
			for _, f := range w.failed {
				if seq > f.from && seq <= f.to {
					err = f.err
				}
			}
			w.mu.Unlock()
			return err
		}
		ch := w.batchDone
		w.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// flush waits until every write enqueued so far is durable.
func (w *stateWriter) flush(ctx context.Context) error {
	w.mu.Lock()
	seq := w.seq
	w.mu.Unlock()
	return w.wait(ctx, seq)
}

// close applies what is pending and stops the writer.
func (w *stateWriter) close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		<-w.done
		return nil
	}
	w.closed = true
	seq := w.seq
	close(w.wake)
	w.mu.Unlock()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, f := range w.failed {
		if f.to > 0 && f.to <= seq {
			return fmt.Errorf("gateway: session state: %w", f.err)
		}
	}
	return nil
}

func (w *stateWriter) run() {
	defer close(w.done)
	for range w.wake {
		w.drain()
	}
	w.drain()
}

func (w *stateWriter) drain() {
	for {
		w.mu.Lock()
		if len(w.pending) == 0 {
			w.mu.Unlock()
			return
		}
		batch, from, to := w.pending, w.applied, w.seq
		w.pending = map[string]json.RawMessage{}
		w.mu.Unlock()

		err := w.apply(batch)

		w.mu.Lock()
		w.applied = to
		if err != nil {
			w.failed = append(w.failed, seqRange{from, to, err})
			if len(w.failed) > 64 {
				w.failed = w.failed[len(w.failed)-64:]
			}
		}
		close(w.batchDone)
		w.batchDone = make(chan struct{})
		w.mu.Unlock()
	}
}

func (w *stateWriter) apply(batch map[string]json.RawMessage) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		sem   = make(chan struct{}, stateWriterParallel)
	)
	for key, val := range batch {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			var err error
			if val == nil {
				err = w.table.Delete(w.ctx, key)
				if errors.Is(err, store.ErrNotFound) {
					err = nil
				}
			} else {
				_, err = w.table.Put(w.ctx, key, val)
			}
			if err != nil {
				w.log.Warn("session state not stored", "key", key, "err", err)
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return first
}
