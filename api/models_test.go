package api

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/weft-io/weft/anomaly"
	"github.com/weft-io/weft/certs"
	sig "github.com/weft-io/weft/internal/signed"
	"github.com/weft-io/weft/models"
	"github.com/weft-io/weft/store"
)

// modelEnv is an API with a certificate directory (and so a model key)
// and two thermo devices behind edge-a with two days of readings.
func modelEnv(t *testing.T) (*env, string, time.Time) {
	t.Helper()
	dir := t.TempDir()
	e := newEnv(t, func(c *Config) { c.FirmwareKeys = filepath.Join(dir, "firmware-keys.json") })
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for _, id := range []string{"th-1", "th-2"} {
		if _, err := e.st.Table(store.ShadowsTable).Put(ctx, id, json.RawMessage(`{"class":"thermo","edge":"edge-a"}`)); err != nil {
			t.Fatal(err)
		}
		var msgs []store.Message
		for i := range 2 * 144 {
			at := t0.Add(time.Duration(i) * 10 * time.Minute)
			temp := 20 + 5*math.Sin(2*math.Pi*float64(i)/144)
			msgs = append(msgs, store.Message{Value: fmt.Appendf(nil, `{"temp":%g}`, temp), Timestamp: at,
				Headers: map[string]string{headerMQTTTopic: "devices/" + id + "/telemetry", "device": id}})
		}
		if _, err := e.st.Stream(store.ByDeviceStream).Append(ctx, id, msgs...); err != nil {
			t.Fatal(err)
		}
	}
	return e, dir, t0
}

func TestModelsTrainPublishPromote(t *testing.T) {
	e, dir, t0 := modelEnv(t)
	op := e.token(certs.RoleOperator)
	body := fmt.Sprintf(`{"name":"thermo-bands","class":"thermo","from":%q,"to":%q}`, t0.Format(time.RFC3339), t0.Add(48*time.Hour).Format(time.RFC3339))
	if resp, b := e.do("POST", "/api/v1/models/train", e.token(certs.RoleViewer), body); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a viewer trained: %d %s", resp.StatusCode, b)
	}
	resp, b := e.do("POST", "/api/v1/models/train", op, body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("train: %d %s", resp.StatusCode, b)
	}
	var tr ModelTrainResponse
	if err := json.Unmarshal(b, &tr); err != nil {
		t.Fatal(err)
	}
	if tr.Manifest.Version != 1 || tr.Manifest.Training.Devices != 2 || tr.Manifest.Training.Readings != 2*2*144 || len(tr.Report.Channels) != 1 || tr.Report.Channels[0].Epoch != 144 {
		t.Fatalf("trained %s", b)
	}

	// The stored artifact verifies against the key the core made.
	pub, err := models.ReadPublicKey(filepath.Join(dir, models.PublicKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	_, man := e.do("GET", "/api/v1/models/thermo-bands/1/manifest", op, "")
	_, params := e.do("GET", "/api/v1/models/thermo-bands/1/params", op, "")
	if v := models.Verify(models.Input{Manifest: man, Keys: []sig.Key{pub}, Class: "thermo",
		Params: &models.Params{SHA256: sha256.Sum256(params), Size: int64(len(params))}}); !v.OK() {
		t.Fatalf("served artifact: %v", v)
	}

	var m ModelResponse
	e.get("/api/v1/models/thermo-bands", certs.RoleViewer, http.StatusOK, &m)
	if len(m.Versions) != 0 || len(m.Trained) != 1 || m.Class != "thermo" {
		t.Fatalf("before publish %+v", m)
	}
	if resp, b := e.do("POST", "/api/v1/models/thermo-bands/1/promote", op, ""); resp.StatusCode != http.StatusConflict {
		t.Fatalf("promoted an unpublished version: %d %s", resp.StatusCode, b)
	}
	for _, a := range []string{"publish", "promote"} {
		if resp, b := e.do("POST", "/api/v1/models/thermo-bands/1/"+a, op, ""); resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %s", a, resp.StatusCode, b)
		}
	}

	// An edge's status record, as it appends it to its uplink.
	rec, _ := json.Marshal(models.StatusRecord{Type: models.RecordStatus, Edge: "edge-a", Model: "thermo-bands", At: t0,
		Versions: map[string]models.EdgeState{"1": {State: models.StateRunning, Scored: 42, Agreement: 0.99}}})
	if _, err := e.st.Stream(store.UplinkStream).Append(context.Background(), "edge-a", store.Message{Key: []byte("thermo-bands"), Value: rec,
		Headers: map[string]string{anomaly.RecordHeader: models.RecordStatus}}); err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	e.get("/api/v1/models/thermo-bands", certs.RoleViewer, http.StatusOK, &raw)
	v := raw["versions"].([]any)[0].(map[string]any)
	edge := v["edges"].(map[string]any)["edge-a"].(map[string]any)
	if raw["name"] != "thermo-bands" || raw["class"] != "thermo" || v["version"] != 1.0 || v["stage"] != "live" ||
		edge["state"] != "running" || edge["scored"] != 42.0 || edge["agreement"] != 0.99 || edge["drift"] != 0.0 {
		t.Fatalf("model %v", raw)
	}
	var list ModelsResponse
	e.get("/api/v1/models", certs.RoleViewer, http.StatusOK, &list)
	if len(list.Models) != 1 || list.Models[0].Versions[0].Stage != "live" {
		t.Fatalf("list %+v", list)
	}
	if resp, b := e.do("POST", "/api/v1/models/thermo-bands/1/retire", op, ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("retire: %d %s", resp.StatusCode, b)
	}
	if resp, b := e.do("GET", "/api/v1/models/nothing", op, ""); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("get of nothing: %d %s", resp.StatusCode, b)
	}
	// No telemetry of the class in the window.
	empty := fmt.Sprintf(`{"name":"pumps","class":"pump","from":%q}`, t0.Format(time.RFC3339))
	if resp, b := e.do("POST", "/api/v1/models/train", op, empty); resp.StatusCode != http.StatusUnprocessableEntity {
		t.Fatalf("train on nothing: %d %s", resp.StatusCode, b)
	}
}

