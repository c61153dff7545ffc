package gateway

import "github.com/mochi-mqtt/server/v2/packets"

// The gateway's answers on the wire come from this table, so they stay
// stable: MQTT 5 reason codes, with the MQTT 3.1.1 CONNACK return code
// where 3.1.1 has one. The Reason strings are what v5 clients see as the
// reason string property.
var (
	codeClientID       = packets.Code{Code: 0x85, Reason: "client identifier must equal the certificate's device id"}
	codeNotAuthorized  = packets.Code{Code: 0x87, Reason: "not authorized"}
	codeRevoked        = packets.Code{Code: 0x87, Reason: "certificate revoked"}
	codeQuotaExceeded  = packets.Code{Code: 0x97, Reason: "quota exceeded"}
	codeMaxConnections = packets.Code{Code: 0x97, Reason: "too many connections"}
	codeRateTooHigh    = packets.Code{Code: 0x96, Reason: "message rate too high"}
	codePacketTooLarge = packets.Code{Code: 0x95, Reason: "packet too large"}
	codeTopicAlias     = packets.Code{Code: 0x94, Reason: "topic alias invalid"}
	codePayloadFormat  = packets.Code{Code: 0x99, Reason: "shadow/reported must be a JSON object"}
	codeUnspecified    = packets.Code{Code: 0x80, Reason: "message not stored"}
	codeRetain         = packets.Code{Code: 0x9A, Reason: "retain not supported"}
	codeConnectRate    = packets.Code{Code: 0x9F, Reason: "connection rate exceeded"}
	codeTopicLength    = packets.Code{Code: 0x90, Reason: "topic name too long"}
	codeFilterLength   = packets.Code{Code: 0x8F, Reason: "topic filter too long"}
	codeSharedSubs     = packets.Code{Code: 0x9E, Reason: "shared subscriptions not supported"}
	codeSubscriptions  = packets.Code{Code: 0x97, Reason: "too many subscriptions"}

	// MQTT 3.1.1 CONNACK return codes.
	code3ClientID          = packets.Err3ClientIdentifierNotValid // 0x02
	code3ServerUnavailable = packets.Err3ServerUnavailable        // 0x03
	code3NotAuthorized     = packets.Err3NotAuthorized            // 0x05
)

// Connection refusal reasons: the `reason` label of
// weft_gateway_connection_refusals_total. A refusal is a connection closed
// before its MQTT session was established.
const (
	RefuseUnknownCA          = "unknown_ca"          // not signed by the device CA
	RefuseExpired            = "expired"             // certificate expired
	RefuseNotYetValid        = "not_yet_valid"       // certificate not valid yet
	RefuseRevoked            = "revoked"             // certificate on the CRL
	RefuseMultipleIdentities = "multiple_identities" // several weft URI SANs
	RefuseNoIdentity         = "no_identity"         // no weft URI SAN
	RefuseBadIdentity        = "bad_identity"        // malformed weft URI, or not a device's
	RefuseCALeaf             = "ca_leaf"             // a CA certificate used as a leaf
	RefuseKeyUsage           = "key_usage"           // wrong key usage or extended key usage
	RefuseNoCertificate      = "no_certificate"      // the client sent no certificate
	RefuseBadCertificate     = "bad_certificate"     // any other certificate the TLS stack refused
	RefuseTLS                = "tls"                 // any other TLS handshake failure
	RefuseHandshakeTimeout   = "handshake_timeout"   // TLS handshake not done within HandshakeTimeout
	RefuseConnectTimeout     = "connect_timeout"     // no CONNECT within the deadline
	RefuseBadConnect         = "bad_connect"         // first packet not a valid CONNECT, or closed before one
	RefuseClientID           = "client_id"           // MQTT client id is not the device id
	RefuseWill               = "will_not_allowed"    // Will topic outside the device's topics
	RefuseMaxConnections     = "max_connections"     // MaxConnections sessions already
	RefuseMaxPending         = "max_pending"         // MaxPending connections already before CONNECT (or closed to make room)
	RefuseMaxPendingPerIP    = "max_pending_per_ip"  // MaxPendingPerIP connections of its address already before CONNECT
	RefuseFirstByteTimeout   = "first_byte_timeout"  // no byte within FirstByteTimeout
	RefuseConnectRate        = "connect_rate"        // over the device's connect rate
	RefuseTopicLength        = "topic_length"        // a Will topic longer than MaxTopicLength
	RefusePacketTooLarge     = "packet_too_large"    // CONNECT larger than MaxPacketSize
	RefuseWillRetain         = "will_retain"         // an MQTT 5 Will to be retained (Retain Available is 0)
)

