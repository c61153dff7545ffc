package firmware

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/weft-io/weft/store"
)

// ReleaseFile splits the name of an object of the firmware volume,
// "<name>/<version>/<file>", into its release and file; ok is false for
// anything else (a directory of its own, a file at another depth, a
// version that does not parse).
func ReleaseFile(obj string) (name string, v Version, file string, ok bool) {
	parts := strings.Split(obj, "/")
	if len(parts) != 3 || !validReleaseName(parts[0]) || parts[2] == "" {
		return "", Version{}, "", false
	}
	v, err := ParseVersion(parts[1])
	if err != nil {
		return "", Version{}, "", false
	}
	return parts[0], v, parts[2], true
}

// Targeted reports whether object obj of the firmware volume is a
// release's image, which goes only to the edges with a device of the
// release's class (Delivery); everything else (manifests: they are small,
// and an edge lists what it holds) goes to every edge.
func Targeted(obj string) bool {
	_, _, file, ok := ReleaseFile(obj)
	return ok && file == ImageFile
}

// DefaultClassesFresh is the default of Targeting.Fresh.
const DefaultClassesFresh = 5 * time.Second

// Targeting is the class-targeted rule of a mirrored volume of versions
// that each belong to one class for good (firmware releases, model
// versions): a version's targeted objects go to an edge only when the
// edge has a device of the version's class. Delivery serves /firmware
// with it, models.Delivery /models. Keep is the decision; the sync/mirror
// source of each edge asks it about the objects the edge lacks, and sends
// one it withheld once the edge gains a device of its class.
type Targeting struct {
	// EdgeClasses returns, for every edge, the classes of the devices
	// behind it (at the core: Places.EdgeClasses, kept from the shadows
	// its edges replicate up). Required.
	EdgeClasses func(ctx context.Context) (map[string]map[string]bool, error)
	// Fresh is how long one answer of EdgeClasses serves every edge.
	// Default DefaultClassesFresh.
	Fresh time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time

	mu      sync.Mutex // over classes and taken, held while reading them
	classes map[string]map[string]bool
	taken   time.Time

	verMu   sync.Mutex
	version map[string]string // version -> class, from its manifest
}

// Keep reports whether an object of version (a name for it, like
// "<name>/<version>") goes to edge. read reads the version's class from
// its manifest, once per version; known false (the manifest not written
// yet) withholds the object from every edge until it is.
func (t *Targeting) Keep(ctx context.Context, edge, version string, read func(context.Context) (class string, known bool, err error)) (bool, error) {
	class, known, err := t.classOf(ctx, version, read)
	if err != nil || !known {
		return false, err
	}
	classes, err := t.edgeClasses(ctx)
	if err != nil {
		return false, err
	}
	return classes[edge][class], nil
}

func (t *Targeting) classOf(ctx context.Context, version string, read func(context.Context) (string, bool, error)) (string, bool, error) {
	t.verMu.Lock()
	class, ok := t.version[version]
	t.verMu.Unlock()
	if ok {
		return class, true, nil
	}
	class, known, err := read(ctx)
	if err != nil || !known {
		return "", false, err
	}
	t.verMu.Lock()
	defer t.verMu.Unlock()
	if t.version == nil {
		t.version = map[string]string{}
	}
	t.version[version] = class
	return class, true, nil
}

func (t *Targeting) edgeClasses(ctx context.Context) (map[string]map[string]bool, error) {
	now := time.Now
	if t.Now != nil {
		now = t.Now
	}
	fresh := t.Fresh
	if fresh <= 0 {
		fresh = DefaultClassesFresh
	}
	t.mu.Lock()
	defer t.mu.Unlock() // one reading at a time; the others wait for it
	if n := now(); t.classes != nil && n.Sub(t.taken) >= 0 && n.Sub(t.taken) < fresh {
		return t.classes, nil
	}
	c, err := t.EdgeClasses(ctx)
	if err != nil {
		return nil, fmt.Errorf("classes of the edges' devices: %w", err)
	}
	t.classes, t.taken = c, now()
	return c, nil
}

// Delivery decides which edges the core's mirror of /firmware sends a
// release's image to (Targeted): those with a device of the release's
// class, read from its stored manifest.
type Delivery struct {
	// Store holds /firmware. Required.
	Store *store.Store
	Targeting
}

// Keep reports whether object obj of the firmware volume (a path inside
// it, "sensor-fw/1.2.0/image") goes to edge.
func (d *Delivery) Keep(ctx context.Context, edge, obj string) (bool, error) {
	if !Targeted(obj) {
		return true, nil
	}
	name, v, _, _ := ReleaseFile(obj)
	return d.Targeting.Keep(ctx, edge, ReleaseDir(name, v), func(ctx context.Context) (string, bool, error) {
		b, _, err := (&Registry{Store: d.Store}).ReadManifest(ctx, name, v)
		if errors.Is(err, ErrNotFound) {
			return "", false, nil
		}
		if err != nil {
			return "", false, err
		}
		m, err := Parse(b)
		if err != nil {
			return "", false, fmt.Errorf("firmware: %s: %w", ReleaseDir(name, v), err)
		}
		return m.Class, true, nil
	})
}

// Places is where each device is, by edge and class: what Delivery needs
// of the fleet, kept as the core's shadows change (Set on every change of
// a device's shadow, Delete when it goes) rather than read from every
// shadow again. The zero value is empty and ready; it is safe for
// concurrent use.
type Places struct {
	mu     sync.Mutex
	device map[string]place
	count  map[place]int
}

type place struct{ edge, class string }

// Set records that device is behind edge and of class; an empty edge or
// class forgets it.
func (p *Places) Set(device, edge, class string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.device == nil {
		p.device, p.count = map[string]place{}, map[place]int{}
	}
	now := place{edge, class}
	old, had := p.device[device]
	if had && old == now {
		return
	}
	if had {
		if p.count[old]--; p.count[old] == 0 {
			delete(p.count, old)
		}
		delete(p.device, device)
	}
	if edge == "" || class == "" {
		return
	}
	p.device[device] = now
	p.count[now]++
}

// Delete forgets device.
func (p *Places) Delete(device string) { p.Set(device, "", "") }

// EdgeClasses returns, for every edge, the classes of its devices: what
// Delivery.EdgeClasses asks.
func (p *Places) EdgeClasses(context.Context) (map[string]map[string]bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]map[string]bool{}
	for pl := range p.count {
		if out[pl.edge] == nil {
			out[pl.edge] = map[string]bool{}
		}
		out[pl.edge][pl.class] = true
	}
	return out, nil
}
