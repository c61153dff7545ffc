// Package plainmqtt runs a plain mochi-mqtt broker, with TLS and client
// certificates but no Weft hooks, no ACL and no persistence: the baseline
// `weft bench gateway --baseline` measures the gateway against. It accepts
// any device with a valid certificate and is never part of a node.
package plainmqtt

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// Broker is a running baseline broker.
type Broker struct {
	srv  *mqtt.Server
	addr net.Addr
}

// Start listens on addr ("127.0.0.1:0" picks a port) with the server
// certificate cert, requiring client certificates from clientCAs.
func Start(addr string, cert tls.Certificate, clientCAs *x509.CertPool) (*Broker, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("plainmqtt: %w", err)
	}
	bound := ln.Addr()
	ln.Close()
	srv := mqtt.New(&mqtt.Options{InlineClient: false, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		return nil, err
	}
	tl := listeners.NewTCP(listeners.Config{ID: "tls", Address: bound.String(), TLSConfig: &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    clientCAs,
	}})
	if err := srv.AddListener(tl); err != nil {
		return nil, fmt.Errorf("plainmqtt: %w", err)
	}
	if err := srv.Serve(); err != nil {
		return nil, fmt.Errorf("plainmqtt: %w", err)
	}
	return &Broker{srv: srv, addr: bound}, nil
}

// Addr is the broker's address.
func (b *Broker) Addr() net.Addr { return b.addr }

// Close stops the broker.
func (b *Broker) Close() error { return b.srv.Close() }
