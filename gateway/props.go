package gateway

import (
	"encoding/base64"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/mochi-mqtt/server/v2/packets"
)

// Headers carrying the MQTT 5 properties and flags of a device's PUBLISH
// in its envelope, and of a message of /updates/down the properties it
// goes out with. Each is set only when the PUBLISH has the property.
const (
	HeaderContentType     = "content_type"     // Content Type
	HeaderPayloadFormat   = "payload_format"   // Payload Format Indicator: "0" bytes, "1" UTF-8
	HeaderMessageExpiry   = "message_expiry"   // Message Expiry Interval, in seconds
	HeaderResponseTopic   = "response_topic"   // Response Topic
	HeaderCorrelationData = "correlation_data" // Correlation Data, base64 (standard, padded)
)

// UserPropertyPrefix is put before the name of each MQTT 5 user property
// of a device's PUBLISH to make its header: user property unit=C is the
// header user.unit. Weft's own header names are lowercase words joined by
// "_", never with a ".", so no user property can stand for one of them.
// A name sent more than once keeps all its values, in order, joined by
// a NUL character (which MQTT forbids in a string, [MQTT-1.5.4-2]); a
// property holding a NUL is left out.
const UserPropertyPrefix = "user."

// publishHeaders returns the headers a device's PUBLISH adds to its
// envelope: its MQTT 5 properties (mochi decodes none for MQTT 3.1.1)
// and its retain flag (HeaderRetain "true": only an MQTT 3.1.1 Will is
// stored with it, retained publishes are refused). It returns nil when
// there are none.
func publishHeaders(pk packets.Packet) map[string]string {
	var h map[string]string
	set := func(k, v string) {
		if h == nil {
			h = map[string]string{}
		}
		h[k] = v
	}
	p := pk.Properties
	for _, u := range p.User {
		if strings.ContainsRune(u.Key+u.Val, 0) {
			continue
		}
		k := UserPropertyPrefix + u.Key
		if old, ok := h[k]; ok {
			set(k, old+"\x00"+u.Val)
		} else {
			set(k, u.Val)
		}
	}
	if p.ContentType != "" {
		set(HeaderContentType, p.ContentType)
	}
	if p.PayloadFormatFlag {
		set(HeaderPayloadFormat, strconv.Itoa(int(p.PayloadFormat)))
	}
	if p.MessageExpiryInterval > 0 {
		set(HeaderMessageExpiry, strconv.FormatUint(uint64(p.MessageExpiryInterval), 10))
	}
	if p.ResponseTopic != "" {
		set(HeaderResponseTopic, p.ResponseTopic)
	}
	if len(p.CorrelationData) > 0 {
		set(HeaderCorrelationData, base64.StdEncoding.EncodeToString(p.CorrelationData))
	}
	if pk.FixedHeader.Retain {
		set(HeaderRetain, "true")
	}
	return h
}

// downProperties returns the MQTT 5 properties a message of /updates/down
// goes out with: content_type, response_topic and correlation_data
// (base64) as the properties of those names, every other header that
// does not steer the delivery as a user property (userProperties). A
// header that cannot be its property (a response topic with wildcards,
// correlation data that is not base64, a string that is not valid UTF-8)
// goes out as a user property instead, or not at all if it cannot be one
// either.
func downProperties(h map[string]string) packets.Properties {
	var p packets.Properties
	rest := make(map[string]string, len(h))
	for k, v := range h {
		switch k {
		case HeaderContentType:
			if validString(v) {
				p.ContentType = v
				continue
			}
		case HeaderResponseTopic:
			if validString(v) && v != "" && !strings.ContainsAny(v, "+#") { // [MQTT-3.3.2-14]
				p.ResponseTopic = v
				continue
			}
		case HeaderCorrelationData:
			if b, err := base64.StdEncoding.DecodeString(v); err == nil && len(b) > 0 && len(b) <= 65535 {
				p.CorrelationData = b
				continue
			}
		}
		rest[k] = v
	}
	p.User = userProperties(rest)
	return p
}

// validString reports whether s can be an MQTT UTF-8 string.
func validString(s string) bool {
	return len(s) <= 65535 && utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}
