package gateway

import (
	"bytes"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weft-io/weft/store"
)

// TestMosquittoClients uses the Debian mosquitto-clients tools as a
// device would: no SDK, only its certificate.
func TestMosquittoClients(t *testing.T) {
	pub, err := exec.LookPath("mosquitto_pub")
	if err != nil {
		t.Skip("mosquitto_pub not installed (Debian package mosquitto-clients)")
	}
	sub, err := exec.LookPath("mosquitto_sub")
	if err != nil {
		t.Skip("mosquitto_sub not installed (Debian package mosquitto-clients)")
	}
	e := newEnv(t, nil)
	d := e.device(t, "mosq-1", "pump")
	host, port, err := net.SplitHostPort(e.addr())
	if err != nil {
		t.Fatal(err)
	}
	args := func(version string, more ...string) []string {
		return append([]string{
			"-h", host, "-p", port,
			"--cafile", filepath.Join(e.dir, "device-ca.crt"),
			"--cert", d.certFile, "--key", d.keyFile,
			"-i", d.id, "-V", version,
		}, more...)
	}
	versions := []string{"mqttv311", "mqttv5"}

	n := 0
	for _, v := range versions {
		for qos := range 3 {
			topic := "devices/mosq-1/telemetry/" + v
			payload := fmt.Sprintf("%s qos %d", v, qos)
			out, err := exec.Command(pub, args(v, "-t", topic, "-q", fmt.Sprint(qos), "-m", payload)...).CombinedOutput()
			if err != nil {
				t.Fatalf("mosquitto_pub -V %s -q %d: %v\n%s", v, qos, err, out)
			}
			n++
			waitFor(t, "message stored", func() bool { return len(e.messages(t, store.ByDeviceStream, d.id)) == n })
			m := e.messages(t, store.ByDeviceStream, d.id)[n-1]
			if string(m.Value) != payload || m.Headers[HeaderTopic] != topic || m.Headers[HeaderQoS] != fmt.Sprint(qos) {
				t.Fatalf("stored %q %v", m.Value, m.Headers)
			}
		}
	}

	for _, v := range versions {
		cmd := exec.Command(sub, args(v, "-t", "updates/device/mosq-1/#", "-q", "1", "-C", "1", "-W", "20", "-v")...)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "mosquitto_sub subscribed", func() bool {
			_, ok := e.srv.mqtt.Topics.Subscribers("updates/device/mosq-1/config").Subscriptions[d.id]
			return ok
		})
		payload := "config for " + v
		e.down(t, "device/mosq-1", "config", payload, map[string]string{HeaderRetain: "false"})
		if err := cmd.Wait(); err != nil {
			t.Fatalf("mosquitto_sub -V %s: %v\n%s", v, err, errOut.String())
		}
		if got, want := strings.TrimSpace(out.String()), "updates/device/mosq-1/config "+payload; got != want {
			t.Fatalf("mosquitto_sub -V %s printed %q, want %q", v, got, want)
		}
		waitFor(t, "mosquitto_sub gone", func() bool {
			_, ok := e.srv.mqtt.Topics.Subscribers("updates/device/mosq-1/config").Subscriptions[d.id]
			return !ok
		})
	}

	// A refused publish: the tool reports the failure.
	out, err := exec.Command(pub, args("mqttv5", "-t", "devices/other/telemetry", "-q", "1", "-m", "x")...).CombinedOutput()
	if err == nil && !strings.Contains(string(out), "not authorized") && !strings.Contains(string(out), "135") {
		t.Logf("mosquitto_pub to another device's topic: %s", out)
	}
	if e.srv.Metrics().ACLRefusals(ReasonOtherDevice) == 0 {
		t.Fatal("refusal not counted")
	}
}
