package link

import (
	"context"
	"testing"
	"time"

	"github.com/weft-io/weft/store"
	"github.com/weft-io/weft/sync/replicate"
)

// TestReplicaGetsSourcePolicy: a stream whose volume the core lacks is
// created there with the edge's retention and limits (the volume's and the
// stream's own), carried in Open; a volume the core has keeps its own;
// and an edge of before policies still gets its stream replicated, into a
// volume made with none.
func TestReplicaGetsSourcePolicy(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		old  bool
	}{{"policy carried", false}, {"older edge", true}} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFabric(t, ServerConfig{})
			vol := store.VolumeOptions{TTL: 36 * time.Hour, Quota: 3 << 30, DropOldest: true}
			if err := f.edge.CreateVolume(ctx, "training", vol); err != nil {
				t.Fatal(err)
			}
			sopts := store.StreamOptions{Partitions: 2, TTL: 90 * time.Minute, MaxBytes: 64 << 20, Priority: 3}
			if err := f.edge.CreateStream(ctx, "/training/windows", sopts); err != nil {
				t.Fatal(err)
			}
			// A volume the core has already keeps its policy.
			if err := f.core.CreateVolume(ctx, "kept", store.VolumeOptions{TTL: time.Hour}); err != nil {
				t.Fatal(err)
			}
			if err := f.edge.CreateVolume(ctx, "kept", store.VolumeOptions{TTL: 2 * time.Hour, Quota: 1 << 20}); err != nil {
				t.Fatal(err)
			}
			if err := f.edge.CreateStream(ctx, "/kept/s", store.StreamOptions{}); err != nil {
				t.Fatal(err)
			}
			appendN(t, f.edge, "/training/windows", "edge1", 20, 100, "w")
			appendN(t, f.edge, "/kept/s", "edge1", 5, 100, "k")
			f.startLink(ClientConfig{Up: append(replicate.DefaultUp(), "/training/windows", "/kept/s"), old: tc.old})
			waitSame(t, f.edge, f.core, "/training/windows", "/kept/s")

			vi, err := f.core.Volume("training")
			if err != nil {
				t.Fatal(err)
			}
			info, err := f.core.Stat(ctx, "/training/windows")
			if err != nil {
				t.Fatal(err)
			}
			if tc.old {
				if vi.TTL != 0 || vi.Quota != 0 || vi.DropOldest || info.TTL != 0 || info.MaxBytes != 0 {
					t.Errorf("from an older edge: volume %+v, stream %+v; want no policy", vi, info)
				}
			} else {
				if vi.TTL != vol.TTL || vi.Quota != vol.Quota || !vi.DropOldest {
					t.Errorf("core's volume %+v, want the edge's %+v", vi, vol)
				}
				if info.TTL != sopts.TTL || info.MaxBytes != sopts.MaxBytes || info.Priority != sopts.Priority {
					t.Errorf("core's stream %+v, want the edge's %+v", info, sopts)
				}
			}
			if info.Partitions != 2 {
				t.Errorf("core's stream has %d partitions", info.Partitions)
			}
			if kv, _ := f.core.Volume("kept"); kv.TTL != time.Hour || kv.Quota != 0 {
				t.Errorf("a volume the core had took the edge's policy: %+v", kv)
			}
		})
	}
}

// TestDownReplicaGetsSourcePolicy: the same down, carried in Accept: an
// edge lacking a stream the core sends creates it with the core's policy.
func TestDownReplicaGetsSourcePolicy(t *testing.T) {
	ctx := context.Background()
	f := newFabric(t, ServerConfig{Down: append(replicate.DefaultDown(), "/notices/all")})
	if err := f.core.CreateVolume(ctx, "notices", store.VolumeOptions{TTL: 48 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	if err := f.core.CreateStream(ctx, "/notices/all", store.StreamOptions{MaxBytes: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	appendN(t, f.core, "/notices/all", "all", 3, 100, "n")
	f.startLink(ClientConfig{Down: append(replicate.DefaultDown(), "/notices/all")})
	waitSame(t, f.core, f.edge, "/notices/all")
	vi, err := f.edge.Volume("notices")
	if err != nil || vi.TTL != 48*time.Hour {
		t.Fatalf("edge's volume %+v, %v: want the core's TTL", vi, err)
	}
	if info, err := f.edge.Stat(ctx, "/notices/all"); err != nil || info.MaxBytes != 1<<20 {
		t.Fatalf("edge's stream %+v, %v: want the core's size cap", info, err)
	}
}
