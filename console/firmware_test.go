package console

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/firmware"
	"github.com/weft-io/weft/internal/testenv/wait"
	"github.com/weft-io/weft/store"
)

// publishRelease stores a verified release of name@version for class.
func publishRelease(t *testing.T, st *store.Store, name, version, class string) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	image := bytes.Repeat([]byte("firmware"), 100)
	m := firmware.Manifest{Name: name, Version: firmware.MustVersion(version), Class: class,
		SHA256: sha256.Sum256(image), Size: int64(len(image)), KeyID: firmware.KeyID(pub)}
	signed, err := firmware.Sign(m, priv)
	if err != nil {
		t.Fatal(err)
	}
	reg := &firmware.Registry{Store: st, Keys: func() (firmware.KeySet, error) {
		return firmware.KeySet{Version: 1, Threshold: 1, Keys: []firmware.Key{firmware.NewKey(pub)}}, nil
	}}
	if _, err := reg.Publish(context.Background(), signed, bytes.NewReader(image)); err != nil {
		t.Fatal(err)
	}
}

func TestFirmwarePage(t *testing.T) {
	e := newEnv(t)
	for i := range 10 {
		report(t, e.st, fmt.Sprintf("pump-%d", i), "pump", `{"firmware":"1.1.0"}`)
	}
	publishRelease(t, e.st, "sensor-fw", "1.2.0", "pump")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.con.api.RunRollouts(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	opClaims := &certs.TokenClaims{Subject: "ada@operator", Role: certs.RoleOperator}
	spec := firmware.Spec{Release: "sensor-fw@1.2.0", Target: "class:pump", Waves: []int{10, 100}, FailureThreshold: 0,
		MinExecuted: 1, DeviceTimeout: firmware.Duration(15 * time.Minute)}
	ro, err := e.con.api.CreateRollout(ctx, opClaims, spec)
	if err != nil {
		t.Fatal(err)
	}

	// A viewer sees releases and rollouts, without buttons.
	viewer := e.browser()
	viewer.signIn(e.token(certs.RoleViewer, nil))
	resp, page := viewer.do("GET", "/firmware", nil, nil)
	if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "script-src 'self'") {
		t.Fatalf("GET /firmware: %d %v", resp.StatusCode, resp.Header)
	}
	for _, want := range []string{"sensor-fw@1.2.0", "class:pump", ro.ID, "running", `<td class="n">10%</td>`, "1.2.0", "pump"} {
		if !strings.Contains(page, want) {
			t.Errorf("viewer page: no %q", want)
		}
	}
	if strings.Contains(page, "/pause") || strings.Contains(page, "style=") {
		t.Error("viewer page has a button, or an inline style the CSP would block")
	}
	// Nor may a viewer press one.
	resp, _ = viewer.do("POST", "/firmware/rollouts/"+ro.ID+"/pause", url.Values{"csrf": {csrfOf(t, page)}}, nil)
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || !strings.Contains(loc, "notice=forbidden") {
		t.Fatalf("viewer pause: %d %s", resp.StatusCode, loc)
	}

	// A token restricted to a scope sees no rollouts: their targets are not
	// bounded by scopes.
	scoped := e.browser()
	scoped.signIn(e.token(certs.RoleOperator, map[string]string{"class": "valve"}))
	scopedPage := scoped.get("/firmware", http.StatusForbidden)
	if strings.Contains(scopedPage, ro.ID) {
		t.Fatal("a scoped token was shown the rollouts")
	}
	resp, _ = scoped.do("POST", "/firmware/rollouts/"+ro.ID+"/pause", url.Values{"csrf": {csrfOf(t, scopedPage)}}, nil)
	if !strings.Contains(resp.Header.Get("Location"), "notice=forbidden") {
		t.Fatalf("scoped pause: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}

	// An operator pauses, and the page offers to resume.
	op := e.browser()
	op.signIn(e.token(certs.RoleOperator, nil))
	page = op.get("/firmware", 200)
	if !strings.Contains(page, "/firmware/rollouts/"+ro.ID+"/pause") || !strings.Contains(page, "/abort") || strings.Contains(page, "/resume") {
		t.Fatal("operator page: want pause and abort buttons only")
	}
	resp, _ = op.do("POST", "/firmware/rollouts/"+ro.ID+"/pause", url.Values{"csrf": {"forged"}}, nil)
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("pause without the CSRF token: %d", resp.StatusCode)
	}
	resp, _ = op.do("POST", "/firmware/rollouts/"+ro.ID+"/pause", url.Values{"csrf": {csrfOf(t, page)}}, nil)
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/firmware?notice=pause") {
		t.Fatalf("pause: %d %s", resp.StatusCode, loc)
	}
	page = op.get("/firmware?notice=pause", 200)
	if !strings.Contains(page, "Rollout paused") || !strings.Contains(page, "/resume") || strings.Contains(page, "/pause\"") {
		t.Fatal("paused page: want the notice and a resume button")
	}
	resp, _ = op.do("POST", "/firmware/rollouts/"+ro.ID+"/pause", url.Values{"csrf": {csrfOf(t, page)}}, nil)
	if loc := resp.Header.Get("Location"); !strings.Contains(loc, "notice=state") {
		t.Fatalf("pause twice: %s", loc)
	}
	op.do("POST", "/firmware/rollouts/"+ro.ID+"/resume", url.Values{"csrf": {csrfOf(t, page)}}, nil)

	// A failure halts it (threshold 0%); the page says why.
	st, err := e.con.api.Rollout(ctx, ro.ID)
	if err != nil || st.State != firmware.Running {
		t.Fatalf("resumed: %+v %v", st, err)
	}
	var first string
	for i := range 10 {
		id := fmt.Sprintf("pump-%d", i)
		msgs, _ := e.st.Stream(store.UpdatesStream).Read(ctx, "device/"+id, 0, 0, store.ReadOptions{})
		if len(msgs) > 0 {
			first = id
		}
	}
	// The report as the gateway stores it: in the device's history and
	// the node's uplink, in one commit.
	report := store.Message{Value: []byte(`{"rollout":"` + ro.ID + `","state":"rejected","reason":"expired"}`),
		Headers: map[string]string{"device": first, "mqtt_topic": "devices/" + first + "/firmware/status"}}
	_, err = e.st.AppendMany(ctx, []store.AppendRequest{
		{Path: store.ByDeviceStream, Topic: first, Partition: -1, Messages: []store.Message{report}},
		{Path: store.UplinkStream, Topic: "node1", Partition: -1, Messages: []store.Message{report}},
	})
	if err != nil {
		t.Fatal(err)
	}
	wait.For(t, 0, "the halt", func() bool { r, _ := e.con.api.Rollout(ctx, ro.ID); return r.State == firmware.Halted })
	page = op.get("/firmware", 200)
	for _, want := range []string{"halted", "Halted:", "1 of 1 executed devices failed", "/resume", "/abort"} {
		if !strings.Contains(page, want) {
			t.Errorf("halted page: no %q", want)
		}
	}
	resp, _ = op.do("POST", "/firmware/rollouts/"+ro.ID+"/abort", url.Values{"csrf": {csrfOf(t, page)}}, nil)
	if loc := resp.Header.Get("Location"); !strings.Contains(loc, "notice=abort") {
		t.Fatalf("abort: %s", loc)
	}
	page = op.get("/firmware", 200)
	if !strings.Contains(page, "aborted") || strings.Contains(page, "/abort\"") {
		t.Fatal("aborted page: want the state and no more buttons")
	}
	resp, _ = op.do("POST", "/firmware/rollouts/nope/abort", url.Values{"csrf": {csrfOf(t, page)}}, nil)
	if loc := resp.Header.Get("Location"); !strings.Contains(loc, "notice=notfound") {
		t.Fatalf("abort of no rollout: %s", loc)
	}
}
