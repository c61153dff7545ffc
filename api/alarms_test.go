package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weft-io/weft/alarm"
	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/internal/testenv/wait"
)

// alarmEnv is an API env with an alarm engine whose data disk reports
// the free percentage set in free.
type alarmEnv struct {
	*env
	free   atomic.Int64 // percent
	engine *alarm.Engine
}

func newAlarmEnv(t *testing.T) *alarmEnv {
	e := &alarmEnv{env: newEnv(t)}
	e.free.Store(50)
	eng, err := alarm.New(alarm.Config{Store: e.st, DataDir: "/data", Tick: 10 * time.Millisecond, Backoff: 5 * time.Millisecond,
		Statfs:     func(string) (int64, int64, error) { return e.free.Load(), 100, nil },
		Registerer: e.reg})
	if err != nil {
		t.Fatal(err)
	}
	e.engine = eng
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("engine: %v", err)
		}
	})
	return e
}

func (e *alarmEnv) alarms(query string) []alarm.Alarm {
	e.t.Helper()
	var out AlarmsResponse
	e.get("/api/v1/alarms"+query, certs.RoleViewer, http.StatusOK, &out)
	return out.Alarms
}

// waitAlarm waits until the one alarm the query selects is there and
// returns it.
func (e *alarmEnv) waitAlarm(query string) alarm.Alarm {
	e.t.Helper()
	var got []alarm.Alarm
	wait.For(e.t, 0, "an alarm for "+query, func() bool {
		got = e.alarms(query)
		return len(got) == 1
	})
	return got[0]
}

func (e *alarmEnv) putSettings(body string, want int) []byte {
	e.t.Helper()
	resp, b := e.do("PUT", "/api/v1/alarm-settings", e.token(certs.RoleAdmin), body)
	if resp.StatusCode != want {
		e.t.Fatalf("PUT alarm-settings %s: status %d, want %d: %s", body, resp.StatusCode, want, b)
	}
	return b
}

// receiver is a webhook endpoint on loopback that checks each post's
// signature and keeps the alarms of the good ones.
type receiver struct {
	t      *testing.T
	secret string
	url    string
	fail   atomic.Int64 // answer 500 to this many posts first

	mu     sync.Mutex
	got    []alarm.Alarm
	events []string
	bad    int
}

func newReceiver(t *testing.T, secret string) *receiver {
	rc := &receiver{t: t, secret: secret}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if rc.fail.Add(-1) >= 0 {
			http.Error(w, "down for a moment", http.StatusInternalServerError)
			return
		}
		rc.mu.Lock()
		defer rc.mu.Unlock()
		sig := r.Header.Get(alarm.SignatureHeader)
		var a alarm.Alarm
		if r.Method != http.MethodPost || !strings.HasPrefix(sig, "sha256=") || !alarm.Verify(rc.secret, body, sig) ||
			r.Header.Get("Content-Type") != "application/json" || json.Unmarshal(body, &a) != nil {
			rc.bad++
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		rc.got = append(rc.got, a)
		rc.events = append(rc.events, r.Header.Get(alarm.EventHeader))
	}))
	t.Cleanup(ts.Close)
	rc.url = ts.URL + "/hook"
	return rc
}

func (rc *receiver) states() []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []string
	for _, a := range rc.got {
		out = append(out, a.State)
	}
	return out
}

