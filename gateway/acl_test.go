package gateway

import (
	"strings"
	"testing"
)

var aclDevice = Device{ID: "pump-7", Class: "pump"}

// aclCases feeds TestAllow and seeds FuzzAllow.
var aclCases = []struct {
	op     Op
	topic  string
	reason string
}{
	// Publish: the device's own topics.
	{OpPublish, "devices/pump-7/telemetry", ""},
	{OpPublish, "devices/pump-7/telemetry/temp", ""},
	{OpPublish, "devices/pump-7/telemetry/engine/temp", ""},
	{OpPublish, "devices/pump-7/events", ""},
	{OpPublish, "devices/pump-7/events/alarm", ""},
	{OpPublish, "devices/pump-7/shadow/reported", ""},
	{OpPublish, "devices/pump-7/firmware/status", ""},
	{OpPublish, "devices/pump-7/firmware/chunks/request", ""},
	{OpPublish, "devices/pump-8/firmware/chunks/request", ReasonOtherDevice},
	{OpPublish, "devices/pump-7/firmware/chunks", ReasonNotAllowed},
	{OpPublish, "devices/pump-7/commands/R3QK7ZP2/response", ""},
	{OpPublish, "devices/pump-7/commands/response/response", ""},
	// Publish: refused.
	{OpPublish, "", ReasonEmpty},
	{OpPublish, "devices/pump-8/telemetry", ReasonOtherDevice},
	{OpPublish, "devices/pump-7x/telemetry", ReasonOtherDevice},
	{OpPublish, "devices/PUMP-7/telemetry", ReasonOtherDevice},
	{OpPublish, "devices/+/telemetry", ReasonWildcard},
	{OpPublish, "devices/pump-7/telemetry/#", ReasonWildcard},
	{OpPublish, "devices/pump-7/telemetry/+", ReasonWildcard},
	{OpPublish, "#", ReasonWildcard},
	{OpPublish, "$SYS/broker/load", ReasonSystem},
	{OpPublish, "$share/g/devices/pump-7/telemetry", ReasonSystem},
	{OpPublish, "devices/pump-7", ReasonNotAllowed},
	{OpPublish, "devices/pump-7/", ReasonInvalid},
	{OpPublish, "devices/pump-7//telemetry", ReasonInvalid},
	{OpPublish, "/devices/pump-7/telemetry", ReasonInvalid},
	{OpPublish, "devices/pump-7/telemetry/", ReasonInvalid},
	{OpPublish, "devices/pump-7/shadow/desired", ReasonNotAllowed},
	{OpPublish, "devices/pump-7/shadow/reported/x", ReasonNotAllowed},
	{OpPublish, "devices/pump-7/shadow", ReasonNotAllowed},
	{OpPublish, "devices/pump-7/firmware/status/x", ReasonNotAllowed},
	{OpPublish, "devices/pump-7/firmware", ReasonNotAllowed},
	{OpPublish, "devices/pump-7/config", ReasonNotAllowed},
	{OpPublish, "devices/pump-8/commands/R3QK7ZP2/response", ReasonOtherDevice},
	{OpPublish, "devices/pump-7/commands/+/response", ReasonWildcard},
	{OpPublish, "devices/pump-7/commands/#", ReasonWildcard},
	{OpPublish, "devices/pump-7/commands//response", ReasonInvalid},
	{OpPublish, "devices/pump-7/commands/R3QK7ZP2/response/", ReasonInvalid},
	{OpPublish, "devices/pump-7/commands", ReasonNotAllowed},
	{OpPublish, "devices/pump-7/commands/R3QK7ZP2", ReasonNotAllowed},
	{OpPublish, "devices/pump-7/commands/R3QK7ZP2/answer", ReasonNotAllowed},
	{OpPublish, "devices/pump-7/commands/R3QK7ZP2/response/x", ReasonNotAllowed},
	{OpPublish, "devices/pump-7/commands/ping/R3QK7ZP2", ReasonNotAllowed},
	{OpPublish, "updates/device/pump-7/commands/ping/R3QK7ZP2", ReasonNotAllowed},
	{OpSubscribe, "devices/pump-7/commands/R3QK7ZP2/response", ReasonNotAllowed},
	{OpPublish, "updates/device/pump-7/config", ReasonNotAllowed},
	{OpPublish, "updates/all", ReasonNotAllowed},
	{OpPublish, "telemetry", ReasonNotAllowed},
	{OpPublish, "devices/pump-7/telemetry\x00", ReasonInvalid},
	{OpPublish, "devices/pump-7/telemetry/\xff", ReasonInvalid},
	// Subscribe: the updates the device may receive, and narrower filters.
	{OpSubscribe, "updates/all/#", ""},
	{OpSubscribe, "updates/all", ""},
	{OpSubscribe, "updates/all/config", ""},
	{OpSubscribe, "updates/all/+/x", ""},
	{OpSubscribe, "updates/class/pump/#", ""},
	{OpSubscribe, "updates/class/pump", ""},
	{OpSubscribe, "updates/class/pump/firmware/+", ""},
	{OpSubscribe, "updates/device/pump-7/#", ""},
	{OpSubscribe, "updates/device/pump-7/config", ""},
	{OpSubscribe, "updates/device/pump-7", ""},
	{OpSubscribe, "updates/device/pump-7/+", ""},
	// Subscribe: refused.
	{OpSubscribe, "", ReasonEmpty},
	{OpSubscribe, "#", ReasonWildcard},
	{OpSubscribe, "+", ReasonWildcard},
	{OpSubscribe, "+/#", ReasonWildcard},
	{OpSubscribe, "updates/#", ReasonWildcard},
	{OpSubscribe, "updates/+/pump/#", ReasonWildcard},
	{OpSubscribe, "updates/class/#", ReasonWildcard},
	{OpSubscribe, "updates/class/+/#", ReasonWildcard},
	{OpSubscribe, "updates/device/+/#", ReasonWildcard},
	{OpSubscribe, "updates/device/#", ReasonWildcard},
	{OpSubscribe, "updates/device/pump-8/#", ReasonOtherDevice},
	{OpSubscribe, "updates/device/pump-7x/#", ReasonOtherDevice},
	{OpSubscribe, "updates/class/valve/#", ReasonOtherClass},
	{OpSubscribe, "updates/class", ReasonNotAllowed},
	{OpSubscribe, "updates/device", ReasonNotAllowed},
	{OpSubscribe, "updates", ReasonNotAllowed},
	{OpSubscribe, "updates/other/#", ReasonNotAllowed},
	{OpSubscribe, "devices/+/telemetry", ReasonNotAllowed},
	{OpSubscribe, "devices/pump-7/telemetry", ReasonNotAllowed},
	{OpSubscribe, "devices/#", ReasonNotAllowed},
	{OpSubscribe, "$share/g/updates/all/#", ReasonShared},
	{OpSubscribe, "$SHARE/g/updates/all/#", ReasonShared},
	{OpSubscribe, "$share", ReasonShared},
	{OpSubscribe, "$SYS/#", ReasonSystem},
	{OpSubscribe, "updates/all/#/x", ReasonInvalid},
	{OpSubscribe, "updates/all/x#", ReasonInvalid},
	{OpSubscribe, "updates/all/x+", ReasonInvalid},
	{OpSubscribe, "updates/device/pump-7+/#", ReasonInvalid},
	{OpSubscribe, "updates/all/\x00", ReasonInvalid},
}

