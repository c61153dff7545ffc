package firmware

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"time"

	"github.com/weft-io/weft/store"
)

// Volume is the store volume releases live in; edges mirror it down.
const Volume = "firmware"

// Files of a release under /firmware/<name>/<version>/.
const (
	ManifestFile = "manifest.cose"
	ImageFile    = "image"
)

// ReleaseDir is the store directory of a release.
func ReleaseDir(name string, v Version) string {
	return "/" + Volume + "/" + name + "/" + v.String()
}

// Release is a stored release: its manifest and where its files are.
type Release struct {
	Manifest
	// Published is when the core stored the release.
	Published time.Time `json:"published"`
	// ManifestPath and ImagePath are the release's files in the store.
	ManifestPath string `json:"manifest_path"`
	ImagePath    string `json:"image_path"`
}

// jsonRelease is the JSON of a Release: the manifest's fields, then the
// release's own.
type jsonRelease struct {
	jsonManifest
	Published    time.Time `json:"published"`
	ManifestPath string    `json:"manifest_path"`
	ImagePath    string    `json:"image_path"`
}

// MarshalJSON writes the manifest's fields and the release's side by side.
func (r Release) MarshalJSON() ([]byte, error) {
	return json.Marshal(jsonRelease{r.toJSON(), r.Published, r.ManifestPath, r.ImagePath})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (r *Release) UnmarshalJSON(b []byte) error {
	var j jsonRelease
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	r.Published, r.ManifestPath, r.ImagePath = j.Published, j.ManifestPath, j.ImagePath
	return r.Manifest.fromJSON(j.jsonManifest)
}

// DefaultMaxImageSize is the default of Registry.MaxImageSize.
const DefaultMaxImageSize = 512 << 20

// Registry stores verified releases under /firmware. A release is written
// image first, manifest last: it exists once its manifest does, and an
// image without a manifest is never announced.
type Registry struct {
	// Store holds /firmware. Required.
	Store *store.Store
	// Keys returns the key set releases are verified against (read per
	// publish so that a rotated file applies without a restart). Nil
	// refuses every publish.
	Keys func() (KeySet, error)
	// MaxImageSize bounds an image. Default DefaultMaxImageSize.
	MaxImageSize int64
	// Now is the clock manifests are checked against. Default time.Now.
	Now func() time.Time
}

// Registry errors, besides *RefusedError for a refused manifest or image.
var (
	ErrNoKeys   = errors.New("firmware: no trusted firmware keys configured")
	ErrExists   = errors.New("firmware: release exists")
	ErrNotFound = errors.New("firmware: release not found")
)

func (r *Registry) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Registry) maxImage() int64 {
	if r.MaxImageSize > 0 {
		return r.MaxImageSize
	}
	return DefaultMaxImageSize
}

// Publish verifies a signed manifest against the trusted keys, stores the
// image read from image while hashing it, and stores the manifest once the
// image matches. A bad signature, an unknown key, a hash or size mismatch
// or a version not above the newest of that name and class is a
// *RefusedError; a release of that name and version already stored is
// ErrExists.
func (r *Registry) Publish(ctx context.Context, manifest []byte, image io.Reader) (Release, error) {
	if r.Keys == nil {
		return Release{}, ErrNoKeys
	}
	keys, err := r.Keys()
	if err != nil {
		return Release{}, fmt.Errorf("%w: %v", ErrNoKeys, err)
	}
	in := Input{Manifest: manifest, Keys: keys, Now: r.now(), SkipNotBefore: true, MaxImageSize: r.maxImage()}
	v := Verify(in)
	if !v.OK() {
		return Release{}, v.Err()
	}
	m := v.Manifest
	newest, err := r.newest(ctx, m.Name, m.Class)
	if err != nil {
		return Release{}, err
	}
	in.Installed = newest
	if v = Verify(in); !v.OK() {
		if v.Reason == ReasonNotNewer {
			v.Detail = fmt.Sprintf("version %s is not above %s, the newest %s for class %s", m.Version, newest, m.Name, m.Class)
		}
		return Release{}, v.Err()
	}
	dir := ReleaseDir(m.Name, m.Version)
	if _, err := r.Store.Stat(ctx, dir+"/"+ManifestFile); err == nil {
		return Release{}, fmt.Errorf("%w: %s %s", ErrExists, m.Name, m.Version)
	} else if !errors.Is(err, store.ErrNotFound) {
		return Release{}, err
	}
	// Read one byte past the size, so that an oversized upload is seen as
	// such without storing all of it.
	h := sha256.New()
	info, err := r.Store.File(dir+"/"+ImageFile).Write(ctx, io.TeeReader(io.LimitReader(image, m.Size+1), h))
	if err != nil {
		return Release{}, fmt.Errorf("firmware: store image: %w", err)
	}
	var got Image
	copy(got.SHA256[:], h.Sum(nil))
	got.Size = info.Size
	in.Image = &got
	if v = Verify(in); !v.OK() {
		// The image never had a manifest: nothing announces it.
		if err := r.Store.Delete(ctx, dir+"/"+ImageFile); err != nil && !errors.Is(err, store.ErrNotFound) {
			return Release{}, fmt.Errorf("firmware: remove refused image: %w (%v)", err, v)
		}
		return Release{}, v.Err()
	}
	mi, err := r.Store.File(dir+"/"+ManifestFile).Write(ctx, bytes.NewReader(manifest))
	if err != nil {
		return Release{}, fmt.Errorf("firmware: store manifest: %w", err)
	}
	return Release{Manifest: m, Published: mi.Modified, ManifestPath: dir + "/" + ManifestFile, ImagePath: dir + "/" + ImageFile}, nil
}

