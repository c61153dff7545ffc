package up

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"
)

// TestDesiredStateRoundTrip runs the fabric of `weft up` and changes a
// device's desired setpoint through the core's API: the change goes down
// to the edge and the device, the device applies and reports it, the
// report comes back up, and the delta at the core clears.
func TestDesiredStateRoundTrip(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	f, err := Start(ctx, Config{DataDir: t.TempDir(), Devices: 3, HTTPAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0", Interval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		<-f.Fleet.Done()
		f.Shutdown(context.Background())
	}()
	base := "http://" + f.Core.HTTPAddr().String()
	call := func(method, path string, body any) (int, map[string]any) {
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, _ := http.NewRequestWithContext(ctx, method, base+path, rd)
		req.Header.Set("Authorization", "Bearer "+f.Token)
		if method == "PATCH" {
			req.Header.Set("Content-Type", "application/merge-patch+json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	poll := func(what string, ok func() bool) {
		t.Helper()
		for !ok() {
			select {
			case <-ctx.Done():
				t.Fatalf("timed out waiting for %s", what)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	id := f.Fleet.IDs()[0] // a pump: setpoint 1..10
	shadow := func() map[string]any {
		code, doc := call("GET", "/api/v1/devices/"+id, nil)
		if code != 200 {
			return nil
		}
		return doc
	}
	poll("the core to hold the device's reported state", func() bool {
		s := shadow()
		r, _ := s["reported"].(map[string]any)
		return r["setpoint"] != nil
	})
	code, body := call("PATCH", "/api/v1/devices/"+id+"/desired", map[string]any{"setpoint": 8})
	if code != 200 {
		t.Fatalf("PATCH desired: %d %v", code, body)
	}
	poll("the device to apply the setpoint and the delta to clear", func() bool {
		s := shadow()
		r, _ := s["reported"].(map[string]any)
		d, _ := s["delta"].(map[string]any)
		return fmt.Sprint(r["setpoint"]) == "8" && len(d) == 0
	})
}

// TestModelsReachTheEdge writes a model file at the core of `weft up`; the
// volume mirror brings it to the edge.
func TestModelsReachTheEdge(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	f, err := Start(ctx, Config{DataDir: t.TempDir(), Devices: 1, HTTPAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0", MirrorInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		<-f.Fleet.Done()
		f.Shutdown(context.Background())
	}()
	model := bytes.Repeat([]byte("weights"), 100000)
	if _, err := f.Core.Store().File("/models/pump/anomaly-v1.onnx").Write(ctx, bytes.NewReader(model)); err != nil {
		t.Fatal(err)
	}
	for {
		if r, _, err := f.Edge.Store().File("/models/pump/anomaly-v1.onnx").Open(ctx); err == nil {
			got, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(got, model) {
				t.Fatalf("mirrored model differs: %v", err)
			}
			return
		}
		select {
		case <-ctx.Done():
			t.Fatal("the model never reached the edge")
		case <-time.After(50 * time.Millisecond):
		}
	}
}
