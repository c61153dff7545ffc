package models

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strconv"
	"sync"
	"time"

	sig "github.com/weft-io/weft/internal/signed"
	"github.com/weft-io/weft/store"
)

// Volume is the store volume models live in; cores mirror it down to
// their edges.
const Volume = "models"

// Files of a model under /models/<name>/.
const (
	ManifestFile = "manifest.cose"
	ParamsName   = "params.json"
	StagesFile   = "stages.json"
)

// Stages of a released version.
const (
	// StageCandidate versions are scored beside the live one at the
	// edges but never used.
	StageCandidate = "candidate"
	// StageLive is the version whose answer is used (one per name).
	StageLive = "live"
	// StageRetired versions are no longer run.
	StageRetired = "retired"
)

// VersionDir is the store directory of one version of a model.
func VersionDir(name string, version uint64) string {
	return "/" + Volume + "/" + name + "/" + strconv.FormatUint(version, 10)
}

// Stages is a model's stages file, /models/<name>/stages.json: the stage
// of each released version. A version trained but not published has no
// entry. It travels down with the model files, so edges learn stages and
// artifacts together.
type Stages struct {
	Name  string `json:"name"`
	Class string `json:"class"`
	// Stages maps a version (decimal) to its stage.
	Stages map[string]string `json:"stages"`
	// Previous is the version live before the current live one (0: none),
	// which a rollback restores.
	Previous uint64 `json:"previous,omitempty"`
	// Updated is when the file was last written.
	Updated time.Time `json:"updated"`
}

// Stage returns the stage of version v ("" when unpublished).
func (s *Stages) Stage(v uint64) string { return s.Stages[strconv.FormatUint(v, 10)] }

// Live returns the live version, 0 when none.
func (s *Stages) Live() uint64 {
	for k, st := range s.Stages {
		if st == StageLive {
			v, _ := strconv.ParseUint(k, 10, 64)
			return v
		}
	}
	return 0
}

// Registry errors, besides *RefusedError for a refused model.
var (
	ErrNotFound = errors.New("models: model not found")
	ErrNoKey    = errors.New("models: no model key")
	ErrStage    = errors.New("models: stage change refused")
	ErrClass    = errors.New("models: the name belongs to another class")
)

// Registry keeps models under /models: each version's signed manifest and
// parameters, and each name's stages. Writes are serialized within the
// process (one core node writes /models).
type Registry struct {
	// Store holds /models. Required.
	Store *store.Store
	// Key signs the models the registry trains; nil refuses training.
	Key ed25519.PrivateKey
	// Keys are the pinned model keys every stored or loaded model is
	// verified against. Default: the public half of Key.
	Keys []sig.Key
	// Now is the clock. Default time.Now.
	Now func() time.Time

	mu sync.Mutex
}

func (r *Registry) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Registry) keys() []sig.Key {
	if len(r.Keys) > 0 || r.Key == nil {
		return r.Keys
	}
	return []sig.Key{sig.NewKey(r.Key.Public().(ed25519.PublicKey))}
}

// Version is one stored version of a model: its manifest and stage.
type Version struct {
	Manifest Manifest `json:"manifest"`
	// Stage is StageCandidate, StageLive, StageRetired, or "" when the
	// version is trained but not published.
	Stage string `json:"stage"`
}

// Model is one name: its class and versions, oldest first.
type Model struct {
	Name     string    `json:"name"`
	Class    string    `json:"class"`
	Versions []Version `json:"versions"`
	Previous uint64    `json:"previous,omitempty"`
}

// Newest returns the highest version stored (0: none).
func (m *Model) Newest() uint64 {
	if len(m.Versions) == 0 {
		return 0
	}
	return m.Versions[len(m.Versions)-1].Manifest.Version
}

// Put verifies a signed manifest and its parameters against the pinned
// keys, refusing a version not above the newest of its name or a class
// other than the name's, and writes them: parameters first, manifest
// last, so that a version exists once its manifest does.
// It refuses an external model: its executable comes with AddExternal.
func (r *Registry) Put(ctx context.Context, manifest, params []byte) (Manifest, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.put(ctx, manifest, params, &Params{})
}