func TestAlarmRaiseAcknowledgeClear(t *testing.T) {
	e := newAlarmEnv(t)
	hook := newReceiver(t, "s3cret")
	e.putSettings(fmt.Sprintf(`{"webhooks":[{"url":%q,"secret":"s3cret"}]}`, hook.url), http.StatusOK)
	hook.fail.Store(2) // the first two posts fail: retried

	if got := e.alarms("?state=active"); len(got) != 0 {
		t.Fatalf("alarms before any condition: %+v", got)
	}
	e.free.Store(5) // 5% free, below the default 10%
	a := e.waitAlarm("?state=active&type=disk_low")
	if a.Type != alarm.DiskLow || a.Severity != alarm.Major || a.State != alarm.Active || a.Raised.IsZero() ||
		a.Acknowledged != nil || a.Cleared != nil || a.ID == "" {
		t.Fatalf("raised alarm: %+v", a)
	}
	var det map[string]any
	if err := json.Unmarshal(a.Details, &det); err != nil || det["free_percent"] != 5.0 {
		t.Fatalf("details %s: %v", a.Details, err)
	}
	// The JSON members are exactly those of the contract.
	_, raw := e.do("GET", "/api/v1/alarms", e.token(certs.RoleViewer), "")
	var doc struct{ Alarms []map[string]json.RawMessage }
	if err := json.Unmarshal(raw, &doc); err != nil || len(doc.Alarms) != 1 {
		t.Fatalf("GET alarms: %s", raw)
	}
	for _, k := range []string{"id", "type", "severity", "state", "device", "edge", "raised", "acknowledged", "cleared", "details"} {
		if _, ok := doc.Alarms[0][k]; !ok {
			t.Errorf("alarm JSON lacks %q: %s", k, raw)
		}
	}

	// A viewer cannot acknowledge; an operator can, once.
	resp, b := e.do("POST", "/api/v1/alarms/"+a.ID+"/ack", e.token(certs.RoleViewer), "")
	problem(t, resp, b, http.StatusForbidden)
	resp, b = e.do("POST", "/api/v1/alarms/nosuchalarm/ack", e.token(certs.RoleOperator), "")
	problem(t, resp, b, http.StatusNotFound)
	resp, b = e.do("POST", "/api/v1/alarms/"+a.ID+"/ack", e.token(certs.RoleOperator), "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("ack: %d %s", resp.StatusCode, b)
	}
	var acked alarm.Alarm
	if err := json.Unmarshal(b, &acked); err != nil || acked.State != alarm.Acknowledged || acked.Acknowledged == nil || acked.ID != a.ID {
		t.Fatalf("acknowledged: %s (%v)", b, err)
	}
	resp, b = e.do("POST", "/api/v1/alarms/"+a.ID+"/ack", e.token(certs.RoleOperator), "")
	var again alarm.Alarm
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &again) != nil || !again.Acknowledged.Equal(*acked.Acknowledged) {
		t.Fatalf("second ack: %d %s", resp.StatusCode, b)
	}
	if got := e.alarms("?state=acknowledged"); len(got) != 1 || got[0].ID != a.ID {
		t.Fatalf("acknowledged alarms: %+v", got)
	}
	var audit AuditResponse
	e.get("/api/v1/audit?object="+alarm.AlarmsTable+"/"+a.ID, certs.RoleAdmin, http.StatusOK, &audit)
	if len(audit.Records) != 1 || audit.Records[0].Action != "alarm.ack" || audit.Records[0].Subject != "alice@operator" {
		t.Fatalf("audit of the ack: %+v", audit.Records)
	}

	// The condition ends: the alarm clears by itself, keeping its
	// acknowledgement.
	e.free.Store(50)
	c := e.waitAlarm("?state=cleared")
	if c.ID != a.ID || c.Cleared == nil || c.Acknowledged == nil {
		t.Fatalf("cleared: %+v", c)
	}
	if got := e.alarms("?state=active"); len(got) != 0 {
		t.Fatalf("active after the clear: %+v", got)
	}

	// The webhook was told of each step, in order, signed, after its
	// failures were retried.
	wait.For(t, 0, "three signed notifications", func() bool { return len(hook.states()) >= 3 })
	if got := strings.Join(hook.states(), ","); got != "active,acknowledged,cleared" {
		t.Fatalf("webhook states %s", got)
	}
	hook.mu.Lock()
	events, bad := strings.Join(hook.events, ","), hook.bad
	hook.mu.Unlock()
	if events != "raised,acknowledged,cleared" || bad != 0 {
		t.Fatalf("webhook events %s, %d badly signed", events, bad)
	}
	if n := counter(t, e, "weft_alarm_webhook_attempts_total", "error"); n < 2 {
		t.Fatalf("failed attempts counted: %v, want 2", n)
	}
}

