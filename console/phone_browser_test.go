package console_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/weft-io/weft/anomaly"
	"github.com/weft-io/weft/api"
	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/console"
	"github.com/weft-io/weft/shadow"
	"github.com/weft-io/weft/store"
)

// phoneWidth and phoneHeight are the viewport of the phone the console is
// checked on (a common modern phone, in CSS pixels).
const phoneWidth, phoneHeight = 390, 844

// TestBrowserPhone opens every console page in headless Chromium at
// 390x844 and checks that none scrolls sideways and that the columns that
// matter (the device, its connection and sync state, a link's state, the
// models page's pickers and charts) are on screen; and, there, that the desired-state editor says inline that
// abc is not JSON and saves nothing.
func TestBrowserPhone(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("no chromium at %s: %v", chromiumPath, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	shots := artifacts(t)

	st, err := store.Open(store.Config{Dir: t.TempDir(), Name: "edge-north-01", MinFreeBytes: -1, RetentionInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	dir := filepath.Join(t.TempDir(), "certs")
	if err := certs.Init(dir, false); err != nil {
		t.Fatal(err)
	}
	auth, err := certs.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	// Devices with long ids and long values, anomalies and audit records:
	// what makes tables wide.
	ids := []string{"refrigeration-compressor-000017", "pump-7", "chiller-rooftop-east-0003"}
	for i, id := range ids {
		rep := fmt.Sprintf(`{"setpoint":4,"sample_interval_s":5,"firmware":"2.14.3-rc.1+build.20260301","mode":"eco","long_config_value":"a-rather-long-configuration-string-%d"}`, i)
		if _, err := shadow.Report(ctx, st, id, json.RawMessage(rep), shadow.Source{Class: "refrigeration", Edge: "edge-north-01", Site: "north-yard"}, time.Now(), nil); err != nil {
			t.Fatal(err)
		}
		if _, err := shadow.SetDesired(ctx, st, id, json.RawMessage(`{"setpoint":6}`), shadow.SetOptions{Now: time.Now()}); err != nil {
			t.Fatal(err)
		}
		d, _ := json.Marshal(anomaly.Detection{Type: anomaly.RecordAnomaly, Device: id, Channel: "discharge_temperature_c", Detector: anomaly.Level, Score: 0.97, Value: 123.456, At: time.Now()})
		if _, err := st.Stream(store.UplinkStream).Append(ctx, "edge-north-01", store.Message{Key: []byte(id), Value: d, Timestamp: time.Now(),
			Headers: map[string]string{anomaly.RecordHeader: anomaly.RecordAnomaly}}); err != nil {
			t.Fatal(err)
		}
		if err := st.Audit(ctx, "operations-team-lead@example.com", "shadow.desired", store.ShadowsTable+"/"+id, map[string]any{"patch": map[string]any{"setpoint": 6, "long_config_value": "x-very-long-value-that-goes-on"}}); err != nil {
			t.Fatal(err)
		}
	}
	console.SeedModels(t, st)

	apiSrv, err := api.New(api.Config{Store: st, TokenKey: auth.TokenPublicKey})
	if err != nil {
		t.Fatal(err)
	}
	con, err := console.New(console.Config{API: apiSrv, CertsDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(con)
	t.Cleanup(ts.Close)
	token, err := certs.IssueToken(auth.TokenKey, certs.TokenClaims{Subject: "operations-team-lead@example.com", Role: certs.RoleAdmin}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	code, err := con.OneTimeCode(token)
	if err != nil {
		t.Fatal(err)
	}

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
		chromedp.WindowSize(phoneWidth, phoneHeight),
	)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()

	failed := func(name string) {
		if buf, err := chromedp.Run(bctx, chromedp.FullScreenshot(90)); err == nil {
			os.WriteFile(filepath.Join(shots, "phone-failed-"+name+".png"), buf, 0o644)
		}
	}
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, steps...); err != nil {
			failed("step")
			t.Fatalf("%s: %v", what, err)
		}
	}
	do("a phone's viewport", chromedp.EmulateViewport(phoneWidth, phoneHeight, chromedp.EmulateMobile, chromedp.EmulateScale(3)))

	// fits checks the page open at path: no sideways scrolling, and each
	// of the selectors (if any match) inside the viewport.
	fits := func(name, path, ready string, visible ...string) {
		t.Helper()
		do("open "+path, chromedp.Navigate(ts.URL+path), chromedp.WaitVisible(chromedp.CSS(ready)))
		var got struct {
			Inner, Scroll, Body float64
			Out                 []string
		}
		sel, _ := json.Marshal(visible)
		expr := `(() => {
			const out = [];
			for (const s of ` + string(sel) + `) {
				const els = document.querySelectorAll(s);
				if (els.length === 0) { out.push(s + ": none"); continue; }
				for (const el of els) {
					const r = el.getBoundingClientRect();
					if (r.width === 0 || r.left < 0 || r.right > window.innerWidth + 0.5) { out.push(s + ": " + Math.round(r.left) + ".." + Math.round(r.right)); break; }
				}
			}
			// The widest elements past the phone's width, to say what to fix.
			const wide = [];
			for (const el of document.body.querySelectorAll("*")) {
				const r = el.getBoundingClientRect();
				if (r.right > ` + fmt.Sprint(phoneWidth) + ` + 0.5 && el.closest(".scroll-x") === null) {
					wide.push([r.right, el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") + (el.className && el.className.baseVal === undefined ? "." + String(el.className).trim().replace(/\s+/g, ".") : "")]);
				}
			}
			wide.sort((a, b) => b[0] - a[0]);
			if (wide.length > 0) { out.push("wider than the phone: " + wide.slice(0, 6).map(w => w[1] + " to " + Math.round(w[0])).join(", ")); }
			return {Inner: window.innerWidth, Scroll: document.documentElement.scrollWidth, Body: document.body.scrollWidth, Out: out};
		})()`
		res, err := chromedp.Run(bctx, chromedp.Evaluate[json.RawMessage](expr))
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if err := json.Unmarshal(res, &got); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if buf, err := chromedp.Run(bctx, chromedp.FullScreenshot(90)); err == nil {
			os.WriteFile(filepath.Join(shots, "phone-"+name+".png"), buf, 0o644)
		}
		if got.Inner != phoneWidth {
			t.Errorf("%s: viewport %v wide, want %d", path, got.Inner, phoneWidth)
		}
		if got.Scroll > got.Inner || got.Body > got.Inner {
			t.Errorf("%s scrolls sideways: %v (body %v) wide in a %v viewport", path, got.Scroll, got.Body, got.Inner)
		}
		if len(got.Out) > 0 {
			t.Errorf("%s: off screen: %s", path, strings.Join(got.Out, "; "))
		}
	}

	fits("signin", "/signin", "#token", "#token", "#token-command")
	do("sign in with a link", chromedp.Navigate(ts.URL+"/signin?code="+code), chromedp.WaitVisible(chromedp.ID("code-signin")))
	fits("signin-link", "/signin?code="+code, "#code-signin", "#code-signin")
	do("press Sign in", chromedp.Click(chromedp.ID("code-signin")), chromedp.WaitVisible(chromedp.ID("stat-devices")))

	fits("fleet", "/", "#stat-devices", "#stat-devices")
	fits("devices", "/devices", "#device-table",
		`#device-table td.id a`, `#device-table td:nth-child(4) .badge`, `#device-table td:nth-child(5) .badge`)
	fits("device", "/devices/"+ids[0], "#device-id", "#device-id", "#f-setpoint", "#apply", "#sync-badge")
	fits("edges", "/edges", "main h1", "main h1")
	fits("anomalies", "/anomalies", "#anomaly-table", "#anomaly-table td:nth-child(2) a", "#anomaly-table td:nth-child(6)")
	fits("audit", "/audit", "#audit-table", "#audit-table td a")
	fits("audit-filtered", "/audit?action=shadow.&device="+ids[0], "#audit-filters", "#audit-filters button.primary")
	fits("firmware", "/firmware", "main h1", "main h1")
	fits("alarms", "/alarms", "main h1", "main h1")
	fits("models", "/models", "#charts-thermo", `#class-thermo h2`, `nav.picker a[data-window="7d"]`,
		`#charts-thermo figure[data-metric="agreement"] svg`, `#charts-thermo figure[data-metric="drift"] svg`)

	// The editor at that size: abc is not JSON, said beside the field as
	// it is typed; Apply sends nothing.
	do("open the device", chromedp.Navigate(ts.URL+"/devices/"+ids[1]), chromedp.WaitVisible(chromedp.ID("f-setpoint")))
	do("type abc",
		chromedp.SetValue(chromedp.ID("f-setpoint"), "abc"),
		chromedp.Evaluate[chromedp.Void](`document.getElementById("f-setpoint").dispatchEvent(new Event("input", {bubbles: true}))`),
		chromedp.WaitVisible(chromedp.ID("e-setpoint")),
	)
	msg, err := chromedp.Run(bctx, chromedp.Text(chromedp.ID("e-setpoint")))
	if err != nil || !strings.Contains(msg, "not valid JSON") {
		failed("editor")
		t.Fatalf("inline error %q %v", msg, err)
	}
	do("press Apply", chromedp.Click(chromedp.ID("apply")))
	if d, _ := shadow.Get(ctx, st, ids[1]); !shadow.Equal(d.Desired, map[string]any{"setpoint": 6.0}) {
		t.Fatalf("saved after an error: %v", d.Desired)
	}
	if buf, err := chromedp.Run(bctx, chromedp.FullScreenshot(90)); err == nil {
		os.WriteFile(filepath.Join(shots, "phone-editor-error.png"), buf, 0o644)
	}
	// Ticked as text, it is saved as the text.
	do("tick Text", chromedp.Evaluate[chromedp.Void](`document.querySelector('tr[data-field="setpoint"] .astext input').click()`))
	if _, err := chromedp.Run(bctx, chromedp.Poll[bool](`document.getElementById("e-setpoint").hidden`, chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		failed("editor-tick")
		t.Fatalf("the error to go once Text is ticked: %v", err)
	}
	resp, err := chromedp.RunResponse(bctx, chromedp.Click(chromedp.ID("apply")))
	if err != nil || resp.Status != 200 {
		failed("editor-text")
		t.Fatalf("apply as text: %v %v", resp, err)
	}
	if d, _ := shadow.Get(ctx, st, ids[1]); !shadow.Equal(d.Desired, map[string]any{"setpoint": "abc"}) {
		t.Fatalf("desired after applying as text: %v", d.Desired)
	}
	t.Logf("screenshots in %s", shots)
}