func TestModelsTrainWithoutKey(t *testing.T) {
	e := newEnv(t)
	resp, b := e.do("POST", "/api/v1/models/train", e.token(certs.RoleOperator), `{"name":"m","class":"c","from":"2026-01-01T00:00:00Z"}`)
	problem(t, resp, b, http.StatusServiceUnavailable)
}

// TestModelsTrainReadsDecoy: training reads, beside the class's
// histories, the readings the edges' decoys archived in /uplink/events,
// once each, of the class only.
func TestModelsTrainReadsDecoy(t *testing.T) {
	e, _, t0 := modelEnv(t)
	ctx := context.Background()
	if _, err := e.st.Table(store.ShadowsTable).Put(ctx, "th-3", json.RawMessage(`{"class":"thermo","edge":"edge-a"}`)); err != nil {
		t.Fatal(err)
	}
	input := func(dev, class string, at time.Time) store.Message {
		b, _ := json.Marshal(models.InputRecord{Type: models.RecordInput, Device: dev, Class: class, At: at, Values: map[string]float64{"temp": 21}})
		return store.Message{Key: []byte(dev), Value: b, Timestamp: at, Headers: map[string]string{anomaly.RecordHeader: models.RecordInput}}
	}
	var msgs []store.Message
	for i := range 10 {
		msgs = append(msgs, input("th-3", "thermo", t0.Add(time.Duration(i)*time.Hour)))
	}
	msgs = append(msgs, input("th-1", "thermo", t0), // already in th-1's history
		input("p-1", "pump", t0.Add(time.Minute)))
	if _, err := e.st.Stream(store.UplinkStream).Append(ctx, "edge-a", msgs...); err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf(`{"name":"thermo-bands","class":"thermo","from":%q,"to":%q}`, t0.Format(time.RFC3339), t0.Add(48*time.Hour).Format(time.RFC3339))
	resp, b := e.do("POST", "/api/v1/models/train", e.token(certs.RoleOperator), body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("train: %d %s", resp.StatusCode, b)
	}
	var tr ModelTrainResponse
	if err := json.Unmarshal(b, &tr); err != nil {
		t.Fatal(err)
	}
	if tr.Manifest.Training.Readings != 2*2*144+10 || tr.Manifest.Training.Devices != 3 {
		t.Fatalf("trained on %d readings of %d devices", tr.Manifest.Training.Readings, tr.Manifest.Training.Devices)
	}
}
