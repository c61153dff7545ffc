package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weft-io/weft/shadow"
)

// TestPythonPahoGetsDeltasInOrder: a device on Debian's Python paho
// (python3-paho-mqtt), away with a persistent session while desired state
// changes five times in the same second, gets the five deltas in the order
// they were made when it comes back (MQTT 3.1.1 clean session 0; MQTT 5
// clean start 0 with receive maximum 1 and 65535), and, applying them as
// they arrive, ends on the desired value.
func TestPythonPahoGetsDeltasInOrder(t *testing.T) {
	py := debianPython()
	if py == "" {
		t.Skip("no python3 with paho-mqtt (Debian package python3-paho-mqtt)")
	}
	for _, c := range []struct{ version, rmax string }{{"v311", "0"}, {"v5", "1"}, {"v5", "65535"}} {
		t.Run(c.version+"/rm"+c.rmax, func(t *testing.T) {
			e := newEnv(t, nil)
			id := "py-" + c.version + "-" + c.rmax
			d := e.device(t, id, "pump")
			host, port, _ := strings.Cut(e.addr(), ":")
			run := func(mode string, more ...string) string {
				t.Helper()
				args := append([]string{filepath.Join("testdata", "paho_device.py"), mode, host, port,
					filepath.Join(e.dir, "device-ca.crt"), d.certFile, d.keyFile, id, c.version, c.rmax}, more...)
				out, err := exec.Command(py, args...).CombinedOutput()
				if err != nil {
					t.Fatalf("paho_device.py %s: %v\n%s", mode, err, out)
				}
				return string(out)
			}
			run("subscribe")
			// Away: five changes of desired state in one second.
			for i := 1; i <= 5; i++ {
				if _, err := shadow.SetDesired(context.Background(), e.st, id, fmt.Appendf(nil, `{"setpoint":%d}`, 940+i), shadow.SetOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			e.downCursor(t, shadow.DeviceTopic(id), 5)
			lines := strings.Fields(run("collect", "5"))
			var got []int
			for _, l := range lines {
				var m struct{ Setpoint int }
				if json.Unmarshal([]byte(l), &m) == nil {
					got = append(got, m.Setpoint)
				}
			}
			if fmt.Sprint(got) != "[941 942 943 944 945]" {
				t.Fatalf("deltas arrived as %v (output %q), want [941 942 943 944 945]", got, lines)
			}
			waitFor(t, "the device in sync", func() bool {
				doc, err := shadow.Get(context.Background(), e.st, id)
				return err == nil && doc.InSync
			})
		})
	}
}

// debianPython is a python3 that imports paho.mqtt: Debian's first (where
// python3-paho-mqtt installs it), then the one on PATH; "" if none.
func debianPython() string {
	for _, py := range []string{"/usr/bin/python3", "python3"} {
		if p, err := exec.LookPath(py); err == nil && exec.Command(p, "-c", "import paho.mqtt.client").Run() == nil {
			return p
		}
	}
	return ""
}
