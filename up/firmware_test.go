package up

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/weft-io/weft/device"
	"github.com/weft-io/weft/firmware"
	"github.com/weft-io/weft/internal/testenv/wait"
	"github.com/weft-io/weft/shadow"
)

// TestFirmwareRolloutInUp signs two releases with the demo key of `weft
// up`, publishes them through the core's API and rolls them out to the
// simulated devices, with --firmware-fail 0.5: the pumps (none of which
// fails) all commit and run the new version, and the rollout succeeds;
// the chillers' rollout halts after its first wave, whose device rolled
// back, and the second wave's device is never sent the release.
func TestFirmwareRolloutInUp(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	f, err := Start(ctx, Config{DataDir: dir, Devices: 6, HTTPAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0",
		Interval: time.Second, FirmwareFail: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		<-f.Fleet.Done()
		f.Shutdown(context.Background())
	}()
	sim := device.SimFirmware{FailRate: 0.5}
	pumps, chillers := []string{"sim-pump-0", "sim-pump-1"}, []string{"sim-chiller-0", "sim-chiller-1"}
	for _, id := range pumps {
		if sim.Fails(id) {
			t.Fatalf("%s fails at 0.5: pick other devices", id)
		}
	}
	for _, id := range chillers {
		if !sim.Fails(id) {
			t.Fatalf("%s does not fail at 0.5: pick other devices", id)
		}
	}
	if f.FirmwareKey != filepath.Join(dir, DemoKeyDir, firmware.PrivateKeyFile) {
		t.Fatalf("demo key at %s", f.FirmwareKey)
	}
	if st, err := os.Stat(f.FirmwareKey); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("demo key: %v, %v", st, err)
	}

	base := "http://" + f.Core.HTTPAddr().String()
	do := func(req *http.Request) (int, []byte) {
		t.Helper()
		req.Header.Set("Authorization", "Bearer "+f.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	priv, err := firmware.ReadPrivateKey(f.FirmwareKey)
	if err != nil {
		t.Fatal(err)
	}
	publish := func(name, class string) {
		img := bytes.Repeat([]byte(name+" image "), 40000)
		m := firmware.Manifest{Name: name, Version: firmware.MustVersion("1.1.0"), Class: class, SHA256: sha256.Sum256(img), Size: int64(len(img))}
		signed, err := firmware.Sign(m, priv)
		if err != nil {
			t.Fatal(err)
		}
		var body bytes.Buffer
		mw := multipart.NewWriter(&body)
		p, _ := mw.CreateFormFile("manifest", "manifest.cose")
		p.Write(signed)
		p, _ = mw.CreateFormFile("image", "image")
		p.Write(img)
		mw.Close()
		req, _ := http.NewRequestWithContext(ctx, "POST", base+"/api/v1/firmware/releases", &body)
		req.Header.Set("Content-Type", mw.FormDataContentType())
		if code, b := do(req); code != http.StatusCreated {
			t.Fatalf("publish %s: %d %s", name, code, b)
		}
	}
	publish("pump-fw", "pump")
	publish("chiller-fw", "chiller")

	// The core targets the devices its shadows know.
	for _, id := range append(pumps, chillers...) {
		wait.For(t, time.Minute, id+" in the core's shadows", func() bool {
			d, err := shadow.Get(ctx, f.Core.Store(), id)
			return err == nil && d.Firmware == "1.0.0"
		})
	}
	create := func(release, target string) string {
		b, _ := json.Marshal(map[string]any{"release": release, "target": target, "waves": []int{50, 100},
			"failure_threshold": "10%", "min_executed": 1, "device_timeout": "2m"})
		req, _ := http.NewRequestWithContext(ctx, "POST", base+"/api/v1/firmware/rollouts", bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
		code, out := do(req)
		if code != http.StatusCreated {
			t.Fatalf("create rollout of %s: %d %s", release, code, out)
		}
		var s firmware.Summary
		json.Unmarshal(out, &s)
		return s.ID
	}
	get := func(id string) firmware.Summary {
		req, _ := http.NewRequestWithContext(ctx, "GET", base+"/api/v1/firmware/rollouts/"+id, nil)
		code, out := do(req)
		var s firmware.Summary
		if code == http.StatusOK {
			json.Unmarshal(out, &s)
		}
		return s
	}
	pumpRollout, chillerRollout := create("pump-fw@1.1.0", "class:pump"), create("chiller-fw@1.1.0", "class:chiller")

	var s firmware.Summary
	wait.For(t, 2*time.Minute, "the pumps' rollout to succeed", func() bool {
		s = get(pumpRollout)
		return s.State == firmware.Done || s.State == firmware.Halted
	})
	if s.State != firmware.Done || s.Counts.Succeeded != len(pumps) {
		t.Fatalf("pumps' rollout: %+v", s)
	}
	for _, id := range pumps {
		wait.For(t, time.Minute, id+" running 1.1.0 at the core", func() bool {
			d, err := shadow.Get(ctx, f.Core.Store(), id)
			return err == nil && d.Firmware == "1.1.0"
		})
	}
	wait.For(t, 2*time.Minute, "the chillers' rollout to halt", func() bool {
		s = get(chillerRollout)
		return s.State == firmware.Halted || s.State == firmware.Done
	})
	if s.State != firmware.Halted || s.HaltReason == "" || s.Counts.Failed != 1 || s.Counts.Queued != 1 {
		t.Fatalf("chillers' rollout: %+v", s)
	}
}
