package gateway

import (
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/store"
)

// Config configures a Server. The zero value of every field works except
// Store, Certificate and DeviceCAs, which are required.
type Config struct {
	// Store receives the devices' messages and shadows and keeps the MQTT
	// sessions. Required. The caller opens and closes it; Shutdown the
	// server before closing the store.
	Store *store.Store
	// Name is the gateway's (the edge's) name: the topic of its messages
	// in /telemetry/events and their `gateway` header. It must be a valid
	// certs name. Default: the store's name.
	Name string
	// Site is where the gateway stands, recorded in the shadows of its
	// devices (`site`) for tokens scoped by site. Several edges of one
	// place share a site. Default: Name.
	Site string
	// Addr is the TCP address to listen on. Default ":8883".
	Addr string

	// Certificate is the gateway's server certificate (a certs gateway
	// certificate), served through GetCertificate so it can be replaced
	// on disk without a restart. Required.
	Certificate *certs.KeyPair
	// DeviceCAs is the pool of the device CA, the only anchor device
	// certificates are verified against. Required.
	DeviceCAs *x509.CertPool
	// Revocations is the CRL in force; nil revokes nothing. The server
	// runs its Run loop (a new CRL file is picked up within a second) and
	// closes the sessions of newly revoked devices.
	Revocations *certs.Revocations

	// ConnectTimeout is how long a new connection has to finish the TLS
	// handshake and send its CONNECT. Default 10 s.
	ConnectTimeout time.Duration
	// MaxPacketSize is the largest MQTT packet accepted, in bytes.
	// Default 256 KiB.
	MaxPacketSize int
	// MessageRate and MessageBurst bound each device's publishes a second
	// (a token bucket kept per device id across its connections, a
	// takeover included, and forgotten once full and unused). Default
	// 1000/s with bursts of 2000; a negative rate disables the limit.
	MessageRate  float64
	MessageBurst int
	// ByteRate and ByteBurst bound each device's publish bytes a second:
	// the whole PUBLISH after its fixed header (topic, packet id,
	// properties, payload), per device as MessageRate. Default 1 MiB/s
	// with bursts of 2 MiB (the burst is raised to MaxPacketSize if
	// smaller); a negative rate disables the limit.
	ByteRate  float64
	ByteBurst int
	// MaxConnections is the most MQTT sessions connected at once; a
	// CONNECT beyond is refused (v5 0x97 quota exceeded, v3 0x03 server
	// unavailable). Default 50000.
	MaxConnections int
	// MaxPending is the most connections that may be in the TLS
	// handshake or waiting for their CONNECT at once. When that many
	// are pending, a new connection closes the oldest pending one of
	// the source address holding the most, if that address holds more
	// than the new connection's would; otherwise the new connection is
	// closed as soon as accepted. Default 1024.
	MaxPending int
	// MaxPendingPerIP is the most pending connections (see MaxPending)
	// from one source address, an IPv6 /64 counting as one address;
	// beyond, new connections from it are closed as soon as accepted.
	// Default 64.
	MaxPendingPerIP int
	// FirstByteTimeout is how long a new connection has to send its
	// first byte (the TLS ClientHello). Default 3 s.
	FirstByteTimeout time.Duration
	// HandshakeTimeout is how long a new connection has to finish the
	// TLS handshake, from accept. Default 5 s; never more than
	// ConnectTimeout.
	HandshakeTimeout time.Duration
	// ConnectRate and ConnectBurst bound each device's CONNECTs a second
	// (a token bucket kept across its connections); a CONNECT beyond is
	// refused (v5 CONNACK 0x9F connection rate exceeded, v3 0x03 server
	// unavailable). Default 1/s with bursts of 10; a negative rate
	// disables the limit.
	ConnectRate  float64
	ConnectBurst int
	// MaxTopicLength is the longest topic, in bytes, a device may
	// publish to (Will topics included). Default 256, as AWS IoT Core;
	// negative disables the limit.
	MaxTopicLength int
	// MaxFilterLength is the longest topic filter, in bytes, a device may
	// subscribe to. Default 256; negative disables the limit.
	MaxFilterLength int
	// MaxSubscriptions is the most subscriptions a session may hold; the
	// filters of a SUBSCRIBE beyond are refused (SUBACK 0x97 quota
	// exceeded, 0x80 for MQTT 3.1.1). Default 100; negative disables the
	// limit.
	MaxSubscriptions int
	// TopicAliasMaximum is the number of v5 topic aliases a device may
	// set. Default 16; negative disables topic aliases.
	TopicAliasMaximum int
	// SessionExpiry is the longest a persistent session (clean start /
	// clean session false) is kept while its device is away. Default 7
	// days.
	SessionExpiry time.Duration

	// Logger receives the gateway's logs. Nil discards them.
	Logger *slog.Logger
	// Registerer, if set, gets the gateway's Metrics registered on it.
	Registerer prometheus.Registerer
	// Now is the gateway's clock: envelope and shadow timestamps, rate
	// limits, and the validity of device certificates, at the handshake
	// and when the sessions of expired certificates are closed. Network
	// deadlines, and the session expiry mochi applies, use the system
	// clock. Default time.Now.
	Now func() time.Time
}

