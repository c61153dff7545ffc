// Package gateway is Weft's MQTT device gateway: devices connect over
// mutual TLS with MQTT 3.1.1 or 5, and every message the gateway
// acknowledges is durably in the edge store.
//
// The broker is github.com/mochi-mqtt/server/v2, embedded. The gateway
// gives it its own listener and two hooks, and never mochi's allow-all
// authentication:
//
//   - The listener accepts TCP connections (backing off on temporary
//     errors such as EMFILE), gives each a pending slot until its
//     CONNECT (pendingTable: capped in all and per source address, a
//     full table making room by closing the oldest connection of the
//     address holding the most), runs the TLS handshake
//     (TLS 1.2+, client certificate required and verified against the
//     device CA only, revocation checked on every handshake, resumed
//     ones included) under the first-byte, handshake and CONNECT
//     deadlines, reads the device's
//     identity from its certificate (certs.PeerIdentity), and hands mochi
//     a guarded connection that refuses packets over MaxPacketSize and
//     counts bytes. It runs mochi's per-connection goroutine under a
//     recover, so a panic while reading a malformed packet (such as
//     mochi's truncated v5 SUBSCRIBE, upstream #501) closes that
//     connection only.
//   - The weft hook authenticates (the MQTT client id must be the
//     certificate's device id), applies the ACL (Allow, a pure function)
//     to publishes, subscriptions, deliveries, Wills and resent inflight
//     messages, resolves v5 topic aliases before the ACL sees the topic,
//     caps topic and filter lengths and subscriptions per session,
//     enforces the per-device message, byte and connect rates (limits:
//     token buckets kept per device id across its connections) and
//     MaxConnections, counts the messages to devices mochi drops, and runs the
//     publish path: the message, in its envelope, is appended to
//     /telemetry/events and /telemetry/by_device in one durable commit
//     before mochi sends the PUBACK or PUBREC; shadow reports are merged
//     into /shadows/devices; connects and disconnects set the shadow's
//     connected and last_seen.
//   - The state hook keeps mochi's sessions, subscriptions, retained and
//     inflight messages in the table StateTable(Name), so persistent
//     sessions and retained updates survive a restart.
//
// The downlink delivers the messages appended to /updates/down (topics
// all, class/<class>, device/<id>) to subscribed devices on
// updates/<topic>[/<subtopic>], retaining the latest of each MQTT topic,
// and keeps its position as the consumer cursor CursorGroup(Name).
//
// Limits answer with MQTT reason codes (see codes.go) and every refusal is
// counted in Metrics, which is a prometheus.Collector.
//
// Usage:
//
//	srv, err := gateway.New(gateway.Config{Store: st, Name: "truck-7", Addr: ":8883",
//		Certificate: pair, DeviceCAs: pool, Revocations: crl})
//	...
//	err = srv.Run(ctx) // or Start(ctx) ... Shutdown(ctx)
package gateway
