package console

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/weft-io/weft/api"
	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/cluster"
	"github.com/weft-io/weft/shadow"
	"github.com/weft-io/weft/store"
)

// env is a console over a real store and API, on loopback.
type env struct {
	t    *testing.T
	st   *store.Store
	con  *Server
	url  string
	priv ed25519.PrivateKey
}

func newEnv(t *testing.T) *env {
	t.Helper()
	st, err := store.Open(store.Config{Dir: t.TempDir(), Name: "edge1", MinFreeBytes: -1, RetentionInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	a, err := api.New(api.Config{Store: st, TokenKey: pub})
	if err != nil {
		t.Fatal(err)
	}
	con, err := New(Config{API: a, Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(con)
	t.Cleanup(ts.Close)
	return &env{t: t, st: st, con: con, url: ts.URL, priv: priv}
}

func (e *env) token(role certs.Role, scope map[string]string) string {
	e.t.Helper()
	tok, err := certs.IssueToken(e.priv, certs.TokenClaims{Subject: "ada@" + string(role), Role: role, Scope: scope}, time.Hour)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// browser is a client with a cookie jar that does not follow redirects.
type browser struct {
	e *env
	c *http.Client
}

func (e *env) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{e: e, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (b *browser) do(method, path string, form url.Values, header map[string]string) (*http.Response, string) {
	b.e.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.e.url+path, body)
	if err != nil {
		b.e.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", b.e.url)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.e.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp, string(out)
}

func (b *browser) get(path string, want int) string {
	b.e.t.Helper()
	resp, body := b.do("GET", path, nil, nil)
	if resp.StatusCode != want {
		b.e.t.Fatalf("GET %s: %d, want %d: %s", path, resp.StatusCode, want, body)
	}
	return body
}

func (b *browser) signIn(token string) {
	b.e.t.Helper()
	resp, body := b.do("POST", "/signin", url.Values{"token": {token}, "next": {"/devices"}}, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/devices" {
		b.e.t.Fatalf("sign-in: %d %s: %s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
}

var (
	csrfField    = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	desiredField = regexp.MustCompile(`name="desired" value="([^"]+)"`)
)

// stampOf is the desired-state stamp of the editor on a page.
func stampOf(t *testing.T, page string) string {
	t.Helper()
	m := desiredField.FindStringSubmatch(page)
	if m == nil {
		t.Fatal("no desired-state stamp on the page")
	}
	return m[1]
}

func csrfOf(t *testing.T, page string) string {
	t.Helper()
	m := csrfField.FindStringSubmatch(page)
	if m == nil {
		t.Fatal("no CSRF token on the page")
	}
	return m[1]
}

// report writes a device's report as the gateway does.
func report(t *testing.T, st *store.Store, id, class, reported string) {
	t.Helper()
	patch := fmt.Sprintf(`{"reported":%s,"last_seen":%q,"class":%q,"edge":"edge1","connected":true}`, reported, time.Now().UTC().Format(time.RFC3339Nano), class)
	if _, err := st.Table(store.ShadowsTable).Patch(context.Background(), id, json.RawMessage(patch)); err != nil {
		t.Fatal(err)
	}
}

func TestSignIn(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	// Not signed in: pages send to the sign-in page, parts and streams
	// are refused.
	resp, _ := b.do("GET", "/devices?q=x", nil, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/signin?next=%2Fdevices%3Fq%3Dx" {
		t.Fatalf("not signed in: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	for _, p := range []string{"/?part=live", "/live/fleet"} {
		if resp, _ := b.do("GET", p, nil, nil); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("GET %s: %d", p, resp.StatusCode)
		}
	}
	page := b.get("/signin?next=/devices", 200)
	if !strings.Contains(page, `name="token"`) || !strings.Contains(page, `value="/devices"`) {
		t.Fatalf("sign-in page: %s", page)
	}
	resp, body := b.do("POST", "/signin", url.Values{"token": {"not-a-token"}}, nil)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "That token was refused") {
		t.Fatalf("bad token: %d %s", resp.StatusCode, body)
	}
	// A sign-in from another site is refused.
	resp, _ = b.do("POST", "/signin", url.Values{"token": {e.token(certs.RoleViewer, nil)}}, map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"})
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site sign-in: %d", resp.StatusCode)
	}
	b.signIn(e.token(certs.RoleViewer, nil))
	cookie := b.c.Jar.Cookies(mustURL(e.url))
	if len(cookie) != 1 || cookie[0].Name != CookieName {
		t.Fatalf("cookies %v", cookie)
	}
	page = b.get("/", 200)
	if !strings.Contains(page, "ada@viewer") || !strings.Contains(page, `data-events="/live/fleet"`) {
		t.Fatalf("overview: %s", page)
	}
	// An open redirect is not possible.
	for _, next := range []string{"//evil.example/", "https://evil.example", "/\\evil"} {
		resp, _ := b.do("POST", "/signin", url.Values{"token": {e.token(certs.RoleViewer, nil)}, "next": {next}}, nil)
		if resp.Header.Get("Location") != "/" {
			t.Fatalf("next %q: sent to %q", next, resp.Header.Get("Location"))
		}
	}

	// Sign-out needs the CSRF token.
	resp, _ = b.do("POST", "/signout", url.Values{"csrf": {"wrong"}}, nil)
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("sign-out without CSRF: %d", resp.StatusCode)
	}
	resp, _ = b.do("POST", "/signout", url.Values{"csrf": {csrfOf(t, b.get("/", 200))}}, nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-out: %d", resp.StatusCode)
	}
	if resp, _ := b.do("GET", "/", nil, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("after sign-out: %d", resp.StatusCode)
	}
}

// testWriter sends logs to the test's log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

var codeField = regexp.MustCompile(`name="code" value="([^"]+)"`)

func TestOneTimeCode(t *testing.T) {
	e := newEnv(t)
	if _, err := e.con.OneTimeCode("junk"); err == nil {
		t.Fatal("a code for an invalid token")
	}
	code, err := e.con.OneTimeCode(e.token(certs.RoleAdmin, nil))
	if err != nil {
		t.Fatal(err)
	}
	b := e.browser()
	// The link shows who it signs in as and a button; the button's form
	// carries the code.
	page := b.get("/signin?code="+code+"&next=/devices", 200)
	if m := codeField.FindStringSubmatch(page); m == nil || m[1] != code || !strings.Contains(page, `id="code-signin"`) ||
		!strings.Contains(page, `id="code-subject">ada@admin<`) || !strings.Contains(page, `name="next" value="/devices"`) {
		t.Fatalf("sign-in link page: %s", page)
	}
	if len(b.c.Jar.Cookies(mustURL(e.url))) != 0 {
		t.Fatal("opening the link set a cookie")
	}
	// The button signs in and goes on.
	resp, body := b.do("POST", "/signin", url.Values{"code": {code}, "next": {"/devices"}}, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/devices" {
		t.Fatalf("sign-in with the code: %d %s: %s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	if !strings.Contains(b.get("/", 200), "ada@admin") {
		t.Fatal("not signed in by the code")
	}
	// Once only.
	other := e.browser()
	resp, body = other.do("POST", "/signin", url.Values{"code": {code}}, nil)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "used already") {
		t.Fatalf("second use: %d", resp.StatusCode)
	}
	resp, body = other.do("GET", "/signin?code="+code, nil, nil)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "used already") || strings.Contains(body, `name="code"`) {
		t.Fatalf("the link of a used code: %d %s", resp.StatusCode, body)
	}
	// A code sent from another site is refused, and stays usable.
	code, _ = e.con.OneTimeCode(e.token(certs.RoleAdmin, nil))
	resp, _ = other.do("POST", "/signin", url.Values{"code": {code}}, map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"})
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site sign-in with a code: %d", resp.StatusCode)
	}
	if resp, _ := other.do("POST", "/signin", url.Values{"code": {code}}, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("the code after a cross-site attempt: %d", resp.StatusCode)
	}
	// Expired.
	now := time.Now()
	e.con.cfg.Now = func() time.Time { return now }
	code, _ = e.con.OneTimeCode(e.token(certs.RoleAdmin, nil))
	e.con.cfg.Now = func() time.Time { return now.Add(2 * time.Hour) } // past the token's hour
	late := e.browser()
	if resp, _ := late.do("GET", "/signin?code="+code, nil, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("link of an expired code: %d", resp.StatusCode)
	}
	if resp, _ := late.do("POST", "/signin", url.Values{"code": {code}}, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("expired code: %d", resp.StatusCode)
	}
}

// TestOneTimeCodeSurvivesGet opens a sign-in link as link previews, mail
// scanners and prefetchers do: the code stays usable, and signs in no one
// until the button is pressed.
func TestOneTimeCodeSurvivesGet(t *testing.T) {
	e := newEnv(t)
	code, err := e.con.OneTimeCode(e.token(certs.RoleOperator, nil))
	if err != nil {
		t.Fatal(err)
	}
	preview := e.browser()
	for range 3 {
		preview.get("/signin?code="+code, 200)
		if resp, _ := preview.do("HEAD", "/signin?code="+code, nil, map[string]string{"Sec-Purpose": "prefetch"}); resp.StatusCode != 200 {
			t.Fatalf("HEAD of the link: %d", resp.StatusCode)
		}
	}
	if resp, _ := preview.do("GET", "/", nil, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("opening the link signed in: %d", resp.StatusCode)
	}
	b := e.browser()
	page := b.get("/signin?code="+code, 200)
	m := codeField.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no sign-in button after previews: %s", page)
	}
	if resp, _ := b.do("POST", "/signin", url.Values{"code": {m[1]}}, nil); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Fatalf("sign-in after previews: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if !strings.Contains(b.get("/", 200), "ada@operator") {
		t.Fatal("not signed in by the code")
	}
}

func TestPages(t *testing.T) {
	e := newEnv(t)
	for i := range 7 {
		class := []string{"pump", "chiller", "meter"}[i%3]
		report(t, e.st, fmt.Sprintf("sim-%s-%d", class, i/3), class, `{"setpoint":4,"sample_interval_s":5,"firmware":"1.0.0","error":null}`)
	}
	ctx := context.Background()
	msgs := []store.Message{}
	for i := range 20 {
		msgs = append(msgs, store.Message{Value: fmt.Appendf(nil, `{"ts":%q,"pressure_bar":%g,"flow_lpm":%d}`, time.Now().Add(time.Duration(i-20)*time.Second).UTC().Format(time.RFC3339Nano), 4+float64(i%5)/10, 100+i),
			Headers: map[string]string{"mqtt_topic": "devices/sim-pump-0/telemetry"}})
	}
	msgs = append(msgs, store.Message{Value: []byte(`{"code":"E42","msg":"overpressure"}`), Headers: map[string]string{"mqtt_topic": "devices/sim-pump-0/events/alarm"}})
	if _, err := e.st.Stream(store.ByDeviceStream).Append(ctx, "sim-pump-0", msgs...); err != nil {
		t.Fatal(err)
	}
	b := e.browser()
	b.signIn(e.token(certs.RoleOperator, nil))

	page := b.get("/", 200)
	for _, want := range []string{`id="stat-devices">7<`, ">pump<", ">edge1<", "No device is anomalous"} {
		if !strings.Contains(page, want) {
			t.Errorf("overview lacks %q", want)
		}
	}
	if part := b.get("/?part=live", 200); strings.Contains(part, "<html") || !strings.Contains(part, "stat-devices") {
		t.Errorf("overview part: %s", part)
	}
	page = b.get("/devices", 200)
	if n := strings.Count(page, `<tr data-device=`); n != 7 {
		t.Errorf("device list shows %d devices", n)
	}
	page = b.get("/devices?class=pump&q=sim-pump-", 200)
	if n := strings.Count(page, `<tr data-device=`); n != 3 {
		t.Errorf("filtered list shows %d devices", n)
	}
	page = b.get("/devices?sync=no", 200)
	if !strings.Contains(page, "No device matches") {
		t.Errorf("out-of-sync list: %s", page)
	}

	page = b.get("/devices/sim-pump-0", 200)
	for _, want := range []string{`id="in-sync"`, "pressure_bar", "flow_lpm", "<polyline", "overpressure", `name="f:setpoint"`, `<code id="firmware">1.0.0</code>`} {
		if !strings.Contains(page, want) {
			t.Errorf("device page lacks %q", want)
		}
	}
	if strings.Contains(page, `name="f:firmware"`) || strings.Contains(page, `name="f:error"`) {
		t.Error("the editor offers firmware or error")
	}
	for _, part := range []string{"state", "charts", "events"} {
		if p := b.get("/devices/sim-pump-0?part="+part, 200); strings.Contains(p, "<html") {
			t.Errorf("part %s is a whole page", part)
		}
	}
	b.get("/devices/nope", 404)
	b.get("/edges", 200)
	// An anomaly the edge sent up is listed, linked to its device.
	det := fmt.Appendf(nil, `{"type":"anomaly","device":"sim-pump-0","class":"pump","channel":"pressure_bar","detector":"level","score":1,"value":9.5,"at":%q}`, time.Now().UTC().Format(time.RFC3339Nano))
	if _, err := e.st.Stream(store.UplinkStream).Append(ctx, "edge1", store.Message{Key: []byte("sim-pump-0"), Value: det, Headers: map[string]string{"type": "anomaly"}}); err != nil {
		t.Fatal(err)
	}
	page = b.get("/anomalies", 200)
	for _, want := range []string{`href="/devices/sim-pump-0"`, "<code>pressure_bar</code>", ">9.5<", `href="/anomalies?edge=edge1"`} {
		if !strings.Contains(page, want) {
			t.Errorf("anomalies page lacks %q", want)
		}
	}
	if page := b.get("/anomalies?device=sim-meter-0", 200); !strings.Contains(page, "No anomaly detected for this filter") {
		t.Errorf("anomalies of another device: %s", page)
	}
	if part := b.get("/anomalies?part=live", 200); strings.Contains(part, "<html") || !strings.Contains(part, "anomaly-table") {
		t.Errorf("anomalies part: %s", part)
	}
	if page := b.get("/audit", 403); !strings.Contains(page, "needs an admin token") {
		t.Errorf("audit for an operator: %s", page)
	}

	// The editor: change setpoint, with the CSRF token and the stamp of
	// the desired state shown.
	page = b.get("/devices/sim-pump-0", 200)
	firstStamp := stampOf(t, page)
	// A report of the device meanwhile does not stand in the way.
	report(t, e.st, "sim-pump-0", "pump", `{"setpoint":4,"sample_interval_s":5,"firmware":"1.0.0","error":null,"uptime_s":9}`)
	form := url.Values{"csrf": {csrfOf(t, page)}, "desired": {firstStamp}, "f:setpoint": {"7"}, "f:sample_interval_s": {""}, "new_field": {"mode"}, "new_value": {"eco"}, "new_text": {"1"}}
	resp, _ := b.do("POST", "/devices/sim-pump-0/desired", form, nil)
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || loc != "/devices/sim-pump-0?notice=applied" {
		t.Fatalf("apply: %d %s", resp.StatusCode, loc)
	}
	d, _ := shadow.Get(ctx, e.st, "sim-pump-0")
	if !shadow.Equal(d.Desired, map[string]any{"setpoint": 7.0, "mode": "eco"}) || d.Version != 3 {
		t.Fatalf("desired %v version %d", d.Desired, d.Version)
	}
	down, _ := e.st.Stream(store.UpdatesStream).Read(ctx, "device/sim-pump-0", 0, 0, store.ReadOptions{})
	if len(down) != 1 || !strings.Contains(string(down[0].Value), `"setpoint":7`) {
		t.Fatalf("delta sent: %v", down)
	}
	page = b.get("/devices/sim-pump-0?notice=applied", 200)
	if !strings.Contains(page, "Desired state saved") || !strings.Contains(page, "2 pending") || !strings.Contains(page, `value="7"`) || !strings.Contains(page, `value="&#34;eco&#34;"`) {
		t.Fatalf("after apply: %s", page)
	}
	// The same values again: nothing to change. A desired state changed
	// since the page was shown: conflict.
	form.Set("desired", stampOf(t, page))
	form.Del("new_field")
	form.Set("f:mode", `"eco"`)
	resp, _ = b.do("POST", "/devices/sim-pump-0/desired", form, nil)
	if loc := resp.Header.Get("Location"); !strings.HasSuffix(loc, "notice=nothing") {
		t.Fatalf("same values: %s", loc)
	}
	form.Set("desired", firstStamp)
	form.Set("f:setpoint", "8")
	resp, body := b.do("POST", "/devices/sim-pump-0/desired", form, nil)
	if resp.StatusCode != http.StatusConflict || !strings.Contains(body, "What you typed is kept") || !strings.Contains(body, `value="8"`) {
		t.Fatalf("stale version: %d %s", resp.StatusCode, body)
	}
	// Without the CSRF token, or from another origin: refused.
	form.Set("desired", stampOf(t, page))
	bad := url.Values{}
	for k, v := range form {
		bad[k] = v
	}
	bad.Set("csrf", "x")
	if resp, _ := b.do("POST", "/devices/sim-pump-0/desired", bad, nil); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("wrong CSRF token: %d", resp.StatusCode)
	}
	if resp, _ := b.do("POST", "/devices/sim-pump-0/desired", form, map[string]string{"Origin": "https://evil.example"}); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("other origin: %d", resp.StatusCode)
	}
	if d, _ := shadow.Get(ctx, e.st, "sim-pump-0"); d.Version != 3 {
		t.Fatalf("refused forms changed the shadow to version %d", d.Version)
	}

	// The change is in the audit trail, as the API writes it.
	admin := e.browser()
	admin.signIn(e.token(certs.RoleAdmin, nil))
	page = admin.get("/audit", 200)
	if !strings.Contains(page, "ada@operator") || !strings.Contains(page, "shadow.desired") || !strings.Contains(page, "/shadows/devices/sim-pump-0") {
		t.Fatalf("audit page: %s", page)
	}
}

func TestViewerAndScope(t *testing.T) {
	e := newEnv(t)
	report(t, e.st, "sim-pump-0", "pump", `{"setpoint":4}`)
	report(t, e.st, "sim-meter-0", "meter", `{"setpoint":4}`)
	v := e.browser()
	v.signIn(e.token(certs.RoleViewer, nil))
	page := v.get("/devices/sim-pump-0", 200)
	if strings.Contains(page, `action="/devices/sim-pump-0/desired"`) || !strings.Contains(page, "can look but not change") {
		t.Fatal("a viewer gets the editor")
	}
	form := url.Values{"csrf": {csrfOf(t, page)}, "desired": {"x"}, "f:setpoint": {"7"}}
	resp, _ := v.do("POST", "/devices/sim-pump-0/desired", form, nil)
	if loc := resp.Header.Get("Location"); !strings.HasSuffix(loc, "notice=forbidden") {
		t.Fatalf("viewer apply: %s", loc)
	}

	s := e.browser()
	s.signIn(e.token(certs.RoleOperator, map[string]string{"class": "meter"}))
	page = s.get("/devices", 200)
	if strings.Contains(page, "sim-pump-0") || !strings.Contains(page, "sim-meter-0") {
		t.Fatal("a scoped token sees devices outside its scope")
	}
	s.get("/devices/sim-pump-0", 404)
	if resp, _ := s.do("GET", "/live/devices/sim-pump-0", nil, nil); resp.StatusCode != 404 {
		t.Fatalf("live stream of a device outside the scope: %d", resp.StatusCode)
	}
	page = s.get("/", 200)
	if !strings.Contains(page, `id="stat-devices">1<`) || !strings.Contains(page, "class=meter") {
		t.Fatalf("scoped overview: %s", page)
	}
}

func TestLiveDevice(t *testing.T) {
	e := newEnv(t)
	report(t, e.st, "sim-pump-0", "pump", `{"setpoint":4}`)
	b := e.browser()
	b.signIn(e.token(certs.RoleViewer, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", e.url+"/live/devices/sim-pump-0", nil)
	resp, err := b.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("content type %q", resp.Header.Get("Content-Type"))
	}
	events := make(chan string, 10)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := resp.Body.Read(buf)
			for _, line := range strings.Split(string(buf[:n]), "\n") {
				if ev, ok := strings.CutPrefix(line, "event: "); ok {
					events <- ev
				}
			}
			if err != nil {
				close(events)
				return
			}
		}
	}()
	want := func(kind string, change func()) {
		t.Helper()
		// Change until the event comes: the stream may not be waiting
		// yet when the first change is made.
		for {
			change()
			select {
			case ev, ok := <-events:
				if !ok {
					t.Fatal("event stream ended")
				}
				if ev == kind {
					return
				}
			case <-time.After(500 * time.Millisecond):
			case <-ctx.Done():
				t.Fatalf("no %s event", kind)
			}
		}
	}
	want("shadow", func() { report(t, e.st, "sim-pump-0", "pump", `{"setpoint":5}`) })
	want("telemetry", func() {
		e.st.Stream(store.ByDeviceStream).Append(ctx, "sim-pump-0", store.Message{Value: []byte(`{"x":1}`)})
	})
}

// TestClusterPanel: on a node of a core cluster the edges page lists the
// core nodes, their addresses, state and edges.
func TestClusterPanel(t *testing.T) {
	e := newEnv(t)
	e.con.cfg.Cluster = func(context.Context) ([]cluster.NodeState, error) {
		return []cluster.NodeState{
			{Name: "core-1", Address: "10.0.0.1:8081", State: "up", Edges: []string{"edge-a", "edge-b"}},
			{Name: "core-2", Address: "10.0.0.2:8081", State: "down", Edges: []string{}},
		}, nil
	}
	b := e.browser()
	b.signIn(e.token(certs.RoleViewer, nil))
	page := b.get("/edges", 200)
	for _, want := range []string{"Core nodes", "<td>core-1</td>", "<code>10.0.0.1:8081</code>", `<span class="badge ok">up</span>`,
		`<span class="badge bad">down</span>`, `<a href="/devices?edge=edge-a">edge-a</a>, <a href="/devices?edge=edge-b">edge-b</a>`} {
		if !strings.Contains(page, want) {
			t.Errorf("edges page lacks %q", want)
		}
	}
	e.con.cfg.Cluster = nil
	if page := b.get("/edges", 200); strings.Contains(page, "Core nodes") {
		t.Error("a single node shows a cluster panel")
	}
}
