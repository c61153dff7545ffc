package alarm

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"
)

// Types of alarm.
const (
	DeviceOffline = "device_offline" // no message from a device for Settings.DeviceOfflineAfter
	LinkDown      = "link_down"      // a sync link down for Settings.LinkDownAfter
	Anomaly       = "anomaly"        // a device's telemetry was found anomalous
	DiskLow       = "disk_low"       // free space below Settings.DiskFreeBelow
	RolloutHalted = "rollout_halted" // a firmware rollout halted on its failures
	CertExpiring  = "cert_expiring"  // a certificate expires within Settings.CertExpiryWithin
	CertMissing   = "cert_missing"   // a certificate file of the node cannot be read
	Clock         = "clock"          // the system clock is behind the store's time floor, or jumped forward unconfirmed
	StoreDamaged  = "store_damaged"  // a stream holds ranges quarantined as damaged (or recorded as gaps its source quarantined)
	ModelDrift    = "model_drift"    // a running model's drift past Config.ModelDriftAbove
)

// Types lists every alarm type.
var Types = []string{DeviceOffline, LinkDown, Anomaly, DiskLow, RolloutHalted, CertExpiring, CertMissing, Clock, StoreDamaged, ModelDrift}

// States of an alarm.
const (
	Active       = "active"
	Acknowledged = "acknowledged"
	Cleared      = "cleared"
)

// States lists every state.
var States = []string{Active, Acknowledged, Cleared}

// Severities, from the worst.
const (
	Critical = "critical"
	Major    = "major"
	Minor    = "minor"
	Warning  = "warning"
)

// Events: what last happened to an alarm. Webhooks are told of the first
// three.
const (
	EventRaised       = "raised"
	EventAcknowledged = "acknowledged"
	EventCleared      = "cleared"
	EventUpdated      = "updated" // details or severity changed
)

// Alarm is an alarm as the API answers it and webhooks receive it.
type Alarm struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Severity string `json:"severity"`
	State    string `json:"state"`
	// Device is the device the alarm is about, if any.
	Device string `json:"device"`
	// Edge is the edge the alarm is about or came from (the node that
	// raised it).
	Edge         string          `json:"edge"`
	Raised       time.Time       `json:"raised"`
	Acknowledged *time.Time      `json:"acknowledged"`
	Cleared      *time.Time      `json:"cleared"`
	Details      json.RawMessage `json:"details"`
}

// Record is an alarm as the table holds it: the alarm, the condition it
// is raised for (one open alarm per key and node) and what last happened
// to it.
type Record struct {
	Alarm
	// Key names the condition: type and what it is about
	// ("device_offline/pump-7").
	Key string `json:"key"`
	// Node is the node that raised it.
	Node string `json:"node"`
	// Event is what the last write did (EventRaised, ...); By who did it
	// (an API subject; empty for the node itself).
	Event string `json:"event"`
	By    string `json:"by,omitempty"`
	// At is when the last event happened.
	At time.Time `json:"at"`
}

// Open reports whether the alarm is not cleared.
func (a *Alarm) Open() bool { return a.State != Cleared }

// NewID is the id of the alarm raised by node for key at raised.
func NewID(node, key string, raised time.Time) string {
	h := sha256.Sum256([]byte(node + "\x00" + key + "\x00" + raised.UTC().Format(time.RFC3339Nano)))
	return hex.EncodeToString(h[:8])
}

// Settings are the thresholds of the alarms and where they are sent. Its
// JSON form is the body of GET and PUT /api/v1/alarm-settings; durations
// are Go durations ("5m"), DiskFreeBelow a percentage.
type Settings struct {
	DeviceOfflineAfter Duration  `json:"device_offline_after"`
	LinkDownAfter      Duration  `json:"link_down_after"`
	DiskFreeBelow      float64   `json:"disk_free_below"`
	CertExpiryWithin   Duration  `json:"cert_expiry_within"`
	Webhooks           []Webhook `json:"webhooks"`
}

// Webhook is where alarms are posted: URL, with the body signed by an
// HMAC-SHA256 keyed with Secret.
type Webhook struct {
	URL    string `json:"url"`
	Secret string `json:"secret"`
}

// Defaults of Settings.
const (
	DefaultDeviceOfflineAfter = 5 * time.Minute
	DefaultLinkDownAfter      = 2 * time.Minute
	DefaultDiskFreeBelow      = 10.0
	DefaultCertExpiryWithin   = 720 * time.Hour
	// MaxWebhooks is the most webhooks Settings may name.
	MaxWebhooks = 16
)

