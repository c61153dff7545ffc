package api

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/firmware"
	"github.com/weft-io/weft/internal/testenv/wait"
	"github.com/weft-io/weft/shadow"
	"github.com/weft-io/weft/store"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return c.t
}

// rolloutEnv is an API over a store holding the release sensor-fw@1.2.0
// for class pump and n pump devices (pump-00...) plus one valve, with a
// clock of its own.
func rolloutEnv(t *testing.T, n int) (*env, *fakeClock) {
	t.Helper()
	clock := &fakeClock{t: time.Now().UTC().Truncate(time.Second)}
	e := newEnv(t, func(c *Config) { c.Now = clock.Now })
	publishTestRelease(t, e.st, "sensor-fw", "1.2.0", "pump", clock.Now())
	for i := range n {
		report(t, e.st, fmt.Sprintf("pump-%02d", i), "pump", clock.Now())
	}
	report(t, e.st, "valve-1", "valve", clock.Now())
	return e, clock
}

func report(t *testing.T, st *store.Store, id, class string, now time.Time) {
	t.Helper()
	if _, err := shadow.Report(context.Background(), st, id, json.RawMessage(`{"firmware":"1.1.0"}`),
		shadow.Source{Class: class, Edge: "truck-7"}, now, nil); err != nil {
		t.Fatal(err)
	}
}

func publishTestRelease(t *testing.T, st *store.Store, name, version, class string, now time.Time) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	image := bytes.Repeat([]byte("firmware"), 1000)
	m := firmware.Manifest{Name: name, Version: firmware.MustVersion(version), Class: class,
		SHA256: sha256.Sum256(image), Size: int64(len(image)), KeyID: firmware.KeyID(pub)}
	signed, err := firmware.Sign(m, priv)
	if err != nil {
		t.Fatal(err)
	}
	reg := &firmware.Registry{Store: st, Now: func() time.Time { return now },
		Keys: func() (firmware.KeySet, error) {
			return firmware.KeySet{Version: 1, Threshold: 1, Keys: []firmware.Key{firmware.NewKey(pub)}}, nil
		}}
	if _, err := reg.Publish(context.Background(), signed, bytes.NewReader(image)); err != nil {
		t.Fatal(err)
	}
}