func TestAllow(t *testing.T) {
	for _, tc := range aclCases {
		if got := Allow(aclDevice, tc.op, tc.topic); got != tc.reason {
			t.Errorf("Allow(%v, %q) = %q, want %q", tc.op, tc.topic, got, tc.reason)
		}
	}
	// A device without identity may do nothing.
	for _, d := range []Device{{}, {ID: "x"}, {Class: "y"}} {
		if got := Allow(d, OpSubscribe, "updates/all/#"); got == "" {
			t.Errorf("Allow(%+v) allowed", d)
		}
	}
}

// FuzzAllow checks, for any topic, that what Allow lets through is inside
// the device's own topic space as DESIGN.md §5 draws it.
func FuzzAllow(f *testing.F) {
	for _, tc := range aclCases {
		f.Add(byte(tc.op), tc.topic)
	}
	f.Fuzz(func(t *testing.T, op byte, topic string) {
		o := Op(op % 2)
		if Allow(aclDevice, o, topic) != "" {
			return
		}
		if o == OpPublish {
			own := "devices/" + aclDevice.ID + "/"
			if !strings.HasPrefix(topic, own) || strings.ContainsAny(topic, "+#\x00") {
				t.Fatalf("publish to %q allowed", topic)
			}
			rest := topic[len(own):]
			if !(rest == "telemetry" || strings.HasPrefix(rest, "telemetry/") ||
				rest == "events" || strings.HasPrefix(rest, "events/") ||
				rest == "shadow/reported" || rest == "firmware/status" || rest == "firmware/chunks/request" || isResponse(rest)) {
				t.Fatalf("publish to %q allowed", topic)
			}
			return
		}
		inside := false
		for _, base := range []string{"updates/all", "updates/class/" + aclDevice.Class, "updates/device/" + aclDevice.ID} {
			if topic == base || strings.HasPrefix(topic, base+"/") {
				inside = true
			}
		}
		if !inside {
			t.Fatalf("subscription to %q allowed", topic)
		}
	})
}

// isResponse reports whether rest, after devices/<id>/, is the answer to a
// command: commands/<request-id>/response with a non-empty request id of
// one level.
func isResponse(rest string) bool {
	rid, ok := strings.CutPrefix(rest, "commands/")
	if !ok {
		return false
	}
	rid, ok = strings.CutSuffix(rid, "/response")
	return ok && rid != "" && !strings.Contains(rid, "/")
}
