package console_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/weft-io/weft/api"
	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/console"
	"github.com/weft-io/weft/device"
	"github.com/weft-io/weft/edge"
	"github.com/weft-io/weft/shadow"
	"github.com/weft-io/weft/store"
)

// chromiumPath is Debian's chromium, which CI installs.
const chromiumPath = "/usr/bin/chromium"

// artifacts is where the browser test saves its screenshots: $WEFT_ARTIFACTS,
// or a temporary directory.
func artifacts(t *testing.T) string {
	dir := os.Getenv("WEFT_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	dir = filepath.Join(dir, "console")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestBrowser runs an edge with the console and a simulated fleet, and in
// headless Chromium: signs in with a one-time link (opening it, then
// pressing its Sign in button), sees the devices, opens one, sets its
// setpoint with the editor, and watches the device apply it and the delta
// clear on the open page (live, through the event stream).
func TestBrowser(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("no chromium at %s: %v", chromiumPath, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	shots := artifacts(t)

	// An edge with fresh certificates, as edge/fleet_test.go runs one.
	dir := t.TempDir()
	certsDir := filepath.Join(dir, "certs")
	if err := certs.Init(certsDir, false); err != nil {
		t.Fatal(err)
	}
	auth, err := certs.Load(certsDir)
	if err != nil {
		t.Fatal(err)
	}
	iss, err := auth.IssueGateway("edge1", []string{"127.0.0.1"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := auth.Save(iss); err != nil {
		t.Fatal(err)
	}
	n, err := edge.Start(ctx, edge.Config{
		DataDir: filepath.Join(dir, "data"), CertsDir: certsDir, Name: "edge1",
		MQTTAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		Store: store.Config{MinFreeBytes: -1},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Shutdown(context.Background()) })
	st := n.Store()

	// The shadow watcher keeps the stored deltas current.
	w, err := shadow.NewWatcher(shadow.WatcherConfig{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	wctx, stopWatcher := context.WithCancel(ctx)
	watcherDone := make(chan struct{})
	go func() { w.Run(wctx); close(watcherDone) }()
	t.Cleanup(func() { stopWatcher(); <-watcherDone })

	// The console, with the API beside it, on its own loopback listener.
	apiSrv, err := api.New(api.Config{Store: st, TokenKey: auth.TokenPublicKey})
	if err != nil {
		t.Fatal(err)
	}
	con, err := console.New(console.Config{API: apiSrv})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(con)
	t.Cleanup(ts.Close)
	token, err := certs.IssueToken(auth.TokenKey, certs.TokenClaims{Subject: "ops@example.com", Role: certs.RoleAdmin}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	code, err := con.OneTimeCode(token)
	if err != nil {
		t.Fatal(err)
	}

	// A simulated fleet; each device takes a moment to apply a change, so
	// that the page shows it pending first.
	fleet, err := device.StartFleet(ctx, device.SimConfig{
		Dial: device.DialConfig{Addr: n.MQTTAddr().String()}, CertsDir: certsDir,
		Count: 6, Interval: 250 * time.Millisecond, ApplyDelay: 1500 * time.Millisecond, AnomalyRate: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range fleet.IDs() {
		poll(t, ctx, id+" to report", func() bool {
			d, err := shadow.Get(ctx, st, id)
			return err == nil && d.Reported["setpoint"] != nil && d.Connected
		})
	}
	pump := fleet.IDs()[0] // class pump: setpoint 1..10, default 4

	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1440, 1000),
	)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()

	save := func(name string) error {
		buf, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(shots, name), buf, 0o644)
	}
	shot := func(name string) {
		t.Helper()
		if err := save(name); err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
	}
	failed := func() {
		if err := save("failed.png"); err != nil {
			t.Logf("no screenshot of the failure: %v", err)
		}
	}
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, steps...); err != nil {
			failed()
			t.Fatalf("%s: %v", what, err)
		}
	}
	pollJS := func(what, expr string) {
		t.Helper()
		if _, err := chromedp.Run(bctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(60*time.Second), chromedp.WithPollingInterval(100*time.Millisecond))); err != nil {
			failed()
			t.Fatalf("waiting for %s: %v", what, err)
		}
	}

	// Not signed in: the sign-in page.
	do("open the console", chromedp.Navigate(ts.URL+"/devices"), chromedp.WaitVisible(chromedp.ID("token")))
	shot("00-signin.png")

	// setpoint enters a value in the editor, applies it, and waits for the
	// page the form leads back to.
	setpoint := func(v string) {
		t.Helper()
		do("enter setpoint "+v,
			chromedp.SetValue(chromedp.ID("f-setpoint"), v),
			chromedp.Evaluate[chromedp.Void](`document.getElementById("f-setpoint").dispatchEvent(new Event("input", {bubbles: true}))`),
		)
		resp, err := chromedp.RunResponse(bctx, chromedp.Click(chromedp.ID("apply")))
		if err != nil {
			failed()
			t.Fatalf("apply setpoint %s: %v", v, err)
		}
		if resp.Status != 200 {
			t.Fatalf("apply setpoint %s: status %d", v, resp.Status)
		}
		do("see it saved", chromedp.WaitVisible(chromedp.CSS(".notice-ok")))
	}

	// Open the one-time link: it only shows a button, which signs in;
	// the fleet page opens.
	do("open the sign-in link", chromedp.Navigate(ts.URL+"/signin?code="+code), chromedp.WaitVisible(chromedp.ID("code-signin")))
	shot("00-signin-link.png")
	resp, err := chromedp.RunResponse(bctx, chromedp.Click(chromedp.ID("code-signin")))
	if err != nil {
		failed()
		t.Fatalf("press Sign in: %v", err)
	}
	if resp.Status != 200 {
		t.Fatalf("press Sign in: status %d", resp.Status)
	}
	do("see the fleet", chromedp.WaitVisible(chromedp.ID("stat-devices")))
	pollJS("six devices counted", `document.getElementById("stat-devices").textContent.trim() === "6"`)
	shot("01-fleet.png")

	// The device list shows every simulated device.
	do("open the device list", chromedp.Navigate(ts.URL+"/devices"), chromedp.WaitVisible(chromedp.ID("device-table")))
	ids, err := json.Marshal(fleet.IDs())
	if err != nil {
		t.Fatal(err)
	}
	pollJS("every device listed", string(ids)+`.every(id => document.querySelector('tr[data-device="' + id + '"]') !== null)`)
	shot("02-devices.png")

	// Open the pump's page from the list.
	do("open "+pump,
		chromedp.Click(chromedp.CSS(`a[href="/devices/`+pump+`"]`)),
		chromedp.WaitVisible(chromedp.ID("device-id")),
		chromedp.WaitVisible(chromedp.ID("in-sync")),
	)
	pollJS("the reported setpoint", `document.querySelector('tr[data-field="setpoint"] td[data-role="reported"]').textContent.trim() === "4"`)
	pollJS("live updates connected", `document.getElementById("live-status").dataset.state === "live"`)
	shot("03-device.png")

	// Set the setpoint to 7 with the editor.
	setpoint("7")
	d, err := shadow.Get(ctx, st, pump)
	if err != nil {
		t.Fatal(err)
	}
	if !shadow.Equal(d.Desired["setpoint"], 7.0) {
		t.Fatalf("desired %v after the editor", d.Desired)
	}
	shot("04-applied.png")

	// The device applies it and reports back; the open page learns of it
	// through its event stream (no reload) and shows the delta cleared.
	pollJS("the delta to clear on the page",
		`document.getElementById("in-sync") !== null &&
		 document.querySelector('tr[data-field="setpoint"] td[data-role="reported"]').textContent.trim() === "7" &&
		 document.getElementById("state").dataset.updated !== undefined`)
	shot("05-in-sync.png")

	// In the store too: the watcher cleared the stored delta.
	poll(t, ctx, "the stored delta to clear", func() bool {
		raw, err := st.Table(store.ShadowsTable).Get(ctx, pump)
		if err != nil {
			return false
		}
		var doc struct {
			Delta    map[string]any `json:"delta"`
			Reported map[string]any `json:"reported"`
		}
		return json.Unmarshal(raw.Value, &doc) == nil && len(doc.Delta) == 0 && doc.Reported["setpoint"] == 7.0
	})

	// A value the device refuses: it says why, and the delta stays.
	setpoint("99")
	pollJS("the device's refusal", `document.getElementById("device-error") !== null &&
		document.getElementById("device-error").textContent.includes("setpoint") &&
		document.querySelector('tr[data-field="setpoint"]').classList.contains("pending")`)
	shot("06-refused.png")

	// The change is in the audit trail under the signed-in subject.
	do("open the audit page", chromedp.Navigate(ts.URL+"/audit"), chromedp.WaitVisible(chromedp.ID("audit-table")))
	pollJS("the audit record", `document.getElementById("audit-table").textContent.includes("ops@example.com")`)
	shot("07-audit.png")
	do("open the edges page", chromedp.Navigate(ts.URL+"/edges"), chromedp.WaitVisible(chromedp.CSS("table.data")))
	shot("08-edges.png")
	t.Logf("screenshots in %s", shots)
}

// poll waits for ok, failing the test at ctx's deadline.
func poll(t *testing.T, ctx context.Context, what string, ok func() bool) {
	t.Helper()
	for !ok() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s: %v", what, errors.Unwrap(ctx.Err()))
		case <-time.After(20 * time.Millisecond):
		}
	}
}
