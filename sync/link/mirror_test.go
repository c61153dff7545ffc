package link

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"testing"
	"time"

	"github.com/weft-io/weft/store"
	"github.com/weft-io/weft/sync/mirror"
	"github.com/weft-io/weft/sync/wire"
)

// TestMirrorOverLink mirrors the core's /models down to the edge over the
// link, follows a new release, refuses a volume the core does not mirror,
// and mirrors an edge volume up into the core's "<volume>.<edge>".
func TestMirrorOverLink(t *testing.T) {
	f := newFabric(t, ServerConfig{MirrorsUp: []string{"training"}, MirrorInterval: 20 * time.Millisecond})
	ctx := context.Background()
	model := make([]byte, 3<<20)
	rand.Read(model)
	if _, err := f.core.File("/models/pump/v1.onnx").Write(ctx, bytes.NewReader(model)); err != nil {
		t.Fatal(err)
	}
	f.edge.CreateVolume(ctx, "training", store.VolumeOptions{})
	f.edge.File("/training/window-1.csv").Write(ctx, bytes.NewReader([]byte("t,v\n1,2\n")))
	f.core.CreateVolume(ctx, "secrets", store.VolumeOptions{})
	f.startLink(ClientConfig{MirrorInterval: 20 * time.Millisecond, Mirrors: []mirror.Spec{
		{Volume: "models", Dir: wire.Down},
		{Volume: "secrets", Dir: wire.Down},
		{Volume: "training", Dir: wire.Up},
	}})
	read := func(s *store.Store, p string) []byte {
		r, _, err := s.File(p).Open(ctx)
		if err != nil {
			return nil
		}
		b, _ := io.ReadAll(r)
		return b
	}
	waitFor(t, "the model at the edge", func() bool { return bytes.Equal(read(f.edge, "/models/pump/v1.onnx"), model) })
	waitFor(t, "the training data at the core", func() bool {
		return string(read(f.core, "/training.edge1/window-1.csv")) == "t,v\n1,2\n"
	})
	// A new release follows; the old one goes.
	model2 := bytes.Repeat([]byte("v2"), 1<<20)
	f.core.File("/models/pump/v2.onnx").Write(ctx, bytes.NewReader(model2))
	f.core.Delete(ctx, "/models/pump/v1.onnx")
	waitFor(t, "the second release at the edge", func() bool {
		_, err := f.edge.Stat(ctx, "/models/pump/v1.onnx")
		return bytes.Equal(read(f.edge, "/models/pump/v2.onnx"), model2) && err != nil
	})
	if list, _ := f.edge.List(ctx, "/secrets"); len(list) != 0 {
		t.Fatalf("a volume the core does not mirror reached the edge: %v", list)
	}
	// The link itself stayed up: replication goes on.
	appendN(t, f.edge, store.UplinkStream, "edge1", 10, 100, "after")
	waitSame(t, f.edge, f.core, store.UplinkStream)
}

// TestMirrorWithinRateLimit mirrors 2 MiB of incompressible data down a
// link capped at 1 MiB/s: the mirror draws from the link's budget, so it
// cannot arrive sooner than the cap allows (its bytes less one burst).
// That is the cap holding, not a speed goal.
func TestMirrorWithinRateLimit(t *testing.T) {
	const rate = 1 << 20
	f := newFabric(t, ServerConfig{RateLimit: rate, MirrorInterval: 20 * time.Millisecond})
	ctx := context.Background()
	model := make([]byte, 2<<20)
	rand.Read(model)
	if _, err := f.core.File("/models/pump/v1.onnx").Write(ctx, bytes.NewReader(model)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	f.startLink(ClientConfig{MirrorInterval: 20 * time.Millisecond, Mirrors: []mirror.Spec{{Volume: "models", Dir: wire.Down}}})
	waitFor(t, "the model at the edge", func() bool {
		r, _, err := f.edge.File("/models/pump/v1.onnx").Open(ctx)
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(r)
		return bytes.Equal(b, model)
	})
	took := time.Since(start)
	burst := max(rate/10, 64<<10)
	least := time.Duration(float64(len(model)-burst) / rate * float64(time.Second))
	if took < least {
		t.Fatalf("%d bytes mirrored in %s over a link capped at %d B/s: the cap allows no less than %s", len(model), took, rate, least)
	}
	t.Logf("%d bytes mirrored in %s (the cap allows no less than %s)", len(model), took, least)
}
