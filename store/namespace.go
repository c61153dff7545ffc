package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Kind is the kind of an object.
type Kind string

// Object kinds.
const (
	KindVolume Kind = "volume"
	KindStream Kind = "stream"
	KindTable  Kind = "table"
	KindFile   Kind = "file"
	KindDir    Kind = "directory"
)

// Info describes an object. Fields that do not apply to its kind are zero.
type Info struct {
	Path     string    `json:"path"`
	Kind     Kind      `json:"kind"`
	Created  time.Time `json:"created"`
	Modified time.Time `json:"modified,omitzero"`
	// Streams.
	Partitions int           `json:"partitions,omitempty"`
	TTL        time.Duration `json:"ttl,omitempty"`
	MaxBytes   int64         `json:"max_bytes,omitempty"`
	Priority   int           `json:"priority,omitempty"`
	// Dropped and DroppedBytes count what a full volume dropped from the
	// stream (see VolumeOptions.DropOldest).
	Dropped      int64 `json:"dropped,omitempty"`
	DroppedBytes int64 `json:"dropped_bytes,omitempty"`
	// Quarantined counts the offsets given up as damaged
	// (Stream.Quarantine).
	Quarantined int64 `json:"quarantined,omitempty"`
	// Tables.
	ChangeStream string `json:"change_stream,omitempty"`
	// Files.
	Size   int64  `json:"size,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
	Gen    uint64 `json:"gen,omitempty"`
	// Volumes.
	Quota      int64 `json:"quota,omitempty"`
	DropOldest bool  `json:"drop_oldest,omitempty"`
	Used       int64 `json:"used,omitempty"`
}

// VolumeOptions are a volume's policies.
type VolumeOptions struct {
	// TTL is the retention of the volume's streams; 0 keeps data forever.
	TTL time.Duration
	// Quota is the most bytes the volume may hold; 0 means no quota.
	Quota int64
	// DropOldest makes a write that would pass the quota drop the oldest
	// batches of the volume's streams instead of being refused: those of
	// the lowest stream priority first, oldest first among them. What goes
	// is counted per stream (Info.Dropped). Without it, the write fails
	// with ErrQuotaExceeded.
	DropOldest bool
}

// VolumeInfo is a volume's record.
type VolumeInfo struct {
	Name  string        `json:"name"`
	TTL   time.Duration `json:"ttl,omitempty"`
	Quota int64         `json:"quota,omitempty"`
	// DropOldest: see VolumeOptions.
	DropOldest bool      `json:"drop_oldest,omitempty"`
	Created    time.Time `json:"created"`
	Used       int64     `json:"used"`
}

func decodeVolume(name string, b []byte) (*VolumeInfo, error) {
	var vi VolumeInfo
	if err := json.Unmarshal(b, &vi); err != nil {
		return nil, fmt.Errorf("%w: volume %s record: %v", ErrCorrupt, name, err)
	}
	vi.Name = name
	return &vi, nil
}

// View reads the store as of one timestamp: the latest commit, or a
// snapshot. Handles from a snapshot view are read-only.
type View struct {
	s        *Store
	ts       uint64 // 0: latest
	snapshot string
}

func (v *View) txn() *badger.Txn { return v.s.readTxn(v.ts) }

// Stream returns a handle on the stream at path.
func (v *View) Stream(path string) *Stream { return &Stream{v: v, path: path} }

// Table returns a handle on the table at path.
func (v *View) Table(path string) *Table { return &Table{v: v, path: path} }

// File returns a handle on the file at path.
func (v *View) File(path string) *File { return &File{v: v, path: path} }

// Stream returns a handle on the stream at path, reading the latest data.
func (s *Store) Stream(path string) *Stream { return s.latest.Stream(path) }

// Table returns a handle on the table at path, reading the latest data.
func (s *Store) Table(path string) *Table { return s.latest.Table(path) }

// File returns a handle on the file at path, reading the latest data.
func (s *Store) File(path string) *File { return s.latest.File(path) }

// object loads path's metadata as of the view and checks its kind.
func (v *View) object(txn *badger.Txn, path string, kind Kind) (*Info, string, string, error) {
	vol, name, err := SplitPath(path)
	if err != nil {
		return nil, "", "", err
	}
	if name == "" {
		return nil, "", "", fmt.Errorf("%w: %s is a volume", ErrWrongKind, path)
	}
	var m *Info
	if v.ts == 0 {
		v.s.mu.RLock()
		m = v.s.metas[path]
		gen := v.s.metaGen
		v.s.mu.RUnlock()
		if m == nil {
			if m, err = readMeta(txn, vol, name); err != nil {
				return nil, "", "", err
			}
			v.s.mu.Lock()
			if gen == v.s.metaGen {
				v.s.metas[path] = m
			}
			v.s.mu.Unlock()
		}
	} else if m, err = readMeta(txn, vol, name); err != nil {
		return nil, "", "", err
	}
	if kind != "" && m.Kind != kind {
		return nil, "", "", fmt.Errorf("%w: %s is a %s, not a %s", ErrWrongKind, path, m.Kind, kind)
	}
	return m, vol, name, nil
}

func readMeta(txn *badger.Txn, vol, name string) (*Info, error) {
	item, err := txn.Get(metaKey(vol, name))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, fmt.Errorf("%w: /%s/%s", ErrNotFound, vol, name)
	}
	if err != nil {
		return nil, fmt.Errorf("store: read: %w", err)
	}
	var m Info
	err = item.Value(func(b []byte) error { return json.Unmarshal(b, &m) })
	if err != nil {
		return nil, fmt.Errorf("%w: metadata of /%s/%s: %v", ErrCorrupt, vol, name, err)
	}
	m.Path = "/" + vol + "/" + name
	return &m, nil
}

// object is View.object for the writer: it sees the group's own changes.
func (w *wtx) object(path string, kind Kind) (*Info, string, string, error) {
	vol, name, err := SplitPath(path)
	if err != nil {
		return nil, "", "", err
	}
	if name == "" {
		return nil, "", "", fmt.Errorf("%w: %s is a volume", ErrWrongKind, path)
	}
	m, ok := w.metas[path]
	if !ok {
		w.s.mu.RLock()
		m = w.s.metas[path]
		w.s.mu.RUnlock()
	}
	if !ok && m == nil {
		if m, err = readMeta(w.txn, vol, name); err != nil {
			return nil, "", "", err
		}
	}
	if m == nil {
		return nil, "", "", fmt.Errorf("%w: %s", ErrNotFound, path)
	}
	if kind != "" && m.Kind != kind {
		return nil, "", "", fmt.Errorf("%w: %s is a %s, not a %s", ErrWrongKind, path, m.Kind, kind)
	}
	return m, vol, name, nil
}

func (w *wtx) volume(vol string) (*VolumeInfo, error) {
	if vi, ok := w.vols[vol]; ok {
		return vi, nil
	}
	w.s.mu.RLock()
	vi := w.s.volumes[vol]
	w.s.mu.RUnlock()
	if vi == nil {
		return nil, fmt.Errorf("%w: volume %s", ErrNotFound, vol)
	}
	return vi, nil
}

// setMeta writes an object's metadata.
func (w *wtx) setMeta(m *Info) error {
	vol, name, _ := SplitPath(m.Path)
	stored := *m
	stored.Path = ""
	b, err := json.Marshal(&stored)
	if err != nil {
		return err
	}
	if err := w.put(vol, metaKey(vol, name), b); err != nil {
		return err
	}
	w.metas[m.Path] = m
	return nil
}

// audit appends an audit record to AuditStream in the same commit.
func (w *wtx) audit(action, path string, detail any) error {
	m, _, _, err := w.object(AuditStream, KindStream)
	if err != nil {
		return nil // no audit stream (being bootstrapped)
	}
	rec := map[string]any{"ts": w.now.UTC(), "action": action, "object": path, "node": w.s.cfg.Name}
	if detail != nil {
		rec["detail"] = detail
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	_, err = w.stage(AuditStream, m, w.s.cfg.Name, 0, []Message{{Value: b, Timestamp: w.now}})
	return err
}

// Audit appends a record of an action taken by subject (an API caller) to
// the audit stream.
func (s *Store) Audit(ctx context.Context, subject, action, path string, detail any) error {
	return s.do(ctx, 256, false, func(w *wtx) error {
		return w.audit(action, path, map[string]any{"subject": subject, "detail": detail})
	})
}

// CreateVolume creates a volume with its policies.
func (s *Store) CreateVolume(ctx context.Context, name string, opts VolumeOptions) error {
	if err := checkName("volume", name); err != nil {
		return err
	}
	if opts.TTL < 0 || opts.Quota < 0 {
		return fmt.Errorf("%w: negative ttl or quota", ErrInvalid)
	}
	return s.do(ctx, 256, false, func(w *wtx) error {
		if _, err := w.volume(name); err == nil {
			return fmt.Errorf("%w: volume %s", ErrExists, name)
		}
		vi := &VolumeInfo{Name: name, TTL: opts.TTL, Quota: opts.Quota, DropOldest: opts.DropOldest, Created: w.now.UTC()}
		if err := w.writeVolume(vi); err != nil {
			return err
		}
		return w.audit("volume.create", "/"+name, opts)
	})
}

// SetVolume changes a volume's policies.
func (s *Store) SetVolume(ctx context.Context, name string, opts VolumeOptions) error {
	if opts.TTL < 0 || opts.Quota < 0 {
		return fmt.Errorf("%w: negative ttl or quota", ErrInvalid)
	}
	return s.do(ctx, 256, false, func(w *wtx) error {
		old, err := w.volume(name)
		if err != nil {
			return err
		}
		vi := *old
		vi.TTL, vi.Quota, vi.DropOldest = opts.TTL, opts.Quota, opts.DropOldest
		if err := w.writeVolume(&vi); err != nil {
			return err
		}
		return w.audit("volume.policy", "/"+name, opts)
	})
}

func (w *wtx) writeVolume(vi *VolumeInfo) error {
	stored := *vi
	stored.Used = 0
	b, err := json.Marshal(&stored)
	if err != nil {
		return err
	}
	if err := w.set("", volumeKey(vi.Name), b, 0); err != nil {
		return err
	}
	w.vols[vi.Name] = vi
	return nil
}

// volumeInfo describes a volume as an object.
func volumeInfo(vi VolumeInfo) Info {
	return Info{Path: "/" + vi.Name, Kind: KindVolume, Created: vi.Created, TTL: vi.TTL, Quota: vi.Quota, DropOldest: vi.DropOldest, Used: vi.Used}
}

// Volumes lists the volumes with their usage.
func (s *Store) Volumes() []VolumeInfo {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]VolumeInfo, 0, len(s.volumes))
	for _, v := range s.volumes {
		vi := *v
		vi.Used = s.usage[v.Name]
		out = append(out, vi)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Volume returns one volume's record.
func (s *Store) Volume(name string) (VolumeInfo, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v := s.volumes[name]
	if v == nil {
		return VolumeInfo{}, fmt.Errorf("%w: volume %s", ErrNotFound, name)
	}
	vi := *v
	vi.Used = s.usage[name]
	return vi, nil
}

// CreateStream creates a stream at path.
func (s *Store) CreateStream(ctx context.Context, path string, opts StreamOptions) error {
	if opts.Partitions == 0 {
		opts.Partitions = 1
	}
	if opts.Partitions < 0 || opts.Partitions > 1<<16 || opts.TTL < 0 || opts.MaxBytes < 0 {
		return fmt.Errorf("%w: partitions 1..65536, ttl and max bytes not negative", ErrInvalid)
	}
	return s.create(ctx, &Info{Path: path, Kind: KindStream, Partitions: opts.Partitions, TTL: opts.TTL, MaxBytes: opts.MaxBytes, Priority: opts.Priority})
}

// TableOptions are the settings of a new table.
type TableOptions struct {
	// ChangeStream, if set, is the path of a stream (created if missing,
	// in the same volume or another) that receives every mutation.
	ChangeStream string
}

// CreateTable creates a table at path.
func (s *Store) CreateTable(ctx context.Context, path string, opts TableOptions) error {
	return s.create(ctx, &Info{Path: path, Kind: KindTable, ChangeStream: opts.ChangeStream})
}

// Mkdir creates an empty directory at path. Directories also exist
// implicitly as the parents of objects.
func (s *Store) Mkdir(ctx context.Context, path string) error {
	return s.create(ctx, &Info{Path: path, Kind: KindDir})
}

func (s *Store) create(ctx context.Context, m *Info) error {
	vol, name, err := SplitPath(m.Path)
	if err != nil {
		return err
	}
	if name == "" {
		return fmt.Errorf("%w: %s names a volume, not an object", ErrBadPath, m.Path)
	}
	m.Path = "/" + vol + "/" + name
	if err := s.sweepTomb(ctx, vol, name); err != nil {
		return err
	}
	return s.do(ctx, 256, false, func(w *wtx) error {
		if err := w.createObject(m); err != nil {
			return err
		}
		return w.audit("object.create", m.Path, map[string]any{"kind": m.Kind})
	})
}

// createObject checks that m.Path is free and writes it, with its change
// stream for a table.
func (w *wtx) createObject(m *Info) error {
	vol, name, _ := SplitPath(m.Path)
	if _, err := w.volume(vol); err != nil {
		return err
	}
	if err := w.checkFree(vol, name); err != nil {
		return err
	}
	if m.ChangeStream != "" {
		cm, _, _, err := w.object(m.ChangeStream, "")
		switch {
		case errors.Is(err, ErrNotFound):
			cs := &Info{Path: m.ChangeStream, Kind: KindStream, Partitions: max(w.s.cfg.Partitions[m.ChangeStream], 1), Created: w.now.UTC()}
			if err := w.createObject(cs); err != nil {
				return fmt.Errorf("change stream: %w", err)
			}
		case err != nil:
			return err
		case cm.Kind != KindStream:
			return fmt.Errorf("%w: change stream %s is a %s", ErrWrongKind, m.ChangeStream, cm.Kind)
		}
	}
	m.Created = w.now.UTC()
	return w.setMeta(m)
}

// checkFree refuses a name that exists, is being deleted, has an object as
// an ancestor, or is a directory with objects under it.
func (w *wtx) checkFree(vol, name string) error {
	path := "/" + vol + "/" + name
	if _, _, _, err := w.object(path, ""); err == nil {
		return fmt.Errorf("%w: %s", ErrExists, path)
	} else if !errors.Is(err, ErrNotFound) {
		return err
	}
	if t, err := w.get(objKey(vol, kindTomb, name)); err != nil || t != nil {
		return fmt.Errorf("%w: %s is being deleted", ErrExists, path)
	}
	for i := strings.Index(name, "/"); i >= 0; i = nextSlash(name, i) {
		anc := "/" + vol + "/" + name[:i]
		m, _, _, err := w.object(anc, "")
		if err == nil && m.Kind != KindDir {
			return fmt.Errorf("%w: %s is a %s, not a directory", ErrWrongKind, anc, m.Kind)
		}
	}
	pfx := metaKey(vol, name+"/")
	it := w.txn.NewIterator(badger.IteratorOptions{Prefix: pfx, PrefetchValues: false})
	defer it.Close()
	for it.Seek(pfx); it.ValidForPrefix(pfx); it.Next() {
		if child := "/" + vol + "/" + string(it.Item().Key()[len(metaKey(vol, "")):]); w.metas[child] != nil || !w.deleted(child) {
			return fmt.Errorf("%w: %s is a directory", ErrExists, path)
		}
	}
	return nil
}

func (w *wtx) deleted(path string) bool {
	m, ok := w.metas[path]
	return ok && m == nil
}

func nextSlash(s string, i int) int {
	j := strings.Index(s[i+1:], "/")
	if j < 0 {
		return -1
	}
	return i + 1 + j
}

// Stat describes the object at path; a volume or an implicit directory is
// described too.
func (s *Store) Stat(ctx context.Context, path string) (Info, error) { return s.latest.Stat(ctx, path) }

// Stat describes the object at path as of the view.
func (v *View) Stat(ctx context.Context, path string) (Info, error) {
	vol, name, err := SplitPath(path)
	if err != nil {
		return Info{}, err
	}
	if name == "" {
		vi, err := v.s.Volume(vol)
		if err != nil {
			return Info{}, err
		}
		return volumeInfo(vi), nil
	}
	txn := v.txn()
	defer txn.Discard()
	m, _, _, err := v.object(txn, path, "")
	if err == nil {
		return *m, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return Info{}, err
	}
	pfx := metaKey(vol, name+"/")
	it := txn.NewIterator(badger.IteratorOptions{Prefix: pfx, PrefetchValues: false})
	defer it.Close()
	if it.Seek(pfx); it.ValidForPrefix(pfx) {
		return Info{Path: "/" + vol + "/" + name, Kind: KindDir}, nil
	}
	return Info{}, err
}

// List lists the children of a directory path: "/" lists the volumes,
// "/vol" the top of a volume, "/vol/dir" a directory. Objects deeper down
// appear as their directory.
func (s *Store) List(ctx context.Context, path string) ([]Info, error) {
	return s.latest.List(ctx, path)
}

// List is Store.List as of the view.
func (v *View) List(ctx context.Context, path string) ([]Info, error) {
	if path == "/" || path == "" {
		var out []Info
		for _, vi := range v.s.Volumes() {
			out = append(out, volumeInfo(vi))
		}
		return out, nil
	}
	vol, name, err := SplitPath(path)
	if err != nil {
		return nil, err
	}
	if _, err := v.s.Volume(vol); err != nil {
		return nil, err
	}
	dir := ""
	if name != "" {
		dir = name + "/"
	}
	txn := v.txn()
	defer txn.Discard()
	if name != "" {
		if m, err := readMeta(txn, vol, name); err == nil && m.Kind != KindDir {
			return []Info{*m}, nil
		}
	}
	base := metaKey(vol, "")
	pfx := metaKey(vol, dir)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: pfx})
	defer it.Close()
	out := []Info{}
	for it.Seek(pfx); it.ValidForPrefix(pfx); {
		rel := string(it.Item().Key()[len(pfx):])
		if seg, _, deeper := strings.Cut(rel, "/"); deeper || isDirMeta(it.Item()) {
			out = append(out, Info{Path: "/" + vol + "/" + dir + seg, Kind: KindDir})
			it.Seek(append(metaKey(vol, dir+seg), '/'+1))
			continue
		}
		m, err := readMeta(txn, vol, string(it.Item().Key()[len(base):]))
		if err != nil {
			return nil, err
		}
		out = append(out, *m)
		it.Next()
	}
	if len(out) == 0 && name != "" {
		if _, err := v.Stat(ctx, path); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func isDirMeta(item *badger.Item) bool {
	var m Info
	_ = item.Value(func(b []byte) error { return json.Unmarshal(b, &m) })
	return m.Kind == KindDir
}

// wellKnown are the objects every store has; they cannot be deleted.
var wellKnown = []Info{
	{Path: AuditStream, Kind: KindStream, Partitions: 1},
	{Path: EventsStream, Kind: KindStream, Partitions: 1},
	{Path: ByDeviceStream, Kind: KindStream, Partitions: 1},
	{Path: UplinkStream, Kind: KindStream, Partitions: 1},
	{Path: UpdatesStream, Kind: KindStream, Partitions: 1},
	{Path: ShadowsTable, Kind: KindTable, ChangeStream: ShadowChanges},
}

// bootstrap creates the well-known volumes and objects that are missing.
func (s *Store) bootstrap() error {
	missing := false
	for _, vol := range WellKnownVolumes {
		if _, err := s.Volume(vol); err != nil {
			missing = true
		}
	}
	for _, o := range wellKnown {
		if _, err := s.Stat(context.Background(), o.Path); err != nil {
			missing = true
		}
	}
	if !missing {
		return nil
	}
	return s.do(context.Background(), 1024, false, func(w *wtx) error {
		for _, vol := range WellKnownVolumes {
			if _, err := w.volume(vol); err != nil {
				if err := w.writeVolume(&VolumeInfo{Name: vol, Created: w.now.UTC()}); err != nil {
					return err
				}
			}
		}
		for _, o := range wellKnown {
			if _, _, _, err := w.object(o.Path, ""); errors.Is(err, ErrNotFound) {
				m := o
				if n := s.cfg.Partitions[o.Path]; n > 0 && m.Kind == KindStream {
					m.Partitions = n
				}
				if err := w.createObject(&m); err != nil {
					return fmt.Errorf("store: create %s: %w", o.Path, err)
				}
			} else if err != nil {
				return err
			}
		}
		return nil
	})
}

func isWellKnown(path string) bool {
	return slices.ContainsFunc(wellKnown, func(i Info) bool { return i.Path == path || i.ChangeStream == path })
}
