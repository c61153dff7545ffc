package replicate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/weft-io/weft/store"
	"github.com/weft-io/weft/sync/wire"
)

// MirrorsTable is where `weft mirror add` keeps a node's mirrors, keyed by
// volume; an edge reads it when it starts.
const MirrorsTable = "/config/mirrors"

type mirrorRecord struct {
	From string `json:"from"` // core:/<volume> or up:/<volume>
}

// String gives the spec as ParseMirror reads it.
func (m MirrorSpec) String() string {
	if m.Dir == wire.Up {
		return "up:/" + m.Volume
	}
	return "core:/" + m.Volume
}

// AddMirror records a mirror in st's MirrorsTable. from is core:/<volume>
// (down) or up:/<volume>; to is the local volume, which must have the same
// name (a mirror keeps the volume's name at both ends).
func AddMirror(ctx context.Context, st *store.Store, from, to string) (MirrorSpec, error) {
	spec, err := ParseMirror(from)
	if err != nil {
		return spec, err
	}
	if to != "" && strings.Trim(to, "/") != spec.Volume {
		return spec, fmt.Errorf("replicate: mirror %s to %s: a mirror keeps the volume's name (/%s)", from, to, spec.Volume)
	}
	if err := st.CreateVolume(ctx, "config", store.VolumeOptions{}); err != nil && !errors.Is(err, store.ErrExists) {
		return spec, err
	}
	if err := st.CreateTable(ctx, MirrorsTable, store.TableOptions{}); err != nil && !errors.Is(err, store.ErrExists) {
		return spec, err
	}
	b, _ := json.Marshal(mirrorRecord{From: spec.String()})
	_, err = st.Table(MirrorsTable).Put(ctx, spec.Volume, b)
	return spec, err
}

// RemoveMirror forgets the mirror of volume vol.
func RemoveMirror(ctx context.Context, st *store.Store, vol string) error {
	return st.Table(MirrorsTable).Delete(ctx, strings.Trim(vol, "/"))
}

// Mirrors lists the mirrors recorded in st.
func Mirrors(ctx context.Context, st *store.Store) ([]MirrorSpec, error) {
	docs, _, err := st.Table(MirrorsTable).Scan(ctx, "", "", 10000)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []MirrorSpec
	for _, d := range docs {
		var r mirrorRecord
		if err := json.Unmarshal(d.Value, &r); err != nil {
			return nil, fmt.Errorf("replicate: mirror %s: %w", d.Key, err)
		}
		spec, err := ParseMirror(r.From)
		if err != nil {
			return nil, err
		}
		out = append(out, spec)
	}
	return out, nil
}