// Disconnect reasons: the `reason` label of weft_gateway_disconnects_total,
// for established sessions the gateway closed (a device closing its own
// connection is not counted).
const (
	DisconnectMalformed         = "malformed"          // a packet that does not decode
	DisconnectProtocolViolation = "protocol_violation" // e.g. a zero-length topic, a wildcard in a publish topic
	DisconnectPacketTooLarge    = "packet_too_large"   // larger than MaxPacketSize
	DisconnectTopicAlias        = "topic_alias"        // an unknown or out-of-range v5 topic alias
	DisconnectReceiveMaximum    = "receive_maximum"    // too many QoS 2 messages awaiting PUBREL
	DisconnectKeepalive         = "keepalive_timeout"  // nothing received within 1.5 keepalives
	DisconnectRevoked           = "revoked"            // certificate revoked or expired while connected
	DisconnectNotAuthorized     = "not_authorized"     // an MQTT 3.1.1 publish the ACL refused, a $-topic
	DisconnectMessageRate       = "message_rate"       // publish rate limit (QoS 0, or MQTT 3.1.1)
	DisconnectByteRate          = "byte_rate"          // publish byte rate limit (QoS 0, or MQTT 3.1.1)
	DisconnectStore             = "store_error"        // MQTT 3.1.1 QoS 1/2 message the store refused
	DisconnectPayloadFormat     = "payload_format"     // MQTT 3.1.1 QoS 1/2 shadow report that is not a JSON object
	DisconnectRetain            = "retain"             // a retained publish: the gateway retains nothing devices send
	DisconnectTopicLength       = "topic_length"       // an MQTT 3.1.1 QoS 1/2 publish to a topic longer than MaxTopicLength
	DisconnectPanic             = "panic"              // a bug: the connection's goroutine panicked
	DisconnectOther             = "other"              // any other error
)

// Publish refusal reasons: the `reason` label of
// weft_gateway_publish_refusals_total.
const (
	RefuseMessageRate    = "message_rate"        // over the device's message rate
	RefuseByteRate       = "byte_rate"           // over the device's byte rate
	RefuseQuota          = "quota_exceeded"      // the store's volume quota (or disk) is full
	RefuseStore          = "store_error"         // the store failed to make the message durable
	RefusePayloadFormat  = "payload_format"      // shadow/reported that is not a JSON object
	RefuseDuplicateQoS2  = "duplicate_packet_id" // QoS 2 packet id reused before PUBREL (not stored twice)
	RefuseNoSessionState = "no_session"          // no identity bound to the connection (a bug)
	RefuseRetain         = "retain"              // a retained publish (the connection is closed)
)

// Downlink drop reasons: the `reason` label of
// weft_gateway_downlink_dropped_total.
const (
	DropInflightCap = "inflight_cap" // QoS 1/2 message to a session holding MaxInflight unacknowledged ones
	DropWriteQueue  = "write_queue"  // the connection's queue of packets to write was full
)

// ACL operation labels: the `op` label of weft_gateway_acl_refusals_total.
const (
	OpLabelPublish   = "publish"   // PUBLISH topics
	OpLabelWill      = "will"      // Will topics, at CONNECT and when sent
	OpLabelSubscribe = "subscribe" // SUBSCRIBE filters and deliveries to subscribers
	OpLabelResend    = "resend"    // inflight messages resent to a resumed session
)