// put stores a version whose executable, if any, is already stored with
// digest exec.
func (r *Registry) put(ctx context.Context, manifest, params []byte, exec *Params) (Manifest, error) {
	in := Input{Manifest: manifest, Keys: r.keys(), Params: &Params{SHA256: sha256.Sum256(params), Size: int64(len(params))}, Exec: exec}
	v := Verify(in)
	if !v.OK() {
		return Manifest{}, v.Err()
	}
	m := v.Manifest
	cur, err := r.Get(ctx, m.Name)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return Manifest{}, err
	}
	if cur.Class != "" && cur.Class != m.Class {
		return Manifest{}, fmt.Errorf("%w: %s is of class %s, not %s", ErrClass, m.Name, cur.Class, m.Class)
	}
	in.Newest, in.Class = cur.Newest(), cur.Class
	if v = Verify(in); !v.OK() {
		return Manifest{}, v.Err()
	}
	if _, err := DecodeParams(params, m); err != nil {
		return Manifest{}, (&Verdict{Reason: ReasonMalformed, Detail: err.Error(), Manifest: m}).Err()
	}
	dir := VersionDir(m.Name, m.Version)
	if _, err := r.Store.File(dir+"/"+ParamsName).Write(ctx, bytes.NewReader(params)); err != nil {
		return Manifest{}, fmt.Errorf("models: store parameters: %w", err)
	}
	if _, err := r.Store.File(dir+"/"+ManifestFile).Write(ctx, bytes.NewReader(manifest)); err != nil {
		return Manifest{}, fmt.Errorf("models: store manifest: %w", err)
	}
	return m, nil
}

// TrainRequest names what to train.
type TrainRequest struct {
	Name, Class string
	TrainConfig
}

