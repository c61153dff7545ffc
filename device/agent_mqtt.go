package device

import (
	"context"
	"crypto/tls"
	"fmt"

	"github.com/eclipse/paho.golang/paho"
)

// Run connects the agent to its gateway as the device, subscribes to its
// firmware updates (on its own topic, its class's and all), finishes an
// update a reboot interrupted (Boot), reports its running version, and
// acts on each message in turn until ctx ends or the connection drops.
//
// With no Source configured, the agent fetches over this connection in
// chunks (MQTTSource), from its edge's chunk server.
func (a *Agent) Run(ctx context.Context, dc DialConfig, cert tls.Certificate) error {
	msgs := make(chan *paho.Publish, 16)
	var chunks *MQTTSource
	if a.cfg.Source == nil {
		chunks = &MQTTSource{ID: a.cfg.ID}
		a.cfg.Source = chunks
		defer func() { a.cfg.Source = nil }()
	}
	c, err := Connect(ctx, dc, a.cfg.ID, cert, false, func(p paho.PublishReceived) (bool, error) {
		if chunks != nil && chunks.Deliver(p.Packet) {
			return true, nil
		}
		select {
		case msgs <- p.Packet:
		default:
			a.log.Warn("firmware message dropped: agent busy", "topic", p.Packet.Topic)
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	defer c.Disconnect(&paho.Disconnect{})
	a.cfg.Publish = func(ctx context.Context, topic string, payload []byte) error {
		_, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: payload})
		return err
	}
	if chunks != nil {
		chunks.Publish = a.cfg.Publish
	}
	var subs []paho.SubscribeOptions
	for _, f := range a.filters() {
		subs = append(subs, paho.SubscribeOptions{Topic: f, QoS: 1})
	}
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: subs}); err != nil {
		return fmt.Errorf("device: agent subscribe: %w", err)
	}
	if err := a.ReportAgain(ctx); err != nil {
		a.log.Warn("status not sent again", "err", err)
	}
	a.Boot(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-c.Done():
			return fmt.Errorf("device: agent %s: connection lost", a.cfg.ID)
		case p := <-msgs:
			a.Handle(ctx, p.Topic, p.Payload)
		}
	}
}
