package gateway

import (
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/weft-io/weft/store"
)

// maxQueued is the most messages of one connection waiting for the store;
// beyond, the connection's reading waits (back pressure on the device).
const maxQueued = 1024

// publishQueue makes a connection's QoS 0 and 1 messages durable in the
// order they arrived, all that are waiting in one append, and sends each
// QoS 1 message's PUBACK once it is on disk, in order [MQTT-4.6.0-2],
// while the connection goes on reading. A device therefore has as many
// messages in flight as it likes (up to its receive maximum) instead of
// one per commit.
type publishQueue struct {
	s     *Server
	sess  *session
	mu    sync.Mutex
	cond  *sync.Cond // signalled when the queue shrinks or empties
	items []queued
	busy  bool // a goroutine is appending
}

type queued struct {
	cl  *mqtt.Client
	pk  packets.Packet
	msg store.Message
}

func newPublishQueue(s *Server, sess *session) *publishQueue {
	q := &publishQueue{s: s, sess: sess}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// push queues pk, waiting while the queue is full.
func (q *publishQueue) push(cl *mqtt.Client, pk packets.Packet) {
	msg := q.s.envelope(q.sess.dev, pk, false, q.s.cfg.Now().UTC())
	q.mu.Lock()
	for len(q.items) >= maxQueued {
		q.cond.Wait()
	}
	q.items = append(q.items, queued{cl: cl, pk: pk, msg: msg})
	if !q.busy {
		q.busy = true
		go q.run()
	}
	q.mu.Unlock()
}

// drain waits until everything queued is appended and answered.
func (q *publishQueue) drain() {
	q.mu.Lock()
	for q.busy {
		q.cond.Wait()
	}
	q.mu.Unlock()
}

func (q *publishQueue) run() {
	for {
		q.mu.Lock()
		batch := q.items
		q.items = nil
		if len(batch) == 0 {
			q.busy = false
			q.cond.Broadcast()
			q.mu.Unlock()
			return
		}
		q.cond.Broadcast()
		q.mu.Unlock()
		q.append(batch)
	}
}

// append stores a batch and answers it: PUBACKs on success; on a store
// error, an MQTT 5 device gets the failure reason on each QoS 1 message
// and an MQTT 3.1.1 device is disconnected (it has no negative PUBACK).
func (q *publishQueue) append(batch []queued) {
	s := q.s
	msgs := make([]store.Message, len(batch))
	for i := range batch {
		msgs[i] = batch[i].msg
	}
	err := s.appendMessages(q.sess, q.sess.dev, msgs)
	code := packets.CodeSuccess
	if err != nil {
		var reason string
		code, reason = storeRefusal(err)
		s.log.Warn("messages not stored", "device", q.sess.dev.ID, "count", len(batch), "err", err)
		for range batch {
			s.metrics.publishRefusals.inc(reason)
		}
	}
	q.sess.conn.cork()
	defer q.sess.conn.uncork()
	for _, it := range batch {
		qos := it.pk.FixedHeader.Qos
		if err == nil {
			s.metrics.messagesIn.inc(qosLabel(qos))
		}
		if qos == 0 {
			continue
		}
		if err != nil && it.cl.Properties.ProtocolVersion != 5 {
			s.hook.disconnect(it.cl, q.sess, code, DisconnectStore)
			return
		}
		s.hook.ack(it.cl, it.pk, code)
	}
}
