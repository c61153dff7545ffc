package gateway

import (
	"encoding/base64"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

var publishHeadersTests = []struct {
	name string
	pk   packets.Packet
	want map[string]string
}{
	{"none", packets.Packet{}, nil},
	{"user properties", packets.Packet{Properties: packets.Properties{User: []packets.UserProperty{
		{Key: "unit", Val: "C"}, {Key: "device", Val: "spoof"}, {Key: "", Val: "empty name"},
	}}}, map[string]string{"user.unit": "C", "user.device": "spoof", "user.": "empty name"}},
	{"repeated user property", packets.Packet{Properties: packets.Properties{User: []packets.UserProperty{
		{Key: "tag", Val: "a"}, {Key: "x", Val: "1"}, {Key: "tag", Val: "b,c"},
	}}}, map[string]string{"user.tag": "a\x00b,c", "user.x": "1"}},
	{"user property with NUL", packets.Packet{Properties: packets.Properties{User: []packets.UserProperty{
		{Key: "a\x00", Val: "1"}, {Key: "b", Val: "\x00"},
	}}}, nil},
	{"content type", packets.Packet{Properties: packets.Properties{ContentType: "application/json"}},
		map[string]string{HeaderContentType: "application/json"}},
	{"payload format bytes", packets.Packet{Properties: packets.Properties{PayloadFormatFlag: true}},
		map[string]string{HeaderPayloadFormat: "0"}},
	{"payload format UTF-8", packets.Packet{Properties: packets.Properties{PayloadFormat: 1, PayloadFormatFlag: true}},
		map[string]string{HeaderPayloadFormat: "1"}},
	{"payload format without its flag", packets.Packet{Properties: packets.Properties{PayloadFormat: 1}}, nil},
	{"message expiry", packets.Packet{Properties: packets.Properties{MessageExpiryInterval: 4294967295}},
		map[string]string{HeaderMessageExpiry: "4294967295"}},
	{"response topic and correlation data", packets.Packet{Properties: packets.Properties{
		ResponseTopic: "devices/d/commands/1/response", CorrelationData: []byte{0, 0xff, 'r'},
	}}, map[string]string{HeaderResponseTopic: "devices/d/commands/1/response", HeaderCorrelationData: "AP9y"}},
	{"retain", packets.Packet{FixedHeader: packets.FixedHeader{Retain: true}}, map[string]string{HeaderRetain: "true"}},
	{"ignored properties", packets.Packet{Properties: packets.Properties{TopicAlias: 3, TopicAliasFlag: true, SubscriptionIdentifier: []int{1}}}, nil},
}

func TestPublishHeaders(t *testing.T) {
	for _, tc := range publishHeadersTests {
		t.Run(tc.name, func(t *testing.T) {
			if got := publishHeaders(tc.pk); !maps.Equal(got, tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestPublishHeadersNoCollision: no property makes a header of Weft's own.
func TestPublishHeadersNoCollision(t *testing.T) {
	own := []string{HeaderDevice, HeaderClass, HeaderGateway, HeaderTopic, HeaderQoS, HeaderReceived, HeaderWill}
	for _, tc := range publishHeadersTests {
		for k := range publishHeaders(tc.pk) {
			if slices.Contains(own, k) {
				t.Errorf("%s: header %q is one of the envelope's", tc.name, k)
			}
		}
	}
}

func FuzzPublishHeaders(f *testing.F) {
	for _, tc := range publishHeadersTests {
		var k, v string
		if len(tc.pk.Properties.User) > 0 {
			k, v = tc.pk.Properties.User[0].Key, tc.pk.Properties.User[0].Val
		}
		f.Add(k, v, tc.pk.Properties.ContentType, tc.pk.Properties.ResponseTopic, tc.pk.Properties.CorrelationData, tc.pk.FixedHeader.Retain)
	}
	f.Fuzz(func(t *testing.T, k, v, ct, rt string, cd []byte, retain bool) {
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Retain: retain}, Properties: packets.Properties{
			User: []packets.UserProperty{{Key: k, Val: v}, {Key: k, Val: v}}, ContentType: ct, ResponseTopic: rt, CorrelationData: cd,
		}}
		h := publishHeaders(pk)
		for name := range h {
			switch name {
			case HeaderContentType, HeaderResponseTopic, HeaderCorrelationData, HeaderRetain:
			default:
				if !strings.HasPrefix(name, UserPropertyPrefix) {
					t.Fatalf("header %q", name)
				}
			}
		}
		if got, ok := h[UserPropertyPrefix+k]; ok != !strings.ContainsRune(k+v, 0) || ok && got != v+"\x00"+v {
			t.Fatalf("user property %q=%q: header %q (%v)", k, v, got, ok)
		}
		if len(cd) > 0 {
			b, err := base64.StdEncoding.DecodeString(h[HeaderCorrelationData])
			if err != nil || string(b) != string(cd) {
				t.Fatalf("correlation data %q: header %q", cd, h[HeaderCorrelationData])
			}
		}
	})
}

func TestDownProperties(t *testing.T) {
	for _, tc := range []struct {
		name    string
		headers map[string]string
		want    packets.Properties
	}{
		{"none", nil, packets.Properties{}},
		{"steering headers only", map[string]string{HeaderSubtopic: "x", HeaderDownQoS: "2", HeaderRetain: "false"}, packets.Properties{}},
		{"properties", map[string]string{
			HeaderContentType: "text/plain", HeaderResponseTopic: "devices/d/commands/1/response", HeaderCorrelationData: "AP9y", "trace": "t",
		}, packets.Properties{
			ContentType: "text/plain", ResponseTopic: "devices/d/commands/1/response", CorrelationData: []byte{0, 0xff, 'r'},
			User: []packets.UserProperty{{Key: "trace", Val: "t"}},
		}},
		{"shadow version", map[string]string{HeaderShadowVersion: "3", "b": "2", "a": "1"}, packets.Properties{
			User: []packets.UserProperty{{Key: "a", Val: "1"}, {Key: "b", Val: "2"}, {Key: PropertyVersion, Val: "3"}},
		}},
		{"wildcard response topic", map[string]string{HeaderResponseTopic: "devices/+/x"}, packets.Properties{
			User: []packets.UserProperty{{Key: HeaderResponseTopic, Val: "devices/+/x"}},
		}},
		{"correlation data not base64", map[string]string{HeaderCorrelationData: "r1"}, packets.Properties{
			User: []packets.UserProperty{{Key: HeaderCorrelationData, Val: "r1"}},
		}},
		{"content type not UTF-8", map[string]string{HeaderContentType: "\xff"}, packets.Properties{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := downProperties(tc.headers)
			if got.ContentType != tc.want.ContentType || got.ResponseTopic != tc.want.ResponseTopic ||
				string(got.CorrelationData) != string(tc.want.CorrelationData) || !slices.Equal(got.User, tc.want.User) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}
