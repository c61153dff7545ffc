package models

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/weft-io/weft/firmware"
	"github.com/weft-io/weft/store"
)

// VersionFile splits the name of an object of the models volume,
// "<name>/<version>/<file>", into its model, version and file; ok is
// false for anything else (a directory, a stages file).
func VersionFile(obj string) (name string, v uint64, file string, ok bool) {
	parts := strings.Split(obj, "/")
	if len(parts) != 3 || !ValidName(parts[0]) || parts[2] == "" {
		return "", 0, "", false
	}
	v, err := ParseVersion(parts[1])
	if err != nil {
		return "", 0, "", false
	}
	return parts[0], v, parts[2], true
}

// Targeted reports whether object obj of the models volume is a
// version's file (manifest, parameters), which goes only to the edges
// with a device of the version's class (Delivery); directories and stages
// files go to every edge (they are small, and stages say what is
// released).
func Targeted(obj string) bool {
	_, _, _, ok := VersionFile(obj)
	return ok
}

// Delivery decides which edges the core's mirror of /models sends a
// version's files to (Targeted): those with a device of its class, read
// from its manifest, by the rule firmware's images follow
// (firmware.Targeting). Keep is the decision for one edge and object,
// the sync/mirror filter of the models volume; a version withheld goes
// once the edge gains a device of its class.
type Delivery struct {
	// Store holds /models. Required.
	Store *store.Store
	firmware.Targeting
}

// Keep reports whether object obj of the models volume (a path inside
// it, "thermo-bands/2/params.json") goes to edge.
func (d *Delivery) Keep(ctx context.Context, edge, obj string) (bool, error) {
	if !Targeted(obj) {
		return true, nil
	}
	name, v, _, _ := VersionFile(obj)
	ref := Ref{name, v}
	return d.Targeting.Keep(ctx, edge, ref.String(), func(ctx context.Context) (string, bool, error) {
		b, err := (&Registry{Store: d.Store}).ReadFile(ctx, name, v, ManifestFile, MaxManifestSize)
		if errors.Is(err, ErrNotFound) {
			return "", false, nil
		}
		if err != nil {
			return "", false, err
		}
		m, err := Parse(b)
		if err != nil {
			return "", false, fmt.Errorf("models: %s: %w", ref, err)
		}
		return m.Class, true, nil
	})
}
