package models

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

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

// Sends is the class-targeted delivery rule for one object of the models
// volume and one edge, as firmware's (firmware.SendsImage): directories
// and stages files go to every edge (they are small, and stages say
// what is released); a version's files (manifest, parameters) go only
// to an edge with a device of the version's class. known is false while
// the class cannot be read (the manifest not written yet): such files
// wait.
func Sends(obj, class string, known bool, edgeClasses map[string]bool) bool {
	if _, _, _, ok := VersionFile(obj); !ok {
		return true
	}
	return known && edgeClasses[class]
}

// DefaultClassesFresh is the default of Delivery.Fresh.
const DefaultClassesFresh = 5 * time.Second

// Delivery decides which edges the core's mirror of /models sends a
// version's files to (Sends): those with a device of its class, read
// from its manifest. Keep is the decision for one edge and object, the
// sync/mirror filter of the models volume; a version withheld goes once
// the edge gains a device of its class.
type Delivery struct {
	// Store holds /models. Required.
	Store *store.Store
	// EdgeClasses returns, for every edge, the classes of the devices
	// behind it (at the core: firmware.Places.EdgeClasses). Required.
	EdgeClasses func(ctx context.Context) (map[string]map[string]bool, error)
	// Fresh is how long one answer of EdgeClasses serves every edge.
	// Default DefaultClassesFresh.
	Fresh time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time

	mu      sync.Mutex
	classes map[string]map[string]bool
	taken   time.Time

	verMu   sync.Mutex
	version map[Ref]string // -> class, from the manifest
}

// Keep reports whether object obj of the models volume (a path inside
// it, "thermo-bands/2/params.json") goes to edge.
func (d *Delivery) Keep(ctx context.Context, edge, obj string) (bool, error) {
	name, v, _, ok := VersionFile(obj)
	if !ok {
		return true, nil
	}
	class, known, err := d.classOf(ctx, Ref{name, v})
	if err != nil || !known {
		return false, err
	}
	classes, err := d.edgeClasses(ctx)
	if err != nil {
		return false, err
	}
	return Sends(obj, class, known, classes[edge]), nil
}

// classOf reads a version's class from its stored manifest, once: a
// version of a name is one model for good.
func (d *Delivery) classOf(ctx context.Context, ref Ref) (string, bool, error) {
	d.verMu.Lock()
	class, ok := d.version[ref]
	d.verMu.Unlock()
	if ok {
		return class, true, nil
	}
	b, err := (&Registry{Store: d.Store}).ReadFile(ctx, ref.Name, ref.Version, ManifestFile, MaxManifestSize)
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
	d.verMu.Lock()
	defer d.verMu.Unlock()
	if d.version == nil {
		d.version = map[Ref]string{}
	}
	d.version[ref] = m.Class
	return m.Class, true, nil
}

func (d *Delivery) edgeClasses(ctx context.Context) (map[string]map[string]bool, error) {
	now := time.Now
	if d.Now != nil {
		now = d.Now
	}
	fresh := d.Fresh
	if fresh <= 0 {
		fresh = DefaultClassesFresh
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if t := now(); d.classes != nil && t.Sub(d.taken) >= 0 && t.Sub(d.taken) < fresh {
		return d.classes, nil
	}
	c, err := d.EdgeClasses(ctx)
	if err != nil {
		return nil, fmt.Errorf("models: classes of the edges' devices: %w", err)
	}
	d.classes, d.taken = c, now()
	return c, nil
}
