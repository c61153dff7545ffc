package edge

import (
	"context"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/console"
	"github.com/weft-io/weft/device"
	"github.com/weft-io/weft/internal/testenv/wait"
)

// TestConsoleOnStandaloneEdge: an edge without a core serves the web
// console on its HTTP address beside the API: a crew signs in with a
// token and sees its devices, with the desired-state editor, since the
// edge owns desired state while it has no core.
func TestConsoleOnStandaloneEdge(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, certsDir := startTestEdge(t, ctx)
	auth, err := certs.Load(certsDir)
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + n.HTTPAddr().String()
	tok, err := certs.IssueToken(auth.TokenKey, certs.TokenClaims{Subject: "crew", Role: certs.RoleOperator}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	creds, pool, err := device.Credentials(certsDir, []string{"pump-1"}, "pump")
	if err != nil {
		t.Fatal(err)
	}
	c, err := device.Connect(ctx, device.DialConfig{Addr: n.MQTTAddr().String(), Roots: pool}, "pump-1", creds[0], true, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(&paho.Disconnect{})
	if _, err := c.Publish(ctx, &paho.Publish{Topic: "devices/pump-1/shadow/reported", QoS: 1, Payload: []byte(`{"setpoint":4}`)}); err != nil {
		t.Fatal(err)
	}

	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	get := func(path string) (int, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, "GET", base+path, nil)
		resp, err := browser.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// Not signed in: the sign-in page, naming the edge's certificate
	// directory in the command that makes a token.
	if code, page := get("/devices/pump-1"); code != 200 || !strings.Contains(page, `name="token"`) ||
		!strings.Contains(html.UnescapeString(page), console.TokenCommand(certsDir)) {
		t.Fatalf("not signed in: %d %s", code, page)
	}
	resp, err := browser.PostForm(base+"/signin", url.Values{"token": {tok}, "next": {"/devices"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Request.URL.Path != "/devices" {
		t.Fatalf("sign in: %d at %s", resp.StatusCode, resp.Request.URL)
	}
	wait.For(t, 0, "pump-1 in the console's device list", func() bool {
		code, page := get("/devices")
		return code == 200 && strings.Contains(page, "pump-1")
	})
	code, page := get("/devices/pump-1")
	if code != 200 || !strings.Contains(page, "setpoint") || !strings.Contains(page, `id="apply"`) || strings.Contains(page, `id="desired-readonly"`) {
		t.Fatalf("device page: %d %s", code, page)
	}
	// The API is still served on the same address.
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("/healthz: %d", code)
	}
}
