package gateway

import (
	"strings"
	"unicode/utf8"
)

// Device is who an ACL decision is made for: the id and class read from a
// device's verified certificate.
type Device struct {
	ID    string
	Class string
}

// Op is what a device asks to do with a topic.
type Op uint8

const (
	// OpPublish is a publish to a topic name; Will messages are checked
	// as publishes too.
	OpPublish Op = iota
	// OpSubscribe is a subscription to a topic filter, and also the
	// delivery of a message on a topic name to a subscriber (a topic name
	// is a filter without wildcards).
	OpSubscribe
)

// ACL refusal reasons, the `reason` label of the ACL refusal counter.
const (
	ReasonEmpty       = "empty"             // empty topic or filter
	ReasonInvalid     = "invalid"           // malformed: bad UTF-8, NUL, misplaced wildcard, empty level
	ReasonWildcard    = "wildcard"          // a wildcard in a publish, or where the device's own id or class belongs
	ReasonShared      = "shared"            // a $share/... subscription
	ReasonSystem      = "system"            // a $-topic such as $SYS
	ReasonOtherDevice = "other_device"      // the topic of another device
	ReasonOtherClass  = "other_class"       // the updates of another class
	ReasonNotAllowed  = "not_allowed"       // outside the device's topics
	ReasonTopicAlias  = "topic_alias"       // a v5 topic alias that names no topic
	ReasonTopicLength = "topic_length"      // a topic longer than MaxTopicLength, a filter longer than MaxFilterLength
	ReasonMaxSubs     = "max_subscriptions" // a subscription beyond MaxSubscriptions
)

// Allow decides whether device d may do op with topic, as DESIGN.md §5
// says. A device publishes only to
//
//	devices/<id>/telemetry[/<channel>...]
//	devices/<id>/events[/<kind>...]
//	devices/<id>/shadow/reported
//	devices/<id>/firmware/status
//	devices/<id>/firmware/chunks/request
//	devices/<id>/commands/<request-id>/response
//
// and subscribes only to updates/all/#, updates/class/<class>/# and
// updates/device/<id>/#, or to narrower filters inside them. Anything
// else, any wildcard in a publish, $share/... and $-topics are refused.
// It returns "" when allowed and the refusal reason otherwise.
//
// Allow is pure: it looks at nothing but its arguments.
func Allow(d Device, op Op, topic string) (reason string) {
	switch {
	case topic == "":
		return ReasonEmpty
	case !utf8.ValidString(topic) || strings.IndexByte(topic, 0) >= 0:
		return ReasonInvalid
	case d.ID == "" || d.Class == "":
		return ReasonNotAllowed
	}
	if op == OpPublish {
		return allowPublish(d, topic)
	}
	return allowSubscribe(d, topic)
}

func allowPublish(d Device, topic string) string {
	if strings.ContainsAny(topic, "+#") {
		return ReasonWildcard
	}
	if topic[0] == '$' {
		return ReasonSystem
	}
	levels := strings.Split(topic, "/")
	for _, l := range levels {
		if l == "" {
			return ReasonInvalid
		}
	}
	if levels[0] != "devices" || len(levels) < 3 {
		return ReasonNotAllowed
	}
	if levels[1] != d.ID {
		return ReasonOtherDevice
	}
	switch levels[2] {
	case "telemetry", "events":
		return ""
	case "shadow":
		if len(levels) == 4 && levels[3] == "reported" {
			return ""
		}
	case "firmware":
		if len(levels) == 4 && levels[3] == "status" ||
			len(levels) == 5 && levels[3] == "chunks" && levels[4] == "request" {
			return ""
		}
	case "commands":
		// The answer to a command: the request id is any one level.
		if len(levels) == 5 && levels[4] == "response" {
			return ""
		}
	}
	return ReasonNotAllowed
}

func allowSubscribe(d Device, filter string) string {
	if hasSharePrefix(filter) {
		return ReasonShared
	}
	if filter[0] == '$' {
		return ReasonSystem
	}
	levels := strings.Split(filter, "/")
	for i, l := range levels {
		if strings.ContainsAny(l, "+#") && l != "+" && l != "#" {
			return ReasonInvalid
		}
		if l == "#" && i != len(levels)-1 {
			return ReasonInvalid
		}
	}
	switch levels[0] {
	case "updates":
	case "+", "#":
		return ReasonWildcard
	default:
		return ReasonNotAllowed
	}
	if len(levels) < 2 {
		return ReasonNotAllowed
	}
	var own, other string
	switch levels[1] {
	case "all":
		return ""
	case "class":
		own, other = d.Class, ReasonOtherClass
	case "device":
		own, other = d.ID, ReasonOtherDevice
	case "+", "#":
		return ReasonWildcard
	default:
		return ReasonNotAllowed
	}
	switch {
	case len(levels) < 3:
		return ReasonNotAllowed
	case levels[2] == "+" || levels[2] == "#":
		return ReasonWildcard
	case levels[2] != own:
		return other
	}
	return ""
}

// hasSharePrefix reports whether filter is a shared subscription, with
// the prefix in any case (as mochi compares it).
func hasSharePrefix(filter string) bool {
	const p = "$share/"
	return len(filter) >= len(p) && strings.EqualFold(filter[:len(p)], p) ||
		strings.EqualFold(filter, "$share")
}
