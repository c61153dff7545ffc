package firmware

import (
	"encoding/json"
	"fmt"
	"strings"
)

// MaxStatusSize bounds a device's status report.
const MaxStatusSize = 4 << 10

// StatusReport is what a device publishes to devices/<id>/firmware/status
// at every step of an update: the rollout (as announced) or the release
// it concerns, the step, and why, when it went wrong.
type StatusReport struct {
	Rollout string `json:"rollout,omitempty"`
	Release string `json:"release,omitempty"`
	State   string `json:"state"`
	Reason  string `json:"reason,omitempty"`
}

// statusStates maps the steps a device reports to the rollout's device
// states: the downloading and installing steps, and the outcomes.
var statusStates = map[string]DeviceState{
	"downloading":  Downloading,
	"downloaded":   Downloading,
	"verifying":    Downloading,
	"verified":     Downloading,
	"installing":   Installing,
	"installed":    Installing,
	"rebooting":    Installing,
	"health_check": Installing,
	"succeeded":    Succeeded,
	"committed":    Succeeded,
	"failed":       Failed,
	"rolled_back":  Failed,
	"rejected":     Rejected,
}

// ParseStatus reads a device's status report and the device state it
// means for a rollout. It names a rollout or a release, and a known step.
func ParseStatus(b []byte) (StatusReport, DeviceState, error) {
	var s StatusReport
	if len(b) > MaxStatusSize {
		return s, "", fmt.Errorf("firmware: status report larger than %d bytes", MaxStatusSize)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, "", fmt.Errorf("firmware: status report: %v", err)
	}
	if s.Rollout == "" && s.Release == "" {
		return s, "", fmt.Errorf("firmware: status report names neither rollout nor release")
	}
	st, ok := statusStates[strings.ToLower(s.State)]
	if !ok {
		return s, "", fmt.Errorf("firmware: status report: unknown state %q", s.State)
	}
	return s, st, nil
}

// Concerns reports whether a status report is about rollout r: it names
// r, or names no rollout but r's release.
func (s *StatusReport) Concerns(r *Rollout) bool {
	if s.Rollout != "" {
		return s.Rollout == r.ID
	}
	return s.Release == r.Spec.Release
}
