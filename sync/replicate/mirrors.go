package replicate

import (
	"context"

	"github.com/weft-io/weft/store"
	"github.com/weft-io/weft/sync/mirror"
)

// The names below moved to package mirror with the rest of volume
// mirroring; they remain for the callers not yet moved over.

// MirrorSpec is one volume mirror of an edge's link.
//
// Deprecated: use mirror.Spec.
type MirrorSpec = mirror.Spec

// MirrorsTable is where `weft mirror add` keeps a node's mirrors.
//
// Deprecated: use mirror.Table.
const MirrorsTable = mirror.Table

// ParseMirror reads a mirror as `weft mirror add` and --mirror give it.
//
// Deprecated: use mirror.ParseSpec.
func ParseMirror(s string) (MirrorSpec, error) { return mirror.ParseSpec(s) }

// AddMirror records a mirror in st.
//
// Deprecated: use mirror.Add.
func AddMirror(ctx context.Context, st *store.Store, from, to string) (MirrorSpec, error) {
	return mirror.Add(ctx, st, from, to)
}

// RemoveMirror forgets the mirror of volume vol.
//
// Deprecated: use mirror.Remove.
func RemoveMirror(ctx context.Context, st *store.Store, vol string) error {
	return mirror.Remove(ctx, st, vol)
}

// Mirrors lists the mirrors recorded in st.
//
// Deprecated: use mirror.List.
func Mirrors(ctx context.Context, st *store.Store) ([]MirrorSpec, error) { return mirror.List(ctx, st) }

// MirrorInterval is not read by anything.
//
// Deprecated: set link.ClientConfig.MirrorInterval and
// link.ServerConfig.MirrorInterval. It remains only until the last test
// that assigns it stops doing so.
var MirrorInterval = mirror.DefaultInterval