// DefaultSettings are the settings of a node that was given none.
func DefaultSettings() Settings {
	return Settings{
		DeviceOfflineAfter: Duration(DefaultDeviceOfflineAfter),
		LinkDownAfter:      Duration(DefaultLinkDownAfter),
		DiskFreeBelow:      DefaultDiskFreeBelow,
		CertExpiryWithin:   Duration(DefaultCertExpiryWithin),
		Webhooks:           []Webhook{},
	}
}

// ErrInvalid is the error of settings that cannot be used.
var ErrInvalid = errors.New("alarm: invalid settings")

// Check returns the settings with zero members set to their defaults, or
// an error wrapping ErrInvalid saying what is wrong.
func (s Settings) Check() (Settings, error) {
	d := DefaultSettings()
	if s.DeviceOfflineAfter == 0 {
		s.DeviceOfflineAfter = d.DeviceOfflineAfter
	}
	if s.LinkDownAfter == 0 {
		s.LinkDownAfter = d.LinkDownAfter
	}
	if s.DiskFreeBelow == 0 {
		s.DiskFreeBelow = d.DiskFreeBelow
	}
	if s.CertExpiryWithin == 0 {
		s.CertExpiryWithin = d.CertExpiryWithin
	}
	if s.Webhooks == nil {
		s.Webhooks = []Webhook{}
	}
	switch {
	case s.DeviceOfflineAfter < Duration(time.Second) || s.LinkDownAfter < Duration(time.Second) || s.CertExpiryWithin < Duration(time.Second):
		return s, fmt.Errorf("%w: durations must be at least 1s", ErrInvalid)
	case s.DiskFreeBelow < 0 || s.DiskFreeBelow >= 100:
		return s, fmt.Errorf("%w: disk_free_below is a percentage, 0 to 100", ErrInvalid)
	case len(s.Webhooks) > MaxWebhooks:
		return s, fmt.Errorf("%w: at most %d webhooks", ErrInvalid, MaxWebhooks)
	}
	seen := map[string]bool{}
	for _, w := range s.Webhooks {
		u, err := url.Parse(w.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return s, fmt.Errorf("%w: webhook url %q: want an absolute http or https URL", ErrInvalid, w.URL)
		}
		if seen[w.URL] {
			return s, fmt.Errorf("%w: webhook url %q given twice", ErrInvalid, w.URL)
		}
		seen[w.URL] = true
		if w.Secret == "" || len(w.Secret) > 1024 {
			return s, fmt.Errorf("%w: webhook %q needs a secret of 1 to 1024 bytes", ErrInvalid, w.URL)
		}
	}
	return s, nil
}

// SecretMask replaces webhook secrets in settings that are shown; a PUT
// that sends it back keeps the secret stored for that URL.
const SecretMask = "********"

// Masked returns the settings with every secret replaced by SecretMask.
func (s Settings) Masked() Settings {
	out := s
	out.Webhooks = make([]Webhook, len(s.Webhooks))
	for i, w := range s.Webhooks {
		out.Webhooks[i] = Webhook{URL: w.URL, Secret: SecretMask}
	}
	return out
}

// Unmask returns s with each SecretMask secret replaced by old's secret of
// the same URL (left as it is when old has none: Check refuses it then).
func (s Settings) Unmask(old Settings) Settings {
	out := s
	out.Webhooks = make([]Webhook, len(s.Webhooks))
	for i, w := range s.Webhooks {
		if w.Secret == SecretMask {
			for _, o := range old.Webhooks {
				if o.URL == w.URL {
					w.Secret = o.Secret
				}
			}
			if w.Secret == SecretMask {
				w.Secret = ""
			}
		}
		out.Webhooks[i] = w
	}
	return out
}

// Duration is a time.Duration written in JSON as a Go duration string
// ("5m0s"); it also reads integer nanoseconds.
type Duration time.Duration

// MarshalJSON writes d as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a duration string or integer nanoseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n int64
		if json.Unmarshal(b, &n) != nil {
			return fmt.Errorf("%w: duration %s: want a string such as \"5m\"", ErrInvalid, b)
		}
		*d = Duration(n)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%w: duration %q: %v", ErrInvalid, s, err)
	}
	*d = Duration(v)
	return nil
}
