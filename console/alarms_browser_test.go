package console_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/weft-io/weft/alarm"
	"github.com/weft-io/weft/api"
	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/console"
	"github.com/weft-io/weft/internal/testenv/wait"
	"github.com/weft-io/weft/store"
	"net/http/httptest"
)

// TestBrowserAlarms shows a device_offline alarm in headless Chromium: the
// count in the header, the alarms page with its filters, the Acknowledge
// button, and the alarm on the device's page.
func TestBrowserAlarms(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("no chromium at %s: %v", chromiumPath, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	shots := artifacts(t)

	st, err := store.Open(store.Config{Dir: t.TempDir(), Name: "edge1", MinFreeBytes: -1, RetentionInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	auth := filepath.Join(t.TempDir(), "certs")
	if err := certs.Init(auth, false); err != nil {
		t.Fatal(err)
	}
	a, err := certs.Load(auth)
	if err != nil {
		t.Fatal(err)
	}
	// pump-1 was last seen an hour ago, pump-2 just now.
	for id, ago := range map[string]time.Duration{"pump-1": time.Hour, "pump-2": 0} {
		doc := fmt.Appendf(nil, `{"edge":"edge1","class":"pump","connected":false,"last_seen":%q,"reported":{"x":1}}`, st.Now().Add(-ago).UTC().Format(time.RFC3339Nano))
		if _, err := st.Table(store.ShadowsTable).Put(ctx, id, doc); err != nil {
			t.Fatal(err)
		}
	}
	eng, err := alarm.New(alarm.Config{Store: st, Edge: true, Tick: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ectx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { eng.Run(ectx); close(done) }()
	t.Cleanup(func() { stop(); <-done })
	wait.For(t, 0, "the alarm", func() bool {
		l, err := alarm.List(ctx, st, alarm.Filter{State: alarm.Active})
		return err == nil && len(l) == 1
	})

	apiSrv, err := api.New(api.Config{Store: st, TokenKey: a.TokenPublicKey})
	if err != nil {
		t.Fatal(err)
	}
	con, err := console.New(console.Config{API: apiSrv})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(con)
	t.Cleanup(ts.Close)
	token, err := certs.IssueToken(a.TokenKey, certs.TokenClaims{Subject: "ops@example.com", Role: certs.RoleOperator}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	code, err := con.OneTimeCode(token)
	if err != nil {
		t.Fatal(err)
	}

	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromiumPath), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1440, 1000),
	)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()
	shot := func(name string) {
		buf, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
		if err == nil {
			err = os.WriteFile(filepath.Join(shots, name), buf, 0o644)
		}
		if err != nil {
			t.Logf("screenshot %s: %v", name, err)
		}
	}
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, steps...); err != nil {
			shot("alarms-failed.png")
			t.Fatalf("%s: %v", what, err)
		}
	}
	pollJS := func(what, expr string) {
		t.Helper()
		if _, err := chromedp.Run(bctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(60*time.Second), chromedp.WithPollingInterval(100*time.Millisecond))); err != nil {
			shot("alarms-failed.png")
			html, _ := chromedp.Run(bctx, chromedp.Evaluate[string](`document.location.href + " " + (document.getElementById("alarm-count")||{}).outerHTML`))
			t.Fatalf("waiting for %s: %v (%s)", what, err, html)
		}
	}

	do("sign in", chromedp.Navigate(ts.URL+"/signin?code="+code), chromedp.WaitVisible(chromedp.ID("code-signin")),
		chromedp.Click(chromedp.ID("code-signin")), chromedp.WaitVisible(chromedp.CSS("header.topbar")))
	pollJS("the count of active alarms in the header", `(() => { const c = document.getElementById("alarm-count"); return c.classList.contains("badge") && c.textContent === "1"; })()`)

	do("open the alarms page", chromedp.Navigate(ts.URL+"/alarms"), chromedp.WaitVisible(chromedp.ID("alarm-table")))
	pollJS("the offline pump in the table", `document.querySelectorAll("#alarm-table tbody tr").length === 1 &&
		document.querySelector("#alarm-table tbody tr").dataset.state === "active" &&
		document.querySelector("#alarm-table tbody tr").textContent.includes("pump-1") &&
		document.querySelector("#alarm-table tbody tr").textContent.includes("device_offline")`)
	shot("alarms-01-active.png")

	// Filters: no disk alarm; the device_offline one by type and state.
	do("filter by type disk_low", chromedp.SetValue(chromedp.ID("alarm-type"), "disk_low"), chromedp.Click(chromedp.ID("alarm-filter")),
		chromedp.WaitVisible(chromedp.CSS("#alarms .empty")))
	do("filter by type device_offline, state active", chromedp.SetValue(chromedp.ID("alarm-type"), "device_offline"),
		chromedp.SetValue(chromedp.ID("alarm-state"), "active"), chromedp.Click(chromedp.ID("alarm-filter")),
		chromedp.WaitVisible(chromedp.ID("alarm-table")))

	// Acknowledge: the page says so, the row is acknowledged, and the
	// header counts no active alarm.
	do("acknowledge", chromedp.Click(chromedp.CSS("#alarm-table button.ack")), chromedp.WaitVisible(chromedp.CSS(".notice-ok")))
	do("show acknowledged ones", chromedp.Navigate(ts.URL+"/alarms?state=acknowledged"), chromedp.WaitVisible(chromedp.ID("alarm-table")))
	pollJS("the acknowledged row, without its button", `document.querySelector("#alarm-table tbody tr").dataset.state === "acknowledged" &&
		!document.querySelector("#alarm-table button.ack")`)
	pollJS("no active alarm in the header", `document.getElementById("alarm-count").textContent === "" && !document.getElementById("alarm-count").classList.contains("badge")`)
	shot("alarms-02-acknowledged.png")
	l, err := alarm.List(ctx, st, alarm.Filter{})
	if err != nil || len(l) != 1 || l[0].State != alarm.Acknowledged {
		t.Fatalf("alarms after the button: %+v, %v", l, err)
	}

	// On a phone: no sideways scrolling, the device and state still shown.
	do("open the alarms page on a phone", chromedp.EmulateViewport(390, 844), chromedp.Navigate(ts.URL+"/alarms"),
		chromedp.WaitVisible(chromedp.ID("alarm-table")))
	pollJS("the alarms fitting 390 px", `(() => {
		const w = window.innerWidth, row = document.querySelector("#alarm-table tbody tr");
		return document.getElementById("alarms").getBoundingClientRect().right <= w &&
			Array.from(row.children).slice(0, 3).every(td => td.getBoundingClientRect().right <= w);
	})()`)
	shot("alarms-04-phone.png")
	do("back to a desktop", chromedp.EmulateViewport(1440, 1000))

	// The device's page lists its alarm; the other device's none.
	do("open pump-1", chromedp.Navigate(ts.URL+"/devices/pump-1"), chromedp.WaitVisible(chromedp.ID("device-alarms")))
	pollJS("the device's alarm", `!!document.querySelector("#device-alarms #alarm-table tbody tr") &&
		document.querySelector("#device-alarms").textContent.includes("device_offline")`)
	shot("alarms-03-device.png")
	do("open pump-2", chromedp.Navigate(ts.URL+"/devices/pump-2"), chromedp.WaitVisible(chromedp.ID("device-alarms")))
	pollJS("no alarm for pump-2", `!!document.querySelector("#device-alarms .empty")`)
}