// Defaults.
const (
	DefaultAddr              = ":8883"
	DefaultConnectTimeout    = 10 * time.Second
	DefaultMaxPacketSize     = 256 << 10
	DefaultMessageRate       = 1000
	DefaultMessageBurst      = 2000
	DefaultByteRate          = 1 << 20
	DefaultByteBurst         = 2 << 20
	DefaultMaxConnections    = 50000
	DefaultMaxPending        = 1024
	DefaultMaxPendingPerIP   = 64
	DefaultFirstByteTimeout  = 3 * time.Second
	DefaultHandshakeTimeout  = 5 * time.Second
	DefaultConnectRate       = 1
	DefaultConnectBurst      = 10
	DefaultMaxTopicLength    = 256
	DefaultMaxFilterLength   = 256
	DefaultMaxSubscriptions  = 100
	DefaultTopicAliasMaximum = 16
	DefaultSessionExpiry     = 7 * 24 * time.Hour
)

// MaxInflight is the most messages to one device a session holds, in
// flight (sent, not yet acknowledged) or waiting for the device's Receive
// Maximum or for it to come back; a QoS 1 or 2 update beyond is dropped
// and counted (weft_gateway_downlink_dropped_total, inflight_cap).
const MaxInflight = 1024

// withDefaults returns cfg with defaults applied, or an error if it is
// not usable.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.Store == nil {
		return cfg, errors.New("gateway: config: Store is required")
	}
	if cfg.Certificate == nil {
		return cfg, errors.New("gateway: config: Certificate is required")
	}
	if cfg.DeviceCAs == nil {
		return cfg, errors.New("gateway: config: DeviceCAs is required")
	}
	if cfg.Name == "" {
		cfg.Name = cfg.Store.Name()
	}
	if !certs.ValidName(cfg.Name) {
		return cfg, fmt.Errorf("gateway: config: invalid name %q", cfg.Name)
	}
	if cfg.Site == "" {
		cfg.Site = cfg.Name
	}
	if !certs.ValidName(cfg.Site) {
		return cfg, fmt.Errorf("gateway: config: invalid site %q", cfg.Site)
	}
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.MaxPacketSize <= 0 {
		cfg.MaxPacketSize = DefaultMaxPacketSize
	}
	if cfg.MaxPacketSize < 64 || cfg.MaxPacketSize > 256<<20 {
		return cfg, fmt.Errorf("gateway: config: MaxPacketSize %d out of range", cfg.MaxPacketSize)
	}
	if cfg.MessageRate == 0 {
		cfg.MessageRate = DefaultMessageRate
	}
	if cfg.MessageBurst <= 0 {
		cfg.MessageBurst = max(DefaultMessageBurst, int(cfg.MessageRate))
	}
	if cfg.ByteRate == 0 {
		cfg.ByteRate = DefaultByteRate
	}
	if cfg.ByteBurst <= 0 {
		cfg.ByteBurst = max(DefaultByteBurst, int(cfg.ByteRate))
	}
	cfg.ByteBurst = max(cfg.ByteBurst, cfg.MaxPacketSize)
	if cfg.MaxConnections <= 0 {
		cfg.MaxConnections = DefaultMaxConnections
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = DefaultMaxPending
	}
	if cfg.MaxPendingPerIP <= 0 {
		cfg.MaxPendingPerIP = DefaultMaxPendingPerIP
	}
	cfg.MaxPendingPerIP = min(cfg.MaxPendingPerIP, cfg.MaxPending)
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	cfg.HandshakeTimeout = min(cfg.HandshakeTimeout, cfg.ConnectTimeout)
	if cfg.FirstByteTimeout <= 0 {
		cfg.FirstByteTimeout = DefaultFirstByteTimeout
	}
	cfg.FirstByteTimeout = min(cfg.FirstByteTimeout, cfg.HandshakeTimeout)
	if cfg.ConnectRate == 0 {
		cfg.ConnectRate = DefaultConnectRate
	}
	if cfg.ConnectBurst <= 0 {
		cfg.ConnectBurst = max(DefaultConnectBurst, int(cfg.ConnectRate))
	}
	cfg.MaxTopicLength = limitOrDefault(cfg.MaxTopicLength, DefaultMaxTopicLength)
	cfg.MaxFilterLength = limitOrDefault(cfg.MaxFilterLength, DefaultMaxFilterLength)
	cfg.MaxSubscriptions = limitOrDefault(cfg.MaxSubscriptions, DefaultMaxSubscriptions)
	switch {
	case cfg.TopicAliasMaximum == 0:
		cfg.TopicAliasMaximum = DefaultTopicAliasMaximum
	case cfg.TopicAliasMaximum < 0:
		cfg.TopicAliasMaximum = 0
	case cfg.TopicAliasMaximum > 65535:
		cfg.TopicAliasMaximum = 65535
	}
	if cfg.SessionExpiry <= 0 {
		cfg.SessionExpiry = DefaultSessionExpiry
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return cfg, nil
}

// limitOrDefault is v, def for 0, and no limit (the largest int) for a
// negative v.
func limitOrDefault(v, def int) int {
	switch {
	case v == 0:
		return def
	case v < 0:
		return math.MaxInt
	}
	return v
}