// counter returns the value of a counter of the env's registry with one
// label value (0 if absent).
func counter(t *testing.T, e *alarmEnv, name, label string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetValue() == label {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func TestAlarmSettings(t *testing.T) {
	e := newAlarmEnv(t)
	var got map[string]any
	e.get("/api/v1/alarm-settings", certs.RoleAdmin, http.StatusOK, &got)
	want := `{"cert_expiry_within":"720h0m0s","device_offline_after":"5m0s","disk_free_below":10,"link_down_after":"2m0s","webhooks":[]}`
	if b, _ := json.Marshal(got); string(b) != want {
		t.Fatalf("default settings %s, want %s", b, want)
	}
	e.get("/api/v1/alarm-settings", certs.RoleOperator, http.StatusForbidden, nil)
	resp, b := e.do("PUT", "/api/v1/alarm-settings", e.token(certs.RoleOperator), `{}`)
	problem(t, resp, b, http.StatusForbidden)

	for _, bad := range []string{
		`{"device_offline_after":"soon"}`,
		`{"link_down_after":"1ms"}`,
		`{"disk_free_below":120}`,
		`{"webhooks":[{"url":"ftp://x/","secret":"s"}]}`,
		`{"webhooks":[{"url":"http://127.0.0.1:1/","secret":""}]}`,
		`{"webhooks":[{"url":"http://a/","secret":"s"},{"url":"http://a/","secret":"t"}]}`,
		`{"unknown":1}`,
		`[1]`,
	} {
		resp, b := e.do("PUT", "/api/v1/alarm-settings", e.token(certs.RoleAdmin), bad)
		problem(t, resp, b, http.StatusBadRequest)
	}

	// Applied at once: 50% free raises nothing at 10%, an alarm at 60%.
	if a := e.alarms(""); len(a) != 0 {
		t.Fatalf("alarms: %+v", a)
	}
	b = e.putSettings(`{"device_offline_after":"90s","disk_free_below":60,"webhooks":[{"url":"http://127.0.0.1:1/hook","secret":"k1"}]}`, http.StatusOK)
	want = `{"device_offline_after":"1m30s","link_down_after":"2m0s","disk_free_below":60,"cert_expiry_within":"720h0m0s","webhooks":[{"url":"http://127.0.0.1:1/hook","secret":"********"}]}`
	if strings.TrimSpace(string(b)) != want {
		t.Fatalf("PUT answered %s, want %s", b, want)
	}
	e.waitAlarm("?state=active&type=disk_low")

	// The secret is never shown; sent back masked, it is kept.
	e.putSettings(`{"disk_free_below":60,"webhooks":[{"url":"http://127.0.0.1:1/hook","secret":"********"}]}`, http.StatusOK)
	set, _, err := alarm.LoadSettings(context.Background(), e.st)
	if err != nil || len(set.Webhooks) != 1 || set.Webhooks[0].Secret != "k1" {
		t.Fatalf("stored settings %+v: %v", set, err)
	}
	resp, b = e.do("PUT", "/api/v1/alarm-settings", e.token(certs.RoleAdmin), `{"webhooks":[{"url":"http://other/","secret":"********"}]}`)
	problem(t, resp, b, http.StatusBadRequest) // no secret stored for that URL

	var audit AuditResponse
	e.get("/api/v1/audit?object="+alarm.SettingsTable+"/"+alarm.SettingsKey, certs.RoleAdmin, http.StatusOK, &audit)
	if len(audit.Records) != 2 || audit.Records[0].Action != "alarm.settings" || audit.Records[0].Subject != "alice@admin" {
		t.Fatalf("audit: %+v", audit.Records)
	}
	if strings.Contains(string(audit.Records[0].Detail), "k1") || !strings.Contains(string(audit.Records[0].Detail), `"disk_free_below":60`) {
		t.Fatalf("audit detail %s", audit.Records[0].Detail)
	}
}

// A webhook that never answers delays neither the alarms nor another
// webhook.
func TestAlarmDeadWebhook(t *testing.T) {
	e := newAlarmEnv(t)
	stuck := make(chan struct{})
	dead := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-stuck:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(dead.Close)
	t.Cleanup(func() { close(stuck) })
	good := newReceiver(t, "g")
	e.putSettings(fmt.Sprintf(`{"webhooks":[{"url":%q,"secret":"d"},{"url":%q,"secret":"g"}]}`, dead.URL, good.url), http.StatusOK)
	e.free.Store(1)
	a := e.waitAlarm("?state=active")
	if a.Severity != alarm.Critical {
		t.Fatalf("1%% free: severity %s, want critical", a.Severity)
	}
	e.free.Store(90)
	e.waitAlarm("?state=cleared")
	wait.For(t, 0, "the good webhook told of both", func() bool { return strings.Join(good.states(), ",") == "active,cleared" })
}

// A scoped token sees and acknowledges the alarms of the devices in its
// scope only.
func TestAlarmScope(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if err := alarm.Ensure(ctx, e.st); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	for _, d := range []struct{ id, class string }{{"pump-1", "pump"}, {"valve-2", "valve"}, {"", ""}} {
		if d.id != "" {
			if _, err := e.st.Table("/shadows/devices").Put(ctx, d.id, []byte(`{"class":"`+d.class+`"}`)); err != nil {
				t.Fatal(err)
			}
		}
		r := alarm.Record{Alarm: alarm.Alarm{ID: "a-" + d.class, Type: alarm.DeviceOffline, Severity: alarm.Major, State: alarm.Active,
			Device: d.id, Raised: now, Details: json.RawMessage(`{}`)}, Key: "k/" + d.id, Node: "local", Event: alarm.EventRaised, At: now}
		b, _ := json.Marshal(r)
		if _, err := e.st.Table(alarm.AlarmsTable).Put(ctx, r.ID, b); err != nil {
			t.Fatal(err)
		}
	}
	pumps := e.scoped(certs.RoleOperator, map[string]string{"class": "pump"})
	var out AlarmsResponse
	e.getAs("/api/v1/alarms", pumps, http.StatusOK, &out)
	if len(out.Alarms) != 1 || out.Alarms[0].Device != "pump-1" {
		t.Fatalf("scoped list: %+v", out.Alarms)
	}
	resp, b := e.do("POST", "/api/v1/alarms/a-valve/ack", pumps, "")
	problem(t, resp, b, http.StatusNotFound)
	resp, b = e.do("POST", "/api/v1/alarms/a-pump/ack", pumps, "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("ack in scope: %d %s", resp.StatusCode, b)
	}
	var all AlarmsResponse
	e.get("/api/v1/alarms?state=active", certs.RoleViewer, http.StatusOK, &all)
	if len(all.Alarms) != 2 {
		t.Fatalf("unscoped, active: %+v", all.Alarms)
	}
	for _, bad := range []string{"?state=open", "?type=fire"} {
		resp, b := e.do("GET", "/api/v1/alarms"+bad, e.token(certs.RoleViewer), "")
		problem(t, resp, b, http.StatusBadRequest)
	}
}
