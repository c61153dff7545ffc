package models

import "time"

// An edge reports what it does with each model in records appended to its
// /uplink/events (topic: the edge's name, key: the model's name), which
// reach the core like its detections; the core reads each edge's latest.
const (
	// RecordStatus is the value of the record header "type"
	// (anomaly.RecordHeader) of a StatusRecord.
	RecordStatus = "model_status"
)

// Edge states of a version.
const (
	// StateRunning: the edge verified the version and scores with it.
	StateRunning = "running"
	// StateRefused: the edge refused it (Reason says why).
	StateRefused = "refused"
	// StateStopped: the edge verified it but does not run it (retired,
	// or no device of its class).
	StateStopped = "stopped"
)

// EdgeState is what one edge does with one version of a model.
type EdgeState struct {
	State string `json:"state"`
	// Scored counts the readings it scored.
	Scored int64 `json:"scored"`
	// Agreement is the share of readings on which the version's detection
	// agreed with the built-in defaults' (the canary); 0 before any.
	Agreement float64 `json:"agreement"`
	// Drift is the largest distance between a channel's recent readings
	// and its training summary: how far the median moved, in units of the
	// training's 1st-99th percentile range (0: none).
	Drift float64 `json:"drift"`
	// AgreementLive is, for a version not used, the share of readings on
	// which its detection agreed with the answer used (the schedule's
	// pick, a live version); 0 before any.
	AgreementLive float64 `json:"agreement_live"`
	// Used counts the readings whose answer was this version's.
	Used int64 `json:"used"`
	// DetectionsPerHour is its detections per hour of readings' time.
	DetectionsPerHour float64 `json:"detections_per_hour"`
	// LatencyMicros is its mean time to answer a reading, in microseconds.
	LatencyMicros float64 `json:"latency_us"`
	// Faults counts its answers that were slow, panicked or garbage (each
	// isolated it).
	Faults int64 `json:"faults"`
	// Isolated is set while it is not asked after a fault.
	Isolated bool `json:"isolated,omitempty"`
	// Reason is why it was refused (a Reason), empty otherwise.
	Reason string `json:"reason,omitempty"`
	// Detail explains the reason for a person.
	Detail string `json:"detail,omitempty"`
}

// StatusRecord is an edge's report on one model.
type StatusRecord struct {
	Type  string    `json:"type"` // RecordStatus
	Edge  string    `json:"edge"`
	Model string    `json:"model"`
	Class string    `json:"class,omitempty"`
	At    time.Time `json:"at"`
	// Versions maps a version (decimal) to the edge's state of it.
	Versions map[string]EdgeState `json:"versions"`
}

// The rendezvous's records. Every result of every version is a
// ScoreRecord in the edge's ScoresStream (local: it is the size of the
// telemetry times the versions); what goes up in /uplink/events is the
// detections of the answer used (anomaly.RecordAnomaly, detector
// "<name>@<version>/<detector>") and one SummaryRecord per version and
// minute.
const (
	// ScoresStream holds every result on the edge (topic: the edge's
	// name, key: the device).
	ScoresStream = "/telemetry/scores"
	// RecordScore is the header "type" of a ScoreRecord.
	RecordScore = "model_score"
	// RecordSummary is the header "type" of a SummaryRecord.
	RecordSummary = "model_summary"
)

// ScoreRecord is one version's result for one reading.
type ScoreRecord struct {
	Type     string    `json:"type"` // RecordScore
	Device   string    `json:"device"`
	Class    string    `json:"class"`
	Model    string    `json:"model"`
	Version  uint64    `json:"version"`
	Stage    string    `json:"stage"`
	Score    float64   `json:"score"`
	Detected bool      `json:"detected,omitempty"`
	Latency  float64   `json:"latency_us"`
	Fault    string    `json:"fault,omitempty"`
	Used     bool      `json:"used,omitempty"` // the answer used
	At       time.Time `json:"at"`
}

// SummaryRecord is one version's results over one minute of readings.
type SummaryRecord struct {
	Type       string    `json:"type"` // RecordSummary
	Edge       string    `json:"edge"`
	Class      string    `json:"class"`
	Model      string    `json:"model"`
	Version    uint64    `json:"version"`
	Stage      string    `json:"stage"`
	From       time.Time `json:"from"` // the minute
	Scored     int64     `json:"scored"`
	Used       int64     `json:"used"`
	Detections int64     `json:"detections"`
	Faults     int64     `json:"faults"`
	MaxScore   float64   `json:"max_score"`
	Latency    float64   `json:"latency_us"` // mean
}
