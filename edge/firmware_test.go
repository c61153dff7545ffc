package edge

import (
	"context"
	"crypto/tls"
	"net/http"
	"testing"
	"time"

	"github.com/weft-io/weft/device"
)

// TestFirmwareListener: with FirmwareAddr the edge serves its devices
// their firmware over HTTPS, their certificate the only credential: a
// client without one does not get through the handshake, a device does
// (and is told an unknown release is not found).
func TestFirmwareListener(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, certsDir := startTestEdge(t, ctx, func(c *Config) { c.FirmwareAddr, c.FirmwareChunks = "127.0.0.1:0", true })
	if n.FirmwareAddr() == nil {
		t.Fatal("no firmware listener")
	}
	creds, pool, err := device.Credentials(certsDir, []string{"pump-1"}, "pump")
	if err != nil {
		t.Fatal(err)
	}
	url := "https://" + n.FirmwareAddr().String() + "/api/v1/firmware/releases/pump-fw/1.0.0/manifest"
	get := func(cert []tls.Certificate) (int, error) {
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: cert, ServerName: "127.0.0.1"}}}
		resp, err := c.Get(url)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	if code, err := get(nil); err == nil {
		t.Fatalf("no client certificate: %d, want a refused handshake", code)
	}
	if code, err := get(creds[:1]); err != nil || code != http.StatusNotFound {
		t.Fatalf("device: %d %v, want 404 for a release the edge does not hold", code, err)
	}
}
