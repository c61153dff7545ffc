package console_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/weft-io/weft/anomaly"
	"github.com/weft-io/weft/api"
	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/console"
	"github.com/weft-io/weft/models"
	"github.com/weft-io/weft/store"
)

// TestBrowserModels opens the models page in headless Chromium as an
// operator: the class with its live model, candidate and canary, the
// drifting candidate marked; the charts of both versions and the canary
// drawn from the edge's last hour of summaries, over 24 h and then over
// the last hour, and a new minute's summary drawn on the open page; then
// promotes the candidate and rolls back with the page's buttons.
func TestBrowserModels(t *testing.T) {
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
	console.SeedModels(t, st)
	dir := filepath.Join(t.TempDir(), "certs")
	if err := certs.Init(dir, false); err != nil {
		t.Fatal(err)
	}
	a, err := certs.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
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
			shot("models-failed.png")
			t.Fatalf("%s: %v", what, err)
		}
	}
	pollJS := func(what, expr string) {
		t.Helper()
		if _, err := chromedp.Run(bctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(60*time.Second), chromedp.WithPollingInterval(100*time.Millisecond))); err != nil {
			shot("models-failed.png")
			t.Fatalf("waiting for %s: %v", what, err)
		}
	}

	do("sign in", chromedp.Navigate(ts.URL+"/signin?code="+code), chromedp.WaitVisible(chromedp.ID("code-signin")),
		chromedp.Click(chromedp.ID("code-signin")), chromedp.WaitVisible(chromedp.CSS("header.topbar")))
	do("open the models page from the menu", chromedp.Click(chromedp.CSS(`nav a[href="/models"]`)), chromedp.WaitVisible(chromedp.ID("class-thermo")))
	pollJS("live, candidate and canary rows, the drifting candidate marked", `(() => {
		const rows = Array.from(document.querySelectorAll("#class-thermo tbody tr")).map(r => r.dataset.role);
		const cand = document.querySelector('tr[data-role="candidate"]');
		return rows.join(",") === "live,candidate,canary" && cand.dataset.model === "thermo-bands@2" &&
			!!cand.querySelector(".badge.bad") && document.querySelector('nav a[href="/models"]').getAttribute("aria-current") === "page";
	})()`)
	shot("models-01-class.png")

	// The class's charts, drawn from the edge's summaries and status
	// records: a line per version in each, the canary's in detections,
	// the drift threshold marked.
	const points = `const fig = m => document.querySelector('#charts-thermo figure[data-metric="' + m + '"]');
		const line = (m, s) => fig(m) && fig(m).querySelector('polyline[data-series="' + s + '"]');
		const pts = (m, s) => line(m, s) ? line(m, s).points.numberOfItems : 0;
		const wide = (m, s) => line(m, s) ? line(m, s).getBoundingClientRect().width : 0;
		const metrics = ["agreement", "latency", "detections", "drift"];`
	pollJS("charts of the last 24 h", `(() => { `+points+`
		return metrics.every(m => pts(m, "thermo-bands@1") >= 2 && pts(m, "thermo-bands@2") >= 2 && wide(m, "thermo-bands@2") > 0) &&
			pts("detections", "canary") >= 2 && !!fig("drift").querySelector("line.mark");
	})()`)
	do("charts over the last hour", chromedp.Click(chromedp.CSS(`a[data-window="1h"]`)), chromedp.WaitVisible(chromedp.CSS(`a[data-window="1h"][aria-current="page"]`)))
	pollJS("a point a minute across the chart, the live stream up", `(() => { `+points+`
		return pts("latency", "thermo-bands@1") >= 55 && wide("latency", "thermo-bands@1") > 200 && pts("agreement", "thermo-bands@2") >= 10 &&
			document.getElementById("live-status").dataset.state === "live";
	})()`)
	shot("models-02-hour.png")

	// A new minute's summary from the edge reaches the open page.
	now := time.Now().Truncate(time.Minute)
	rec, _ := json.Marshal(models.SummaryRecord{Type: models.RecordSummary, Edge: st.Name(), Class: "thermo", Model: "thermo-bands", Version: 1,
		Stage: models.StageLive, From: now, Scored: 20, Used: 20, Latency: 500})
	if _, err := st.Stream(store.UplinkStream).Append(ctx, st.Name(), store.Message{Key: []byte("thermo-bands"), Value: rec, Timestamp: now.Add(time.Minute),
		Headers: map[string]string{"device": "thermo-bands", anomaly.RecordHeader: models.RecordSummary}}); err != nil {
		t.Fatal(err)
	}
	pollJS("the new minute drawn without a reload", `(() => { `+points+`
		const last = Array.from(fig("latency").querySelectorAll(".legend li")).find(li => li.textContent.includes("thermo-bands@1"));
		return !!last && last.querySelector("b").textContent === "500.0" && !!document.getElementById("model-classes").dataset.updated;
	})()`)
	shot("models-03-new-minute.png")

	// press clicks a button whose form reloads the page, and waits for the
	// new page's notice (the old page is marked, so that its own notice
	// does not count).
	press := func(what, button string) {
		t.Helper()
		if _, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`document.body.dataset.before = "1"; true`)); err != nil {
			t.Fatal(err)
		}
		do(what, chromedp.Click(chromedp.CSS(button)), chromedp.WaitVisible(chromedp.CSS("body:not([data-before]) .notice-ok")))
	}
	press("promote the candidate", `tr[data-role="candidate"] button.promote`)
	pollJS("version 2 live, and a rollback button", `(() => {
		const live = document.querySelector('tr[data-role="live"]');
		return live && live.dataset.model === "thermo-bands@2" && !document.querySelector('tr[data-role="candidate"]') &&
			!!document.querySelector("#rollback-thermo-bands button");
	})()`)
	shot("models-04-promoted.png")

	press("roll back", "#rollback-thermo-bands button")
	pollJS("version 1 live again", `document.querySelector('tr[data-role="live"]').dataset.model === "thermo-bands@1"`)
	shot("models-05-rolled-back.png")
}
