package mirror

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/weft-io/weft/store"
	"github.com/weft-io/weft/sync/wire"
)

// Table is where `weft mirror add` keeps a node's mirrors, keyed by
// volume; an edge reads it when it starts.
const Table = "/config/mirrors"

// DefaultDown returns the volumes a core lets its edges mirror down.
func DefaultDown() []string { return []string{"models", "firmware"} }

// Spec is one volume mirror of an edge's link: Down mirrors a core volume
// into the edge's volume of the same name, Up the edge's volume into the
// core's "<volume>.<edge>".
type Spec struct {
	Volume string
	Dir    wire.Dir
}

// ParseSpec reads a mirror as `weft mirror add` and --mirror give it:
// "core:/models" (down) or "/training" mirrored up ("up:/training").
func ParseSpec(s string) (Spec, error) {
	dir, vol := wire.Down, s
	switch {
	case strings.HasPrefix(s, "core:"):
		vol = strings.TrimPrefix(s, "core:")
	case strings.HasPrefix(s, "up:"):
		dir, vol = wire.Up, strings.TrimPrefix(s, "up:")
	}
	vol = strings.Trim(vol, "/")
	if vol == "" || strings.Contains(vol, "/") {
		return Spec{}, fmt.Errorf("mirror: %q: want core:/<volume> or up:/<volume>", s)
	}
	if slices.Contains(store.WellKnownVolumes, vol) && !slices.Contains(DefaultDown(), vol) || vol == "config" {
		return Spec{}, fmt.Errorf("mirror: %q: /%s is a node's own volume, kept by its streams and tables (replicate its streams instead); a mirror can only copy models, firmware or a volume of your own", s, vol)
	}
	if dir == wire.Up && slices.Contains(DefaultDown(), vol) {
		return Spec{}, fmt.Errorf("mirror: %q: /%s comes down from the core; it cannot also go up", s, vol)
	}
	return Spec{Volume: vol, Dir: dir}, nil
}

// String gives the spec as ParseSpec reads it.
func (m Spec) String() string {
	if m.Dir == wire.Up {
		return "up:/" + m.Volume
	}
	return "core:/" + m.Volume
}

type record struct {
	From string `json:"from"` // core:/<volume> or up:/<volume>
}

// Add records a mirror in st's Table. from is core:/<volume> (down) or
// up:/<volume>; to is the local volume, which must have the same name (a
// mirror keeps the volume's name at both ends).
func Add(ctx context.Context, st *store.Store, from, to string) (Spec, error) {
	spec, err := ParseSpec(from)
	if err != nil {
		return spec, err
	}
	if to != "" && strings.Trim(to, "/") != spec.Volume {
		return spec, fmt.Errorf("mirror: %s to %s: a mirror keeps the volume's name (/%s)", from, to, spec.Volume)
	}
	if err := st.CreateVolume(ctx, "config", store.VolumeOptions{}); err != nil && !errors.Is(err, store.ErrExists) {
		return spec, err
	}
	if err := st.CreateTable(ctx, Table, store.TableOptions{}); err != nil && !errors.Is(err, store.ErrExists) {
		return spec, err
	}
	b, _ := json.Marshal(record{From: spec.String()})
	_, err = st.Table(Table).Put(ctx, spec.Volume, b)
	return spec, err
}

// Remove forgets the mirror of volume vol.
func Remove(ctx context.Context, st *store.Store, vol string) error {
	return st.Table(Table).Delete(ctx, strings.Trim(vol, "/"))
}

// List lists the mirrors recorded in st.
func List(ctx context.Context, st *store.Store) ([]Spec, error) {
	docs, _, err := st.Table(Table).Scan(ctx, "", "", 10000)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Spec
	for _, d := range docs {
		var r record
		if err := json.Unmarshal(d.Value, &r); err != nil {
			return nil, fmt.Errorf("mirror: %s: %w", d.Key, err)
		}
		spec, err := ParseSpec(r.From)
		if err != nil {
			return nil, err
		}
		out = append(out, spec)
	}
	return out, nil
}
