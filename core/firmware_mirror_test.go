package core_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/weft-io/weft/core"
	"github.com/weft-io/weft/device"
	"github.com/weft-io/weft/edge"
	"github.com/weft-io/weft/firmware"
	"github.com/weft-io/weft/internal/testenv"
	"github.com/weft-io/weft/shadow"
	"github.com/weft-io/weft/sync/link"
	"github.com/weft-io/weft/sync/mirror"
	"github.com/weft-io/weft/sync/wire"
)

// classFabric is a core and two edges mirroring /firmware from it over
// real links, edge-pump and edge-thermo, with a firmware key the core
// trusts.
type classFabric struct {
	tb    testing.TB
	ctx   context.Context
	f     *testenv.Fabric
	core  *core.Node
	edges map[string]*edge.Node
	priv  ed25519.PrivateKey
	reg   *firmware.Registry
}

func startClassFabric(tb testing.TB, ctx context.Context) *classFabric {
	tb.Helper()
	f := testenv.New(tb)
	c := f.StartCore("core-1", core.Config{})
	fab := &classFabric{tb: tb, ctx: ctx, f: f, core: c, edges: map[string]*edge.Node{}}
	for _, name := range []string{"edge-pump", "edge-thermo"} {
		fab.edges[name] = f.StartEdge(name, edge.Config{Core: c.SyncAddr().String(),
			Mirrors: []mirror.Spec{{Volume: firmware.Volume, Dir: wire.Down}},
			Link:    link.ClientConfig{MirrorInterval: 100 * time.Millisecond}})
	}
	var err error
	if fab.priv, err = firmware.GenerateKey(); err != nil {
		tb.Fatal(err)
	}
	keys := firmware.KeySet{Version: 1, Threshold: 1, Keys: []firmware.Key{firmware.NewKey(fab.priv.Public().(ed25519.PublicKey))}}
	fab.reg = &firmware.Registry{Store: c.Store(), Keys: func() (firmware.KeySet, error) { return keys, nil }}
	return fab
}

// connect connects device id of class to the edge and waits for the
// core's shadow to place it there.
func (fab *classFabric) connect(edgeName, id, class string) {
	tb := fab.tb
	tb.Helper()
	creds, pool, err := device.Credentials(fab.f.Certs, []string{id}, class)
	if err != nil {
		tb.Fatal(err)
	}
	dev, err := device.Connect(fab.ctx, device.DialConfig{Addr: fab.edges[edgeName].MQTTAddr().String(), Roots: pool}, id, creds[0], true, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { dev.Disconnect(&paho.Disconnect{}) })
	testenv.WaitFor(tb, time.Minute, id+" behind "+edgeName+" in the core's shadows", func() bool {
		d, err := shadow.Get(fab.ctx, fab.core.Store(), id)
		return err == nil && d.Class == class && d.Edge == edgeName
	})
}

// publish stores a release of a random image of size bytes at the core.
func (fab *classFabric) publish(name, version, class string, size int) firmware.Release {
	tb := fab.tb
	tb.Helper()
	img := make([]byte, size)
	rand.Read(img)
	m := firmware.Manifest{Name: name, Version: firmware.MustVersion(version), Class: class, SHA256: sha256.Sum256(img), Size: int64(size)}
	signed, err := firmware.Sign(m, fab.priv)
	if err != nil {
		tb.Fatal(err)
	}
	rel, err := fab.reg.Publish(fab.ctx, signed, bytes.NewReader(img))
	if err != nil {
		tb.Fatal(err)
	}
	return rel
}

func (fab *classFabric) holds(edgeName, path string) bool {
	_, err := fab.edges[edgeName].Store().Stat(fab.ctx, path)
	return err == nil
}

func (fab *classFabric) waitHolds(edgeName, path string) {
	fab.tb.Helper()
	testenv.WaitFor(fab.tb, 5*time.Minute, edgeName+" holding "+path, func() bool { return fab.holds(edgeName, path) })
}

// sent reads weft_mirror_sent_bytes_total of /firmware, by edge, from
// the core's /metrics.
func (fab *classFabric) sent() map[string]float64 {
	tb := fab.tb
	tb.Helper()
	resp, err := http.Get("http://" + fab.core.HTTPAddr().String() + "/metrics")
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, `weft_mirror_sent_bytes_total{edge="`)
		if !ok || !strings.Contains(line, fmt.Sprintf(`volume=%q`, firmware.Volume)) {
			continue
		}
		edgeName, _, _ := strings.Cut(rest, `"`)
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			tb.Fatalf("metrics line %q: %v", line, err)
		}
		out[edgeName] = v
	}
	return out
}

