package alarm

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/weft-io/weft/store"
)

// SignatureHeader carries a webhook body's signature: "sha256=" and the
// hex HMAC-SHA256 of the body keyed with the webhook's secret.
const SignatureHeader = "X-Weft-Signature"

// EventHeader says what happened to the alarm: raised, acknowledged or
// cleared.
const EventHeader = "X-Weft-Event"

// Sign returns the X-Weft-Signature value of body for secret.
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify reports whether sig is the signature of body for secret.
func Verify(secret string, body []byte, sig string) bool {
	return hmac.Equal([]byte(sig), []byte(Sign(secret, body)))
}

// webhookGroup is the notifier's consumer group on ChangesStream.
const webhookGroup = "alarm-webhooks"

// notifier follows the alarms' change stream and hands each raise,
// acknowledgement and clear to the queue of every webhook. Each webhook
// has its own queue and worker: a slow or dead one delays only itself,
// and past its queue's size its notifications are dropped and counted.
type notifier struct {
	e  *Engine
	mu sync.Mutex
	// queues by webhook URL; a worker runs for each.
	queues map[string]chan delivery
	wg     sync.WaitGroup
}

type delivery struct {
	url   string
	event string
	body  []byte
}

func newNotifier(e *Engine) *notifier { return &notifier{e: e, queues: map[string]chan delivery{}} }

func (n *notifier) run(ctx context.Context) {
	defer n.wg.Wait()
	c, err := n.e.st.Stream(ChangesStream).Consumer(store.ConsumerConfig{Group: webhookGroup, Logger: n.e.log})
	if err != nil {
		n.e.log.Error("webhooks not started", "err", err)
		return
	}
	c.Run(ctx, func(ctx context.Context, b store.Batch) (func(*store.Tx) error, error) {
		return nil, n.handle(ctx, b)
	})
}

// handle queues the notifications of a batch of alarm changes. It never
// waits for a webhook.
func (n *notifier) handle(ctx context.Context, b store.Batch) error {
	var set *Settings
	for _, m := range b.Messages {
		var c store.Change
		if json.Unmarshal(m.Value, &c) != nil || c.Op == "delete" {
			continue
		}
		var r Record
		if json.Unmarshal(c.Doc, &r) != nil || (r.Event != EventRaised && r.Event != EventAcknowledged && r.Event != EventCleared) {
			continue
		}
		if set == nil {
			s, _, err := LoadSettings(ctx, n.e.st)
			if err != nil {
				return err
			}
			set = &s
		}
		if len(set.Webhooks) == 0 {
			continue
		}
		body, err := json.Marshal(r.Alarm)
		if err != nil {
			continue
		}
		for _, w := range set.Webhooks {
			n.enqueue(ctx, delivery{url: w.URL, event: r.Event, body: body})
		}
	}
	return nil
}

func (n *notifier) enqueue(ctx context.Context, d delivery) {
	n.mu.Lock()
	q, ok := n.queues[d.url]
	if !ok {
		q = make(chan delivery, n.e.cfg.Queue)
		n.queues[d.url] = q
		n.wg.Go(func() { n.work(ctx, d.url, q) })
	}
	n.mu.Unlock()
	select {
	case q <- d:
	default:
		n.e.metrics.undelivered.WithLabelValues("queue_full").Inc()
		n.e.log.Warn("webhook queue full: notification dropped", "url", d.url, "event", d.event)
	}
}

// work delivers the notifications of one webhook, in order, each retried
// with a growing pause.
func (n *notifier) work(ctx context.Context, url string, q chan delivery) {
	for {
		select {
		case <-ctx.Done():
			return
		case d := <-q:
			n.deliver(ctx, d)
		}
	}
}

func (n *notifier) deliver(ctx context.Context, d delivery) {
	pause := n.e.cfg.Backoff
	for attempt := 1; ; attempt++ {
		// The secret is read at each attempt: a changed secret or a
		// removed webhook applies at once.
		set, _, err := LoadSettings(ctx, n.e.st)
		if err != nil {
			return
		}
		secret, ok := "", false
		for _, w := range set.Webhooks {
			if w.URL == d.url {
				secret, ok = w.Secret, true
			}
		}
		if !ok {
			n.e.metrics.undelivered.WithLabelValues("removed").Inc()
			return
		}
		err = n.post(ctx, d, secret)
		if err == nil {
			n.e.metrics.attempts.WithLabelValues("ok").Inc()
			return
		}
		if ctx.Err() != nil {
			return
		}
		n.e.metrics.attempts.WithLabelValues("error").Inc()
		if attempt >= n.e.cfg.Attempts {
			n.e.metrics.undelivered.WithLabelValues("gave_up").Inc()
			n.e.log.Warn("webhook failed: notification dropped", "url", d.url, "event", d.event, "attempts", attempt, "err", err)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
		pause = min(pause*2, time.Minute)
	}
}

func (n *notifier) post(ctx context.Context, d delivery, secret string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.url, bytes.NewReader(d.body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "weft-alarms")
	req.Header.Set(SignatureHeader, Sign(secret, d.body))
	req.Header.Set(EventHeader, d.event)
	resp, err := n.e.cfg.Client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("alarm: webhook answered %s", resp.Status)
	}
	return nil
}

// metrics of the engine: a prometheus.Collector.
type metrics struct {
	attempts    *prometheus.CounterVec
	undelivered *prometheus.CounterVec
	active      *prometheus.GaugeVec
}

func newMetrics() *metrics {
	return &metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weft_alarm_webhook_attempts_total",
			Help: "Webhook posts of alarm notifications, by result (ok: a 2xx answer; error: anything else)."}, []string{"result"}),
		undelivered: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weft_alarm_webhook_undelivered_total",
			Help: "Alarm notifications never delivered to a webhook, by reason (gave_up after every attempt, queue_full, removed from the settings)."}, []string{"reason"}),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "weft_alarms_active",
			Help: "Active (not acknowledged, not cleared) alarms this node raised, by type."}, []string{"type"}),
	}
}

func (m *metrics) setActive(n map[string]int) {
	for _, t := range Types {
		m.active.WithLabelValues(t).Set(float64(n[t]))
	}
}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	m.attempts.Describe(ch)
	m.undelivered.Describe(ch)
	m.active.Describe(ch)
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	m.attempts.Collect(ch)
	m.undelivered.Collect(ch)
	m.active.Collect(ch)
}
