package anomaly

import (
	"encoding/json"
	"time"
)

// What an edge sends to its core of its devices' telemetry (its uplink
// filter): records in /uplink/events, keyed by device id, each with its
// kind in the header RecordHeader.
const (
	RecordHeader  = "type"
	RecordAnomaly = "anomaly" // a Detection
	RecordReading = "reading" // a Reading around a detection
	RecordSummary = "summary" // a Summary of a period
)

// Detection is the record of an anomaly the edge detected, appended to
// /uplink/events (topic: the edge's name), which goes to the core.
type Detection struct {
	Type     string  `json:"type"` // "anomaly"
	Device   string  `json:"device"`
	Class    string  `json:"class,omitempty"`
	Channel  string  `json:"channel"`
	Detector string  `json:"detector"`
	Score    float64 `json:"score"`
	Value    float64 `json:"value"`
	// Values are the readings of a Cluster detection, whose Channel names
	// them all ("flow_lpm+pressure_bar").
	Values map[string]float64 `json:"values,omitempty"`
	At     time.Time          `json:"at"`
}

// Reading is a device's telemetry message sent up as the context of a
// detection.
type Reading struct {
	Type    string          `json:"type"` // "reading"
	Device  string          `json:"device"`
	Topic   string          `json:"topic"`
	At      time.Time       `json:"at"`
	Payload json.RawMessage `json:"payload"`
}

// Summary is a device's readings over one period, per channel.
type Summary struct {
	Type     string                    `json:"type"` // "summary"
	Device   string                    `json:"device"`
	From     time.Time                 `json:"from"`
	To       time.Time                 `json:"to"` // the last reading's time
	Readings int                       `json:"readings"`
	Channels map[string]ChannelSummary `json:"channels"`
}

// ChannelSummary is one channel's part of a Summary.
type ChannelSummary struct {
	Count    int     `json:"count"`
	Min      float64 `json:"min"`
	Max      float64 `json:"max"`
	Mean     float64 `json:"mean"`
	P50      float64 `json:"p50"`
	P95      float64 `json:"p95"`
	MaxScore float64 `json:"max_score"`
}