// TestFirmwareImagesToEdgesOfTheirClass: one edge with a pump, the other
// with only a thermo device. A pump release: the pump edge gets its
// manifest and image, the thermo edge only the manifest. A pump device
// then comes to the thermo edge: that edge gets the image, with no new
// release. Each edge is sent the image once, as the core's
// weft_mirror_sent_bytes_total counts.
func TestFirmwareImagesToEdgesOfTheirClass(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	fab := startClassFabric(t, ctx)
	fab.connect("edge-pump", "pump-1", "pump")
	fab.connect("edge-thermo", "thermo-1", "thermo")

	const imageSize = 1 << 20
	pump := fab.publish("pump-fw", "1.0.0", "pump", imageSize)
	for name := range fab.edges {
		fab.waitHolds(name, pump.ManifestPath)
	}
	fab.waitHolds("edge-pump", pump.ImagePath)
	// The manifest and the decision on the image come in one update.
	if fab.holds("edge-thermo", pump.ImagePath) {
		t.Fatal("the thermo edge got the pump image")
	}
	sent := fab.sent()
	if sent["edge-pump"] < imageSize || sent["edge-pump"] > imageSize*11/10 || sent["edge-thermo"] > 64<<10 {
		t.Fatalf("bytes sent after the pump release: %v", sent)
	}

	// A pump comes to the thermo edge: the image follows, alone.
	fab.connect("edge-thermo", "pump-2", "pump")
	fab.waitHolds("edge-thermo", pump.ImagePath)
	want, err := fab.edges["edge-pump"].Store().Stat(ctx, pump.ImagePath)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := fab.edges["edge-thermo"].Store().Stat(ctx, pump.ImagePath); err != nil || got.SHA256 != want.SHA256 || got.Size != imageSize {
		t.Fatalf("the thermo edge's image: %+v, %v; want %+v", got, err, want)
	}
	// Another pump on the pump edge, and a small release after it that
	// both edges get: by then, every resend there was would have gone.
	fab.connect("edge-pump", "pump-3", "pump")
	small := fab.publish("meter-fw", "1.0.0", "meter", 1000)
	for name := range fab.edges {
		fab.waitHolds(name, small.ManifestPath)
	}
	sent = fab.sent()
	t.Logf("bytes sent by the end: %v", sent)
	for name, n := range sent {
		if n < imageSize || n > imageSize*11/10 {
			t.Errorf("%s was sent %.0f bytes, want the %d-byte image once", name, n, imageSize)
		}
	}
	if len(sent) != 2 {
		t.Fatalf("bytes sent: %v", sent)
	}
}

// BenchmarkFirmwareMirrorByClass publishes a 16 MiB pump release b.N
// times to a core with two edges mirroring /firmware, one with a pump,
// one with only a thermo device, and reports the MiB of mirror entries
// the core sent each edge per release (weft_mirror_sent_bytes_total),
// once the pump edge holds the image and both the manifest. The command
// docs/benchmarks.md ran:
//
//	go test ./core -run '^$' -bench FirmwareMirrorByClass -benchtime 3x
func BenchmarkFirmwareMirrorByClass(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fab := startClassFabric(b, ctx)
	fab.connect("edge-pump", "pump-1", "pump")
	fab.connect("edge-thermo", "thermo-1", "thermo")
	const size = 16 << 20
	before := fab.sent()
	b.SetBytes(size)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rel := fab.publish("pump-fw", fmt.Sprintf("1.%d.0", i), "pump", size)
		fab.waitHolds("edge-pump", rel.ImagePath)
		fab.waitHolds("edge-pump", rel.ManifestPath)
		fab.waitHolds("edge-thermo", rel.ManifestPath)
	}
	b.StopTimer()
	after := fab.sent()
	if fab.holds("edge-thermo", "/firmware/pump-fw/1.0.0/image") {
		b.Fatal("the thermo edge got a pump image")
	}
	for _, name := range []string{"edge-pump", "edge-thermo"} {
		b.ReportMetric((after[name]-before[name])/float64(b.N)/(1<<20), "MiB-to-"+strings.TrimPrefix(name, "edge-")+"-edge/release")
	}
}