// newest returns the highest stored version of name for class (0.0.0 when
// there is none).
func (r *Registry) newest(ctx context.Context, name, class string) (Version, error) {
	rels, err := r.versions(ctx, name)
	if err != nil {
		return Version{}, err
	}
	var top Version
	for _, rel := range rels {
		if rel.Class == class && top.Less(rel.Version) {
			top = rel.Version
		}
	}
	return top, nil
}

// List returns every release, by name then version.
func (r *Registry) List(ctx context.Context) ([]Release, error) {
	names, err := r.Store.List(ctx, "/"+Volume)
	if err != nil {
		return nil, err
	}
	var out []Release
	for _, n := range names {
		if n.Kind != store.KindDir {
			continue
		}
		rels, err := r.versions(ctx, path.Base(n.Path))
		if err != nil {
			return nil, err
		}
		out = append(out, rels...)
	}
	return out, nil
}

// versions returns the releases of one name, by version.
func (r *Registry) versions(ctx context.Context, name string) ([]Release, error) {
	vers, err := r.Store.List(ctx, "/"+Volume+"/"+name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Release
	for _, d := range vers {
		v, err := ParseVersion(path.Base(d.Path))
		if err != nil || d.Kind != store.KindDir {
			continue
		}
		rel, err := r.Get(ctx, name, v)
		if errors.Is(err, ErrNotFound) {
			continue // an image whose manifest is not written (yet)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, rel)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version.Less(out[j].Version) })
	return out, nil
}

// Get returns one release. The manifest was verified when it was stored;
// Get only decodes it.
func (r *Registry) Get(ctx context.Context, name string, v Version) (Release, error) {
	dir := ReleaseDir(name, v)
	b, info, err := r.ReadManifest(ctx, name, v)
	if err != nil {
		return Release{}, err
	}
	m, err := Parse(b)
	if err != nil {
		return Release{}, fmt.Errorf("firmware: %s: %w", dir, err)
	}
	return Release{Manifest: m, Published: info.Modified, ManifestPath: dir + "/" + ManifestFile, ImagePath: dir + "/" + ImageFile}, nil
}

// ReadManifest returns the signed manifest of a release as stored.
func (r *Registry) ReadManifest(ctx context.Context, name string, v Version) ([]byte, store.Info, error) {
	if !validReleaseName(name) {
		return nil, store.Info{}, fmt.Errorf("%w: %q %s", ErrNotFound, name, v)
	}
	rc, info, err := r.Store.File(ReleaseDir(name, v) + "/" + ManifestFile).Open(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return nil, store.Info{}, fmt.Errorf("%w: %s %s", ErrNotFound, name, v)
	}
	if err != nil {
		return nil, store.Info{}, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, MaxManifestSize+1))
	if err != nil {
		return nil, store.Info{}, err
	}
	return b, info, nil
}

// ImageDigest decodes a store.Info's SHA-256.
func ImageDigest(info store.Info) (Image, error) {
	var img Image
	d, err := hex.DecodeString(info.SHA256)
	if err != nil || len(d) != 32 {
		return img, fmt.Errorf("firmware: %s: bad sha256 %q", info.Path, info.SHA256)
	}
	copy(img.SHA256[:], d)
	img.Size = info.Size
	return img, nil
}

func validReleaseName(s string) bool {
	return s != "" && len(s) <= MaxNameLen && s != "." && s != ".." && !bytes.ContainsAny([]byte(s), "/\x00")
}
