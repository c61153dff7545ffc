package gateway

import (
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
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
	// (a token bucket). Default 1000/s with bursts of 2000; a negative
	// rate disables the limit.
	MessageRate  float64
	MessageBurst int
	// ByteRate and ByteBurst bound each device's payload bytes a second.
	// Default 1 MiB/s with bursts of 2 MiB (the burst is raised to
	// MaxPacketSize if smaller); a negative rate disables the limit.
	ByteRate  float64
	ByteBurst int
	// MaxConnections is the most MQTT sessions connected at once; a
	// CONNECT beyond is refused (v5 0x97 quota exceeded, v3 0x03 server
	// unavailable). Default 50000.
	MaxConnections int
	// MaxPending is the most connections that may be in the TLS
	// handshake or waiting for their CONNECT at once; beyond, new
	// connections are closed as soon as accepted. Default 1024.
	MaxPending int
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
	DefaultTopicAliasMaximum = 16
	DefaultSessionExpiry     = 7 * 24 * time.Hour
)

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
