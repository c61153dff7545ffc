package device_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"testing"
	"time"

	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/device"
	"github.com/weft-io/weft/edge"
	"github.com/weft-io/weft/firmware"
	"github.com/weft-io/weft/gateway"
	"github.com/weft-io/weft/internal/testenv"
	"github.com/weft-io/weft/shadow"
	"github.com/weft-io/weft/store"
)

// TestAgentThroughEdge runs the agent as a device of a real edge: a
// manifest sent down /updates/down reaches it over MQTT, it fetches the
// image from the edge's API, commits, and its status reports and running
// version reach the edge's store and shadow; a replayed older manifest is
// refused the same way.
func TestAgentThroughEdge(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f := testenv.New(t)
	e := f.StartEdge("edge1", edge.Config{})
	st := e.Store()

	signer := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	keys := firmware.KeySet{Version: 1, Threshold: 1, Keys: []firmware.Key{firmware.NewKey(signer.Public().(ed25519.PublicKey))}}
	reg := &firmware.Registry{Store: st, Keys: func() (firmware.KeySet, error) { return keys, nil }}
	sign := func(version string) []byte {
		img := []byte("thermo firmware " + version)
		m := firmware.Manifest{Name: "sensor-fw", Version: firmware.MustVersion(version), Class: "thermo",
			SHA256: sha256.Sum256(img), Size: int64(len(img))}
		b, err := firmware.Sign(m, signer)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := reg.Publish(ctx, b, bytes.NewReader(img)); err != nil {
			t.Fatal(err)
		}
		return b
	}
	old, next := sign("1.0.0"), sign("1.2.0")

	creds, pool, err := device.Credentials(f.Certs, []string{"therm-1"}, "thermo")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := certs.IssueToken(f.Auth.TokenKey, certs.TokenClaims{Subject: "therm-1", Role: certs.RoleViewer}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	a, err := device.NewAgent(device.AgentConfig{ID: "therm-1", Class: "thermo", Dir: t.TempDir(), Keys: keys,
		Version: firmware.MustVersion("1.1.0"), Source: &device.HTTPSource{Base: "http://" + e.HTTPAddr().String(), Token: tok}})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx, device.DialConfig{Addr: e.MQTTAddr().String(), Roots: pool}, creds[0]) }()
	t.Cleanup(func() { stop(); <-done })

	// The agent reports its version at start: wait for it in the shadow,
	// which also says its subscriptions are in place.
	waitShadow := func(want string) {
		testenv.WaitFor(t, 30*time.Second, "shadow firmware "+want, func() bool {
			d, err := shadow.Get(ctx, st, "therm-1")
			return err == nil && d.Firmware == want
		})
	}
	waitShadow("1.1.0")

	send := func(manifest []byte) {
		_, err := st.AppendMany(ctx, []store.AppendRequest{{Path: store.UpdatesStream, Topic: shadow.DeviceTopic("therm-1"), Partition: -1,
			Messages: []store.Message{{Value: manifest, Headers: map[string]string{gateway.HeaderSubtopic: device.SubtopicManifest}}}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	send(next)
	waitShadow("1.2.0")
	if a.Version() != firmware.MustVersion("1.2.0") {
		t.Fatalf("running %s", a.Version())
	}
	send(old)
	testenv.WaitFor(t, 30*time.Second, "the rollback refused in the device's history", func() bool {
		return lastStatus(ctx, t, st, "therm-1").Reason == string(firmware.ReasonNotNewer)
	})
	if a.Version() != firmware.MustVersion("1.2.0") {
		t.Fatalf("running %s after the replay", a.Version())
	}
}

// lastStatus is the newest firmware status of id in the edge's by_device
// history.
func lastStatus(ctx context.Context, t *testing.T, st *store.Store, id string) device.Status {
	msgs, err := st.Stream(store.ByDeviceStream).Read(ctx, id, 0, 0, store.ReadOptions{Limit: 10000})
	if err != nil {
		return device.Status{}
	}
	var out device.Status
	for _, m := range msgs {
		if m.Headers[gateway.HeaderTopic] == "devices/"+id+"/firmware/status" {
			json.Unmarshal(m.Value, &out)
		}
	}
	return out
}
