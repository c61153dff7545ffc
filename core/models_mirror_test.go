package core_test

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/weft-io/weft/core"
	"github.com/weft-io/weft/edge"
	"github.com/weft-io/weft/internal/testenv"
	"github.com/weft-io/weft/models"
	"github.com/weft-io/weft/sync/link"
	"github.com/weft-io/weft/sync/mirror"
	"github.com/weft-io/weft/sync/wire"
)

// TestModelsToEdgesOfTheirClass: a pump model's files go down to the edge
// with a pump, not to the edge with only a thermo device (which gets the
// model's stages), and follow a pump that comes to that edge.
func TestModelsToEdgesOfTheirClass(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The firmware test's fabric, its edges mirroring /models.
	f := testenv.New(t)
	c := f.StartCore("core-1", core.Config{})
	fab := &classFabric{tb: t, ctx: ctx, f: f, core: c, edges: map[string]*edge.Node{}}
	for _, name := range []string{"edge-pump", "edge-thermo"} {
		fab.edges[name] = f.StartEdge(name, edge.Config{Core: c.SyncAddr().String(),
			Mirrors: []mirror.Spec{{Volume: models.Volume, Dir: wire.Down}},
			Link:    link.ClientConfig{MirrorInterval: 100 * time.Millisecond}})
	}
	fab.connect("edge-pump", "pump-1", "pump")
	fab.connect("edge-thermo", "thermo-1", "thermo")

	key, err := models.LoadOrCreateKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	reg := &models.Registry{Store: fab.core.Store(), Key: key}
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	var rs []models.Reading
	for i := range 300 {
		rs = append(rs, models.Reading{Device: "pump-1", At: t0.Add(time.Duration(i) * time.Minute), Values: map[string]float64{"pressure_bar": 3 + math.Sin(float64(i)/10)}})
	}
	if _, _, err := reg.Train(ctx, models.TrainRequest{Name: "pump-bands", Class: "pump"}, rs); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Change(ctx, "pump-bands", models.ActionPublish, 1); err != nil {
		t.Fatal(err)
	}
	stages := "/" + models.Volume + "/pump-bands/" + models.StagesFile
	params := models.VersionDir("pump-bands", 1) + "/" + models.ParamsName
	manifest := models.VersionDir("pump-bands", 1) + "/" + models.ManifestFile
	for name := range fab.edges {
		fab.waitHolds(name, stages)
	}
	fab.waitHolds("edge-pump", params)
	fab.waitHolds("edge-pump", manifest)
	// The stages and the decision on the version's files come in one
	// update.
	if fab.holds("edge-thermo", params) || fab.holds("edge-thermo", manifest) {
		t.Fatal("the thermo edge got the pump model's files")
	}
	fab.connect("edge-thermo", "pump-2", "pump")
	fab.waitHolds("edge-thermo", params)
	fab.waitHolds("edge-thermo", manifest)
}
