package device_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/weft-io/weft/device"
	"github.com/weft-io/weft/edge"
	"github.com/weft-io/weft/firmware"
	"github.com/weft-io/weft/gateway"
	"github.com/weft-io/weft/internal/testenv"
	"github.com/weft-io/weft/shadow"
	"github.com/weft-io/weft/store"
)

// TestAgentOverMQTTChunks runs the agent as a device that speaks only
// MQTT: announced a release, it fetches the manifest and an image of
// several chunks (across the store's chunk boundary) from the edge's chunk
// server over its own connection, through the gateway's ACL, and commits.
func TestAgentOverMQTTChunks(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f := testenv.New(t)
	e := f.StartEdge("edge1", edge.Config{})
	st := e.Store()
	srvCtx, srvStop := context.WithCancel(ctx)
	srvDone := make(chan error, 1)
	go func() { srvDone <- (&firmware.ChunkServer{Store: st}).Run(srvCtx) }()
	t.Cleanup(func() { srvStop(); <-srvDone })

	signer := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, 32))
	keys := firmware.KeySet{Version: 1, Threshold: 1, Keys: []firmware.Key{firmware.NewKey(signer.Public().(ed25519.PublicKey))}}
	reg := &firmware.Registry{Store: st, Keys: func() (firmware.KeySet, error) { return keys, nil }}
	img := make([]byte, 5*firmware.MaxChunk+store.ChunkSize/3)
	for i := range img {
		img[i] = byte(i*13 + i>>9)
	}
	m := firmware.Manifest{Name: "sensor-fw", Version: firmware.MustVersion("1.2.0"), Class: "thermo",
		SHA256: sha256.Sum256(img), Size: int64(len(img))}
	signed, err := firmware.Sign(m, signer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Publish(ctx, signed, bytes.NewReader(img)); err != nil {
		t.Fatal(err)
	}

	creds, pool, err := device.Credentials(f.Certs, []string{"therm-1"}, "thermo")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	a, err := device.NewAgent(device.AgentConfig{ID: "therm-1", Class: "thermo", Dir: dir, Keys: keys,
		Version: firmware.MustVersion("1.1.0")})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx, device.DialConfig{Addr: e.MQTTAddr().String(), Roots: pool}, creds[0]) }()
	t.Cleanup(func() { stop(); <-done })
	testenv.WaitFor(t, 30*time.Second, "the agent's version in the shadow", func() bool {
		d, err := shadow.Get(ctx, st, "therm-1")
		return err == nil && d.Firmware == "1.1.0"
	})

	ann, _ := json.Marshal(firmware.Announcement{Rollout: "r1", Release: "sensor-fw@1.2.0", Name: "sensor-fw", Version: "1.2.0"})
	if _, err := st.AppendMany(ctx, []store.AppendRequest{{Path: store.UpdatesStream, Topic: shadow.DeviceTopic("therm-1"), Partition: -1,
		Messages: []store.Message{{Value: ann, Headers: map[string]string{gateway.HeaderSubtopic: device.SubtopicAnnounce}}}}}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 60*time.Second, "the release committed", func() bool {
		d, err := shadow.Get(ctx, st, "therm-1")
		return err == nil && d.Firmware == "1.2.0"
	})
	if s := lastStatus(ctx, t, st, "therm-1"); s.State != device.StepCommitted {
		t.Fatalf("last status %+v", s)
	}
	if a.Version() != firmware.MustVersion("1.2.0") {
		t.Fatalf("running %s", a.Version())
	}
	if got, err := os.ReadFile(a.ActiveSlot()); err != nil || !bytes.Equal(got, img) {
		t.Fatalf("the active slot differs from the image (%d bytes, %v)", len(got), err)
	}
}
