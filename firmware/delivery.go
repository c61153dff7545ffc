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

// SendsImage is the class-targeted delivery rule for one object of the
// firmware volume and one edge: everything but a release's image goes to
// every edge (manifests are small, and an edge lists what it holds); an
// image goes to an edge only when the edge has a device of the release's
// class. known is false while the release's class cannot be read (its
// manifest not written yet): such an image is announced to nobody and
// waits.
func SendsImage(obj, class string, known bool, edgeClasses map[string]bool) bool {
	_, _, file, ok := ReleaseFile(obj)
	if !ok || file != ImageFile {
		return true
	}
	return known && edgeClasses[class]
}

// DefaultClassesFresh is the default of Delivery.Fresh.
const DefaultClassesFresh = 5 * time.Second

// Delivery decides which edges the core's mirror of /firmware sends a
// release's image to (SendsImage): those with a device of the release's
// class. Keep is the decision for one edge and object; the sync/mirror
// source of each edge asks it about the objects the edge lacks, and sends
// an image it withheld once the edge gains a device of its class.
type Delivery struct {
	// Store holds /firmware. Required.
	Store *store.Store
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

	relMu   sync.Mutex
	release map[string]string // "<name>/<version>" -> class, from the manifest
}

// Keep reports whether object obj of the firmware volume (a path inside
// it, "sensor-fw/1.2.0/image") goes to edge.
func (d *Delivery) Keep(ctx context.Context, edge, obj string) (bool, error) {
	name, v, file, ok := ReleaseFile(obj)
	if !ok || file != ImageFile {
		return true, nil
	}
	class, known, err := d.classOf(ctx, name, v)
	if err != nil {
		return false, err
	}
	if !known {
		return false, nil
	}
	classes, err := d.edgeClasses(ctx)
	if err != nil {
		return false, err
	}
	return SendsImage(obj, class, known, classes[edge]), nil
}

// classOf reads a release's class from its stored manifest, once: a
// release's name and version are one release for good.
func (d *Delivery) classOf(ctx context.Context, name string, v Version) (string, bool, error) {
	k := name + "/" + v.String()
	d.relMu.Lock()
	class, ok := d.release[k]
	d.relMu.Unlock()
	if ok {
		return class, true, nil
	}
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
	d.relMu.Lock()
	defer d.relMu.Unlock()
	if d.release == nil {
		d.release = map[string]string{}
	}
	d.release[k] = m.Class
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
	defer d.mu.Unlock() // one reading at a time; the others wait for it
	if t := now(); d.classes != nil && t.Sub(d.taken) >= 0 && t.Sub(d.taken) < fresh {
		return d.classes, nil
	}
	c, err := d.EdgeClasses(ctx)
	if err != nil {
		return nil, fmt.Errorf("firmware: classes of the edges' devices: %w", err)
	}
	d.classes, d.taken = c, now()
	return c, nil
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
