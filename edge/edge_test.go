package edge

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/device"
	"github.com/weft-io/weft/store"
)

// TestEdge runs a whole edge node: a device publishes over mTLS MQTT, the
// message is read back through the HTTP API with a token, an update
// appended through the API reaches the device, and /metrics shows the
// gateway.
func TestEdge(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, certsDir := startTestEdge(t, ctx)
	auth, err := certs.Load(certsDir)
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + n.HTTPAddr().String()
	admin, err := certs.IssueToken(auth.TokenKey, certs.TokenClaims{Subject: "test", Role: certs.RoleAdmin}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	creds, pool, err := device.Credentials(certsDir, []string{"pump-1"}, "pump")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *paho.Publish, 1)
	c, err := device.Connect(ctx, device.DialConfig{Addr: n.MQTTAddr().String(), Roots: pool}, "pump-1", creds[0], true,
		func(p paho.PublishReceived) (bool, error) { got <- p.Packet; return true, nil })
	if err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(&paho.Disconnect{})
	if _, err := c.Publish(ctx, &paho.Publish{Topic: "devices/pump-1/telemetry", QoS: 1, Payload: []byte(`{"temp":21.5}`)}); err != nil {
		t.Fatal(err)
	}

	call := func(method, path, token string, body any) (int, []byte) {
		t.Helper()
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, _ := http.NewRequestWithContext(ctx, method, base+path, rd)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	if code, body := call("GET", "/api/v1/streams/telemetry/by_device/messages?topic=pump-1&from=0", "", nil); code != 401 {
		t.Fatalf("read without a token: %d %s", code, body)
	}
	code, body := call("GET", "/api/v1/streams/telemetry/by_device/messages?topic=pump-1&from=0", admin, nil)
	var msgs struct {
		Messages []struct {
			Offset  uint64
			Value   string
			Headers map[string]string
		}
	}
	json.Unmarshal(body, &msgs)
	if code != 200 || len(msgs.Messages) != 1 || msgs.Messages[0].Value != `{"temp":21.5}` || msgs.Messages[0].Headers["device"] != "pump-1" {
		t.Fatalf("read back: %d %s", code, body)
	}

	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "updates/device/pump-1/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	code, body = call("POST", "/api/v1/streams/updates/down/messages", admin, map[string]any{
		"topic": "device/pump-1", "value": `{"sample_interval_s":5}`, "headers": map[string]string{"subtopic": "config"},
	})
	if code != 200 {
		t.Fatalf("append an update: %d %s", code, body)
	}
	select {
	case p := <-got:
		if p.Topic != "updates/device/pump-1/config" || string(p.Payload) != `{"sample_interval_s":5}` {
			t.Fatalf("update arrived as %s %q", p.Topic, p.Payload)
		}
	case <-ctx.Done():
		t.Fatal("the update never reached the device")
	}

	code, body = call("GET", "/metrics", "", nil)
	for _, want := range []string{"weft_gateway_connections 1", "weft_gateway_append_seconds", "go_goroutines"} {
		if code != 200 || !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if code, _ := call("GET", "/healthz", "", nil); code != 200 {
		t.Errorf("/healthz: %d", code)
	}
}

// TestBacklogQuota checks that the edge gives its uplink volume the quota
// past which it drops its oldest data, and leaves it alone without one.
func TestBacklogQuota(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(store.Config{Dir: t.TempDir(), Name: "e1", MinFreeBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := limitBacklog(ctx, st, 0); err != nil {
		t.Fatal(err)
	}
	if vi, _ := st.Volume("uplink"); vi.Quota != 0 || vi.DropOldest {
		t.Fatalf("no backlog quota given, yet the uplink volume is %+v", vi)
	}
	if err := limitBacklog(ctx, st, 64<<20); err != nil {
		t.Fatal(err)
	}
	if vi, _ := st.Volume("uplink"); vi.Quota != 64<<20 || !vi.DropOldest {
		t.Fatalf("uplink volume %+v, want a 64 MiB quota dropping the oldest", vi)
	}
}