// Train fits a model on readings (Train), signs it with the registry's
// key as the next version of its name and stores it, unpublished.
func (r *Registry) Train(ctx context.Context, req TrainRequest, readings []Reading) (Manifest, Report, error) {
	if r.Key == nil {
		return Manifest{}, Report{}, ErrNoKey
	}
	if !ValidName(req.Name) || !ValidName(req.Class) || req.Name == SchedulesFile {
		return Manifest{}, Report{}, fmt.Errorf("%w: name %q, class %q", ErrMalformed, req.Name, req.Class)
	}
	tr, err := Train(readings, req.TrainConfig)
	if err != nil {
		return Manifest{}, Report{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	cur, err := r.Get(ctx, req.Name)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return Manifest{}, Report{}, err
	}
	m := tr.Manifest
	m.Name, m.Class, m.Version, m.Created = req.Name, req.Class, cur.Newest()+1, r.now().UTC()
	m.SHA256, m.Size = sha256.Sum256(tr.Params), int64(len(tr.Params))
	signed, err := Sign(m, r.Key)
	if err != nil {
		return Manifest{}, Report{}, err
	}
	stored, err := r.put(ctx, signed, tr.Params, &Params{})
	return stored, tr.Report, err
}

// ExternalRequest names an external model to add.
type ExternalRequest struct {
	Name, Class string
	// Channels are the readings' channels the program is sent.
	Channels []string
	// Params says how the program is started.
	Params ExternalParams
}

// AddExternal stores an external model — the executable read from exec
// (at most MaxExecSize bytes) and its parameters — signed with the
// registry's key as the next version of its name, unpublished. The
// executable is written first, its manifest last.
func (r *Registry) AddExternal(ctx context.Context, req ExternalRequest, exec io.Reader) (Manifest, error) {
	if r.Key == nil {
		return Manifest{}, ErrNoKey
	}
	if !ValidName(req.Name) || !ValidName(req.Class) || req.Name == SchedulesFile {
		return Manifest{}, fmt.Errorf("%w: name %q, class %q", ErrMalformed, req.Name, req.Class)
	}
	if err := req.Params.Check(); err != nil {
		return Manifest{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	params, err := json.Marshal(ParamsFile{Kind: KindExternal, External: &req.Params})
	if err != nil {
		return Manifest{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	cur, err := r.Get(ctx, req.Name)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return Manifest{}, err
	}
	if cur.Class != "" && cur.Class != req.Class {
		return Manifest{}, fmt.Errorf("%w: %s is of class %s, not %s", ErrClass, req.Name, cur.Class, req.Class)
	}
	m := Manifest{Name: req.Name, Class: req.Class, Version: cur.Newest() + 1, Kind: KindExternal, Channels: req.Channels,
		SHA256: sha256.Sum256(params), Size: int64(len(params)), Created: r.now().UTC()}
	h := sha256.New()
	n := &countWriter{}
	lim := io.LimitReader(exec, MaxExecSize+1)
	if _, err := r.Store.File(VersionDir(m.Name, m.Version)+"/"+ExecFile).Write(ctx, io.TeeReader(lim, io.MultiWriter(h, n))); err != nil {
		return Manifest{}, fmt.Errorf("models: store executable: %w", err)
	}
	h.Sum(m.ExecSHA256[:0])
	m.ExecSize = n.n
	signed, err := Sign(m, r.Key)
	if err != nil {
		return Manifest{}, err
	}
	return r.put(ctx, signed, params, &Params{SHA256: m.ExecSHA256, Size: m.ExecSize})
}

type countWriter struct{ n int64 }

func (w *countWriter) Write(b []byte) (int, error) {
	w.n += int64(len(b))
	return len(b), nil
}

// List returns every model, by name.
func (r *Registry) List(ctx context.Context) ([]Model, error) {
	names, err := r.Store.List(ctx, "/"+Volume)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Model
	for _, n := range names {
		if n.Kind != store.KindDir {
			continue
		}
		m, err := r.Get(ctx, path.Base(n.Path))
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// Get returns one model with its versions, oldest first. Manifests were
// verified when they were stored; Get only decodes them.
func (r *Registry) Get(ctx context.Context, name string) (Model, error) {
	if !ValidName(name) {
		return Model{}, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	ents, err := r.Store.List(ctx, "/"+Volume+"/"+name)
	if errors.Is(err, store.ErrNotFound) {
		return Model{}, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	if err != nil {
		return Model{}, err
	}
	st, err := r.Stages(ctx, name)
	if err != nil {
		return Model{}, err
	}
	out := Model{Name: name, Class: st.Class, Previous: st.Previous}
	for _, e := range ents {
		v, err := ParseVersion(path.Base(e.Path))
		if err != nil || e.Kind != store.KindDir {
			continue
		}
		b, err := r.ReadFile(ctx, name, v, ManifestFile, MaxManifestSize)
		if errors.Is(err, ErrNotFound) {
			continue // parameters whose manifest is not written (yet)
		}
		if err != nil {
			return Model{}, err
		}
		m, err := Parse(b)
		if err != nil {
			return Model{}, fmt.Errorf("models: %s: %w", VersionDir(name, v), err)
		}
		out.Class = m.Class
		out.Versions = append(out.Versions, Version{Manifest: m, Stage: st.Stage(v)})
	}
	if len(out.Versions) == 0 {
		return Model{}, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	slices.SortFunc(out.Versions, func(a, b Version) int { return cmpUint(a.Manifest.Version, b.Manifest.Version) })
	return out, nil
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// ReadFile returns a file of a version (ManifestFile or ParamsName), at
// most limit bytes.
func (r *Registry) ReadFile(ctx context.Context, name string, v uint64, file string, limit int64) ([]byte, error) {
	if !ValidName(name) {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	rc, _, err := r.Store.File(VersionDir(name, v) + "/" + file).Open(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s@%d", ErrNotFound, name, v)
	}
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("models: %s/%s larger than %d bytes", VersionDir(name, v), file, limit)
	}
	return b, nil
}

// Stages returns a name's stages file (empty when there is none).
func (r *Registry) Stages(ctx context.Context, name string) (Stages, error) {
	st := Stages{Name: name, Stages: map[string]string{}}
	rc, _, err := r.Store.File("/" + Volume + "/" + name + "/" + StagesFile).Open(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	defer rc.Close()
	if err := json.NewDecoder(io.LimitReader(rc, 1<<20)).Decode(&st); err != nil {
		return st, fmt.Errorf("models: %s stages: %w", name, err)
	}
	if st.Stages == nil {
		st.Stages = map[string]string{}
	}
	return st, nil
}

// Stage changes, as Transition takes them.
const (
	ActionPublish  = "publish"  // unpublished -> candidate
	ActionPromote  = "promote"  // candidate (or retired) -> live; the live one -> retired
	ActionRetire   = "retire"   // candidate or live -> retired
	ActionRollback = "rollback" // live -> retired; the previous live -> live
)

// Transition applies a stage change to st for version v of a model whose
// versions are known (versions). It is pure: the stages in, the stages
// out or ErrStage saying why not.
func Transition(st Stages, versions []uint64, action string, v uint64) (Stages, error) {
	if !slices.Contains(versions, v) && action != ActionRollback {
		return st, fmt.Errorf("%w: %s@%d does not exist", ErrNotFound, st.Name, v)
	}
	out := st
	out.Stages = map[string]string{}
	for k, s := range st.Stages {
		out.Stages[k] = s
	}
	key := strconv.FormatUint(v, 10)
	cur := st.Stages[key]
	refuse := func(why string) (Stages, error) {
		return st, fmt.Errorf("%w: %s %s@%d: %s", ErrStage, action, st.Name, v, why)
	}
	switch action {
	case ActionPublish:
		if cur != "" {
			return refuse("already " + cur)
		}
		out.Stages[key] = StageCandidate
	case ActionPromote:
		switch cur {
		case StageLive:
			return refuse("already live")
		case "":
			return refuse("not published")
		}
		if live := st.Live(); live != 0 {
			out.Stages[strconv.FormatUint(live, 10)] = StageRetired
			out.Previous = live
		}
		out.Stages[key] = StageLive
	case ActionRetire:
		switch cur {
		case StageRetired:
			return refuse("already retired")
		case "":
			return refuse("not published")
		}
		out.Stages[key] = StageRetired
	case ActionRollback:
		live := st.Live()
		if live == 0 || st.Previous == 0 || st.Previous == live {
			return refuse("no live version with a previous one")
		}
		out.Stages[strconv.FormatUint(live, 10)] = StageRetired
		out.Stages[strconv.FormatUint(st.Previous, 10)] = StageLive
		out.Previous = 0
	default:
		return refuse("unknown action")
	}
	return out, nil
}

// Change applies a stage change (ActionPublish, ActionPromote,
// ActionRetire, ActionRollback; v is ignored by a rollback) and writes
// the stages file.
func (r *Registry) Change(ctx context.Context, name, action string, v uint64) (Model, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m, err := r.Get(ctx, name)
	if err != nil {
		return Model{}, err
	}
	st, err := r.Stages(ctx, name)
	if err != nil {
		return Model{}, err
	}
	st.Name, st.Class = name, m.Class
	var versions []uint64
	for _, v := range m.Versions {
		versions = append(versions, v.Manifest.Version)
	}
	next, err := Transition(st, versions, action, v)
	if err != nil {
		return Model{}, err
	}
	next.Updated = r.now().UTC()
	b, err := json.MarshalIndent(next, "", "  ")
	if err != nil {
		return Model{}, err
	}
	if _, err := r.Store.File("/"+Volume+"/"+name+"/"+StagesFile).Write(ctx, bytes.NewReader(append(b, '\n'))); err != nil {
		return Model{}, fmt.Errorf("models: write stages: %w", err)
	}
	return r.Get(ctx, name)
}

// Schedules returns the class schedules (SchedulesFile; empty when there
// is none).
func (r *Registry) Schedules(ctx context.Context) (Schedules, error) {
	return ReadSchedules(ctx, r.Store)
}

// ReadSchedules reads /models/schedules.json from st (empty when there
// is none).
func ReadSchedules(ctx context.Context, st *store.Store) (Schedules, error) {
	out := Schedules{Classes: map[string]ClassSchedule{}}
	rc, _, err := st.File("/" + Volume + "/" + SchedulesFile).Open(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return out, nil
	}
	if err != nil {
		return out, err
	}
	defer rc.Close()
	if err := json.NewDecoder(io.LimitReader(rc, 1<<20)).Decode(&out); err != nil {
		return Schedules{Classes: map[string]ClassSchedule{}}, fmt.Errorf("models: %s: %w", SchedulesFile, err)
	}
	if out.Classes == nil {
		out.Classes = map[string]ClassSchedule{}
	}
	for c, cs := range out.Classes {
		if !ValidName(c) || cs.Check() != nil {
			delete(out.Classes, c)
		}
	}
	return out, nil
}

// SetSchedule sets (or, with an empty one, removes) the schedule of
// class and writes the schedules file.
func (r *Registry) SetSchedule(ctx context.Context, class string, cs ClassSchedule) (Schedules, error) {
	if !ValidName(class) {
		return Schedules{}, fmt.Errorf("%w: class %q", ErrMalformed, class)
	}
	if err := cs.Check(); err != nil {
		return Schedules{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	all, err := r.Schedules(ctx)
	if err != nil {
		return Schedules{}, err
	}
	if cs.DeadlineMs == 0 && len(cs.Models) == 0 {
		delete(all.Classes, class)
	} else {
		all.Classes[class] = cs
	}
	all.Updated = r.now().UTC()
	b, err := json.MarshalIndent(all, "", "  ")
	if err != nil {
		return Schedules{}, err
	}
	if _, err := r.Store.File("/"+Volume+"/"+SchedulesFile).Write(ctx, bytes.NewReader(append(b, '\n'))); err != nil {
		return Schedules{}, fmt.Errorf("models: write schedules: %w", err)
	}
	return all, nil
}