// runRollouts runs the server's rollout runner until the test ends.
func runRollouts(t *testing.T, s *Server) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.RunRollouts(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("RunRollouts: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// publishStatus stores a device's firmware status report as its gateway
// does: in the device's history and, in the same commit, in the uplink of
// the gateway's node (edge; this node when empty).
func publishStatus(t *testing.T, st *store.Store, edge, device, body string) {
	t.Helper()
	if edge == "" {
		edge = "node1"
	}
	m := store.Message{Key: []byte(device), Value: []byte(body),
		Headers: map[string]string{"device": device, headerMQTTTopic: "devices/" + device + "/firmware/status"}}
	_, err := st.AppendMany(context.Background(), []store.AppendRequest{
		{Path: store.ByDeviceStream, Topic: device, Partition: -1, Messages: []store.Message{m}},
		{Path: store.UplinkStream, Topic: edge, Partition: -1, Messages: []store.Message{m}},
	})
	if err != nil {
		t.Fatal(err)
	}
}

// announcements returns the firmware announcements sent to device.
func announcements(t *testing.T, st *store.Store, device string) []Announcement {
	t.Helper()
	msgs, err := st.Stream(store.UpdatesStream).Read(context.Background(), shadow.DeviceTopic(device), 0, 0, store.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []Announcement
	for _, m := range msgs {
		if m.Headers[headerSubtopic] != FirmwareAnnounceSubtopic {
			continue
		}
		var a Announcement
		if err := json.Unmarshal(m.Value, &a); err != nil {
			t.Fatal(err)
		}
		out = append(out, a)
	}
	return out
}

func (e *env) rollout(id string) firmware.Summary {
	e.t.Helper()
	var sum firmware.Summary
	e.get("/api/v1/firmware/rollouts/"+id, certs.RoleViewer, http.StatusOK, &sum)
	return sum
}

// waveDevices returns the devices sent the release, by wave, as the
// announcements show them.
func sentDevices(t *testing.T, st *store.Store, n int) []string {
	t.Helper()
	var sent []string
	for i := range n {
		id := fmt.Sprintf("pump-%02d", i)
		if len(announcements(t, st, id)) > 0 {
			sent = append(sent, id)
		}
	}
	return sent
}

// rolloutBodies are create requests and the status a node with the
// release sensor-fw@1.2.0 for pumps answers them with (0: created); they
// seed FuzzParseRolloutRequest too.
var rolloutBodies = []struct {
	body   string
	status int
}{
	{`{"release":"sensor-fw@1.2.0","target":"site:x"}`, 400},
	{`{"release":"sensor-fw@1.2.0","target":"all","waves":[50]}`, 400},
	{`{"release":"sensor-fw@1.2.0","target":"all","failure_threshold":"200%"}`, 400},
	{`{"release":"sensor-fw@1.2.0","target":"all","failure_threshold":true}`, 400},
	{`{"release":"sensor-fw@1.2.0","target":"all","device_timeout":"soon"}`, 400},
	{`{"release":"sensor-fw@1.2.0","target":"all","min_executed":-1}`, 400},
	{`{"release":"sensor-fw@1.2.0","target":"class:valve"}`, 400},
	{`{"release":"sensor-fw@1.2.0","target":"device:valve-1"}`, 400},
	{`{"release":"sensor-fw@1.2.0","target":"device:nobody"}`, 400},
	{`{"release":"sensor-fw@9.9.9","target":"all"}`, 404},
	{`{"release":"sensor-fw@1.2.0","target":"all","colour":"red"}`, 400},
	{`{"release":"sensor-fw@1.2.0","target":"all"} {}`, 400},
	{``, 400},
	{`{"release":"sensor-fw@1.2.0","target":"all","waves":[10,100],"failure_threshold":12.5,"wave_soak":"10m"}`, 0},
}

func FuzzParseRolloutRequest(f *testing.F) {
	for _, b := range rolloutBodies {
		f.Add(b.body)
	}
	f.Fuzz(func(t *testing.T, body string) {
		spec, err := ParseRolloutRequest(strings.NewReader(body))
		if err == nil {
			if cerr := spec.Check(); cerr != nil {
				t.Fatalf("%q parsed to a spec that does not check: %v", body, cerr)
			}
		}
	})
}

func TestRollouts(t *testing.T) {
	e, clock := rolloutEnv(t, 10)
	runRollouts(t, e.srv)
	op := e.token(certs.RoleOperator)

	// A viewer may read rollouts but not start one.
	resp, body := e.do("POST", "/api/v1/firmware/rollouts", e.token(certs.RoleViewer), `{"release":"sensor-fw@1.2.0","target":"all"}`)
	problem(t, resp, body, http.StatusForbidden)
	for _, bad := range rolloutBodies {
		if bad.status == 0 {
			continue
		}
		resp, body := e.do("POST", "/api/v1/firmware/rollouts", op, bad.body)
		problem(t, resp, body, bad.status)
	}

	resp, body = e.do("POST", "/api/v1/firmware/rollouts", op,
		`{"release":"sensor-fw@1.2.0","target":"all","waves":[10,100],"failure_threshold":"50%","min_executed":2,"device_timeout":"15m"}`)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: %d %s", resp.StatusCode, body)
	}
	var created map[string]any
	if err := json.Unmarshal(body, &created); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"id", "release", "target", "state", "waves", "counts", "halt_reason"} {
		if _, ok := created[k]; !ok {
			t.Errorf("created rollout has no %q: %s", k, body)
		}
	}
	id := created["id"].(string)
	if got := resp.Header.Get("Location"); got != "/api/v1/firmware/rollouts/"+id {
		t.Errorf("Location %q", got)
	}
	sum := e.rollout(id)
	if sum.State != firmware.Running || sum.Devices != 10 || len(sum.Waves) != 2 || sum.Waves[0].Devices != 1 ||
		sum.Waves[0].State != firmware.WaveRunning || sum.Counts.Queued != 10 {
		t.Fatalf("new rollout: %+v", sum)
	}

	// The first wave's device is announced the release, the valve never.
	sent := sentDevices(t, e.st, 10)
	if len(sent) != 1 || len(announcements(t, e.st, "valve-1")) != 0 {
		t.Fatalf("sent to %v", sent)
	}
	a := announcements(t, e.st, sent[0])[0]
	if a.Rollout != id || a.Release != "sensor-fw@1.2.0" || a.Manifest != "/firmware/sensor-fw/1.2.0/manifest.cose" ||
		a.Image != "/firmware/sensor-fw/1.2.0/image" || a.Size != 8000 || len(a.SHA256) != 64 || a.Canceled {
		t.Fatalf("announcement %+v", a)
	}

	// Its success, reported in its history, starts the second wave.
	first := sent[0]
	publishStatus(t, e.st, "", sent[0], `{"rollout":"`+id+`","state":"downloading"}`)
	publishStatus(t, e.st, "", sent[0], `{"rollout":"`+id+`","state":"committed"}`)
	wait.For(t, 0, "the second wave", func() bool { return e.rollout(id).Waves[1].State == firmware.WaveRunning })
	if sent = sentDevices(t, e.st, 10); len(sent) != 10 {
		t.Fatalf("second wave sent to %v", sent)
	}

	// Two failures of three, reported through the edge's uplink, halt it.
	var second []string
	for _, d := range sent {
		if d != first && len(second) < 2 {
			second = append(second, d)
		}
	}
	for _, d := range second {
		publishStatus(t, e.st, "truck-7", d, `{"release":"sensor-fw@1.2.0","state":"rolled_back","reason":"health check"}`)
	}
	wait.For(t, 0, "the halt", func() bool { return e.rollout(id).State == firmware.Halted })
	sum = e.rollout(id)
	if sum.Counts.Failed != 2 || sum.Counts.Succeeded != 1 || !strings.Contains(sum.HaltReason, "2 of 3") {
		t.Fatalf("halted rollout: %+v", sum)
	}

	// A halted rollout cannot be paused; it can be resumed and aborted.
	resp, body = e.do("POST", "/api/v1/firmware/rollouts/"+id+"/pause", op, "")
	problem(t, resp, body, http.StatusConflict)
	resp, body = e.do("POST", "/api/v1/firmware/rollouts/"+id+"/resume", e.token(certs.RoleViewer), "")
	problem(t, resp, body, http.StatusForbidden)
	resp, body = e.do("POST", "/api/v1/firmware/rollouts/"+id+"/resume", op, "")
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"state":"running"`) {
		t.Fatalf("resume: %d %s", resp.StatusCode, body)
	}
	clock.Add(time.Minute)
	resp, body = e.do("POST", "/api/v1/firmware/rollouts/"+id+"/abort", op, "")
	if resp.StatusCode != 200 {
		t.Fatalf("abort: %d %s", resp.StatusCode, body)
	}
	sum = e.rollout(id)
	if sum.State != firmware.Aborted || sum.Counts.Canceled != 7 || sum.Waves[1].State != firmware.WaveCanceled {
		t.Fatalf("aborted rollout: %+v", sum)
	}
	// The devices that had not started get the announcement withdrawn.
	canceled := 0
	for _, d := range sent {
		as := announcements(t, e.st, d)
		if as[len(as)-1].Canceled {
			canceled++
		}
	}
	if canceled != 7 {
		t.Fatalf("%d devices got the cancel, want 7", canceled)
	}
	scoped := &certs.TokenClaims{Subject: "bob", Role: certs.RoleAdmin, Scope: map[string]string{"class": "pump"}}
	if _, err := e.srv.ControlRollout(context.Background(), scoped, id, "resume"); !errors.Is(err, ErrScopeUnenforced) {
		t.Fatalf("resume with a scoped token: %v", err)
	}
	resp, body = e.do("POST", "/api/v1/firmware/rollouts/nope/abort", op, "")
	problem(t, resp, body, http.StatusNotFound)

	var list RolloutList
	e.get("/api/v1/firmware/rollouts", certs.RoleViewer, http.StatusOK, &list)
	if len(list.Rollouts) != 1 || list.Rollouts[0].ID != id {
		t.Fatalf("list: %+v", list)
	}

	// Every change is audited, the operator's with their name, the
	// rollout's own steps under system.
	var audit struct {
		Records []struct {
			Subject string `json:"subject"`
			Action  string `json:"action"`
			Object  string `json:"object"`
		} `json:"records"`
	}
	e.get("/api/v1/audit?object=/updates/rollouts/"+id, certs.RoleAdmin, http.StatusOK, &audit)
	var actions []string
	for _, r := range audit.Records {
		actions = append(actions, r.Subject+":"+r.Action)
	}
	want := "alice@operator:rollout.created alice@operator:rollout.wave_started system:rollout.wave_finished system:rollout.wave_started " +
		"system:rollout.halted alice@operator:rollout.resumed alice@operator:rollout.aborted"
	if got := strings.Join(actions, " "); got != want {
		t.Fatalf("audit:\n%s\nwant\n%s", got, want)
	}
}

// TestRolloutsReadOnly: an edge linked to a core neither starts nor runs
// rollouts; its updates are the core's to write.
func TestRolloutsReadOnly(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.DesiredReadOnly = true })
	if err := e.srv.RunRollouts(context.Background()); !errors.Is(err, ErrRolloutsReadOnly) {
		t.Fatalf("RunRollouts: %v", err)
	}
	resp, body := e.do("POST", "/api/v1/firmware/rollouts", e.token(certs.RoleOperator), `{"release":"sensor-fw@1.2.0","target":"all"}`)
	problem(t, resp, body, http.StatusConflict)
}

// TestRolloutTimeoutAndRestart: a device that stays in progress past its
// timeout counts as timed out; a new server over the same store (a core
// restart) resumes the rollout where it was, status reports that came
// while it was down included.
func TestRolloutTimeoutAndRestart(t *testing.T) {
	e, clock := rolloutEnv(t, 4)
	stop := runRollouts(t, e.srv)
	op := e.token(certs.RoleOperator)
	var sum firmware.Summary
	resp, body := e.do("POST", "/api/v1/firmware/rollouts", op,
		`{"release":"sensor-fw@1.2.0","target":"device:pump-00,pump-01,pump-02","waves":[100],"failure_threshold":50,"min_executed":3,"device_timeout":"15m"}`)
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(body, &sum) != nil {
		t.Fatalf("create: %d %s", resp.StatusCode, body)
	}
	publishStatus(t, e.st, "", "pump-00", `{"rollout":"`+sum.ID+`","state":"installing"}`)
	publishStatus(t, e.st, "", "pump-01", `{"rollout":"`+sum.ID+`","state":"succeeded"}`)
	wait.For(t, 0, "the reports", func() bool { c := e.rollout(sum.ID).Counts; return c.Installing == 1 && c.Succeeded == 1 })

	// Nothing is due before the timeout.
	if err := e.srv.TickRollouts(context.Background(), clock.Add(14*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if c := e.rollout(sum.ID).Counts; c.TimedOut != 0 {
		t.Fatalf("timed out early: %+v", c)
	}

	// The runner stops; a report comes; a new server takes it.
	stop()
	publishStatus(t, e.st, "", "pump-02", `{"rollout":"`+sum.ID+`","state":"failed"}`)
	srv2, err := New(Config{Store: e.st, TokenKey: e.srv.cfg.TokenKey, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	runRollouts(t, srv2)
	wait.For(t, 0, "the report sent while the runner was down", func() bool { return e.rollout(sum.ID).Counts.Failed == 1 })

	if err := srv2.TickRollouts(context.Background(), clock.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	sum = e.rollout(sum.ID)
	if sum.Counts.TimedOut != 1 || sum.State != firmware.Halted || !strings.Contains(sum.HaltReason, "2 of 3") {
		t.Fatalf("after the timeout: %+v", sum)
	}
}
