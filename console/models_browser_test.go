package console_test

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/weft-io/weft/api"
	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/console"
	"github.com/weft-io/weft/store"
)

// TestBrowserModels opens the models page in headless Chromium as an
// operator: the class with its live model, candidate and canary, the
// drifting candidate marked; then promotes the candidate and rolls back
// with the page's buttons.
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
	shot("models-02-promoted.png")

	press("roll back", "#rollback-thermo-bands button")
	pollJS("version 1 live again", `document.querySelector('tr[data-role="live"]').dataset.model === "thermo-bands@1"`)
	shot("models-03-rolled-back.png")
}
