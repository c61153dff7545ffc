// Package mirror keeps a volume at one node a copy of the same volume at
// another: models and firmware from the core down to edges, training data
// snapshots up. The source snapshots the volume and sends the delta since
// the snapshot the destination last published (store.Delta: puts and
// deletes of keys relative to the volume, files as their chunks); the
// destination stages it (store.Mirror) and publishes it in one commit, so
// a reader sees the old mirror or the new one, never half. A transfer cut
// off midway resumes after the last key the destination staged, also in
// the middle of a file, because a file is a run of chunk keys.
//
// Source and Dest hold the logic. ServeSource and ServeDest carry their
// Offer, entries and Published as frames of package wire; on a sync link
// (package link) an edge opens each mirror's QUIC stream with Open (Keep
// opens it again when it fails) and the core answers with Serve, which
// decides the volumes it lets edges mirror. Spec names a mirror, and Add,
// List and Remove keep the ones `weft mirror add` records in Table.
//
// A source may send each destination part of the volume: its Filter
// decides per object, what it withholds is recorded with the update's
// snapshot (WithheldTable), and an object withheld that the filter keeps
// later is sent whole by the next update. A core sets the filter of each
// (volume, edge) and counts the bytes sent with a Policy on the context
// its link server serves under (WithPolicy).
package mirror

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/weft-io/weft/store"
)

// snapshotPrefix names the source's mirror snapshots.
const snapshotPrefix = "mirror-"

// DefaultChunkBytes bounds the entries handed over together.
const DefaultChunkBytes = 1 << 20

// stageBytes is about how much a destination stages in one commit.
const stageBytes = 8 << 20

// Update is one mirror update: from the snapshot the destination has
// (empty: nothing) to a newer one.
type Update struct {
	From string `cbor:"1,keyasint,omitempty" json:"from,omitempty"`
	To   string `cbor:"2,keyasint" json:"to"`
}

// State is what a destination has of its mirror: the last update it
// published, and one staged but not published, with the last key staged.
type State struct {
	Have    string `cbor:"1,keyasint,omitempty" json:"have,omitempty"`
	Pending string `cbor:"2,keyasint,omitempty" json:"pending,omitempty"`
	After   []byte `cbor:"3,keyasint,omitempty" json:"after,omitempty"`
}

// Source is the sending side of a mirror of one volume.
type Source struct {
	Store  *store.Store
	Volume string
	// Dest names the destination (the edge, at a core serving several):
	// its snapshots are its own ("mirror-<dest>-<ns>"), so that one
	// destination's Published never deletes the snapshot another's next
	// update starts from (which would make each resend the whole volume
	// again, round after round). Empty: one destination.
	Dest string
	// ChunkBytes bounds the entries handed to Send's callback at once.
	// Default DefaultChunkBytes.
	ChunkBytes int
	// Now names snapshots. Default time.Now.
	Now func() time.Time
	// Budget, if set, is the link's bandwidth budget: each chunk's bytes
	// are taken from it before the chunk is sent (ServeSource).
	Budget Budget
	// Filter, if set, decides what goes to this destination (see Filter):
	// an object it refuses is withheld, recorded with the update's
	// snapshot in WithheldTable, and sent whole once the filter keeps it,
	// by an update offered for that alone if nothing else changed. Nil:
	// everything.
	Filter Filter
	// Sent, if set, is told the bytes of each chunk Send handed over
	// (keys, values and 16 bytes per entry).
	Sent func(n int)
}

// Offer decides the update to send to a destination in state st: the one
// it has pending if the source still holds its snapshot (it resumes), else
// a new snapshot, unless nothing changed since st.Have. ok is false when
// there is nothing to send. With a Filter, an update is also offered when
// nothing changed but the filter now keeps something withheld, and a
// pending one is resumed only as it was decided (its record).
func (s *Source) Offer(ctx context.Context, st State) (u Update, ok bool, err error) {
	snaps, err := s.snapshots(ctx)
	if err != nil {
		return Update{}, false, err
	}
	from := st.Have
	if from != "" && !snaps[from] {
		from = "" // the source no longer has it: send everything
	}
	if st.Pending != "" && snaps[st.Pending] {
		if s.Filter == nil {
			return Update{From: from, To: st.Pending}, true, nil
		}
		// Resume only the update as it was decided: from the same
		// snapshot, with its record (made before it was first offered).
		w, ok, err := s.record(ctx, st.Pending)
		if err != nil {
			return Update{}, false, err
		}
		if ok && w.From == from {
			return Update{From: from, To: st.Pending}, true, nil
		}
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	var held withheld // what the destination lacks at from
	if s.Filter != nil && from != "" {
		if held, _, err = s.record(ctx, from); err != nil {
			return Update{}, false, err
		}
	}
	if from != "" {
		// Look before snapshotting: a snapshot is audited (created, then
		// deleted when nothing changed), and an idle mirror asks every
		// few seconds.
		same, err := s.unchangedSince(ctx, from)
		if err != nil {
			return Update{}, false, err
		}
		if same && len(held.Withheld) > 0 {
			// Something withheld may be kept now (the destination gained
			// a device of a firmware's class, say).
			kept, err := s.keptNow(ctx, held.Withheld)
			if err != nil {
				return Update{}, false, err
			}
			same = len(kept) == 0
		}
		if same {
			return Update{}, false, nil
		}
	}
	name := s.prefix() + strconv.FormatInt(now().UnixNano(), 10)
	if _, err := s.Store.CreateSnapshot(ctx, s.Volume, name); err != nil {
		return Update{}, false, fmt.Errorf("mirror: snapshot /%s: %w", s.Volume, err)
	}
	u = Update{From: from, To: name}
	if s.Filter != nil {
		w, changed, err := s.decide(ctx, from, held, name)
		if err == nil && from != "" && !changed && len(w.Resend) == 0 {
			return Update{}, false, s.Store.DeleteSnapshot(ctx, s.Volume, name)
		}
		if err == nil {
			err = s.saveRecord(ctx, name, w)
		}
		if err != nil {
			return Update{}, false, errors.Join(err, s.Store.DeleteSnapshot(ctx, s.Volume, name))
		}
		return u, true, nil
	}
	if from != "" {
		// A volume holding streams or tables is compared here, key by key
		// (unchangedSince cannot tell).
		changed := false
		err := s.Store.Delta(ctx, s.Volume, from, name, func(store.DeltaEntry) error {
			changed = true
			return errStop
		})
		if err != nil && !errors.Is(err, errStop) {
			return Update{}, false, err
		}
		if !changed {
			return Update{}, false, s.Store.DeleteSnapshot(ctx, s.Volume, name)
		}
	}
	return u, true, nil
}

var errStop = errors.New("stop")

// maxCompared bounds the objects unchangedSince looks at; a larger volume
// is compared by snapshot.
const maxCompared = 100_000

// latestFor is how long the digest of a volume's latest state serves the
// Offers of every destination of that volume before it is taken again: a
// core serving many edges walks each volume at most once a second, and a
// change reaches the edges at most that much later.
const latestFor = time.Second

// unchangedSince reports whether the source's volume reads now as it did
// at snapshot name, without taking a snapshot: its objects' metadata
// (every file's size, hash and generation, which each write bumps;
// directories, explicit or implied) are the same at both. Only a volume of
// files and directories is judged: one holding a stream or a table (whose
// appends and rows do not show in metadata), or more than maxCompared
// objects, is reported changed, for Offer to compare by snapshot. What
// metadata does not show (the sweep of a deleted file's chunks, chunks of
// a write never finished) is invisible to readers and goes with the next
// update, whose delta is taken from the destination's snapshot.
func (s *Source) unchangedSince(ctx context.Context, name string) (bool, error) {
	then, ok, err := digests.snapshot(ctx, s.Store, s.Volume, name)
	if err != nil || !ok {
		return false, err
	}
	now, ok, err := digests.latest(ctx, s.Store, s.Volume, s.now())
	if err != nil || !ok {
		return false, err
	}
	return then == now, nil
}

func (s *Source) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// digest is what digestTree says of a volume: the hash of its objects'
// metadata, or !ok when it cannot judge.
type digest struct {
	sum [sha256.Size]byte
	ok  bool
}

// digestCache keeps the digests of volumes' snapshots (which never
// change) and of their latest state (for latestFor), for every Source in
// the process: a core serves each volume to many edges.
type digestCache struct {
	mu    sync.Mutex
	snaps map[digestKey]digest
	order []digestKey // of snaps, oldest first
	now   map[digestKey]latestDigest
}

type digestKey struct {
	st       *store.Store
	vol      string
	snapshot string
}

type latestDigest struct {
	digest
	at time.Time
}

// maxSnapshotDigests bounds the snapshots' digests kept.
const maxSnapshotDigests = 256

var digests = &digestCache{snaps: map[digestKey]digest{}, now: map[digestKey]latestDigest{}}

func (c *digestCache) snapshot(ctx context.Context, st *store.Store, vol, name string) ([sha256.Size]byte, bool, error) {
	k := digestKey{st, vol, name}
	c.mu.Lock()
	d, hit := c.snaps[k]
	c.mu.Unlock()
	if hit {
		return d.sum, d.ok, nil
	}
	v, err := st.At(vol, name)
	if err != nil {
		return d.sum, false, fmt.Errorf("mirror: snapshot %s of /%s: %w", name, vol, err)
	}
	if d.sum, d.ok, err = digestTree(ctx, v, "/"+vol); err != nil {
		return d.sum, false, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.snaps[k]; !ok {
		c.snaps[k] = d
		c.order = append(c.order, k)
		if len(c.order) > maxSnapshotDigests {
			delete(c.snaps, c.order[0])
			c.order = c.order[1:]
		}
	}
	return d.sum, d.ok, nil
}

func (c *digestCache) latest(ctx context.Context, st *store.Store, vol string, now time.Time) ([sha256.Size]byte, bool, error) {
	k := digestKey{st: st, vol: vol}
	c.mu.Lock()
	d, hit := c.now[k]
	c.mu.Unlock()
	if hit && now.Sub(d.at) >= 0 && now.Sub(d.at) < latestFor {
		return d.sum, d.ok, nil
	}
	sum, ok, err := digestTree(ctx, st, "/"+vol)
	if err != nil {
		return sum, false, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for k2 := range c.now {
		// Forget closed stores' volumes now and then.
		if now.Sub(c.now[k2].at) > time.Minute {
			delete(c.now, k2)
		}
	}
	c.now[k] = latestDigest{digest{sum, ok}, now}
	return sum, ok, nil
}

// tree is what digestTree reads: the latest state (*store.Store) or a
// snapshot (*store.View).
type tree interface {
	List(ctx context.Context, path string) ([]store.Info, error)
	Stat(ctx context.Context, path string) (store.Info, error)
}

var (
	_ tree = (*store.Store)(nil)
	_ tree = (*store.View)(nil)
)

// digestTree hashes the metadata of every object under dir, depth first in
// listing order. ok is false when the tree holds a stream or a table, or
// more than maxCompared objects.
func digestTree(ctx context.Context, t tree, dir string) (sum [sha256.Size]byte, ok bool, err error) {
	h := sha256.New()
	var buf []byte
	put := func(in store.Info) {
		buf = buf[:0]
		buf = fmt.Appendf(buf, "%q %s %d %s %d %d %d\n", in.Path, in.Kind, in.Size, in.SHA256, in.Gen,
			in.Created.UnixNano(), in.Modified.UnixNano())
		h.Write(buf)
	}
	n := 0
	var walk func(dir string) (bool, error)
	walk = func(dir string) (bool, error) {
		list, err := t.List(ctx, dir)
		if err != nil {
			return false, fmt.Errorf("mirror: list %s: %w", dir, err)
		}
		for _, in := range list {
			if n++; n > maxCompared {
				return false, nil
			}
			switch in.Kind {
			case store.KindFile:
				put(in)
			case store.KindDir:
				// An explicit directory has metadata of its own; an
				// implied one only its path.
				di, err := t.Stat(ctx, in.Path)
				if err != nil {
					return false, fmt.Errorf("mirror: stat %s: %w", in.Path, err)
				}
				put(di)
				if ok, err := walk(in.Path); !ok || err != nil {
					return false, err
				}
			default:
				return false, nil
			}
		}
		return true, nil
	}
	if ok, err = walk(dir); !ok || err != nil {
		return sum, false, err
	}
	h.Sum(sum[:0])
	return sum, true, nil
}

// Send calls fn with the entries of u after key after, in key order, in
// chunks of about ChunkBytes. With a Filter, they are those the update's
// record lets through: the delta's, but of objects withheld, and every
// entry of the objects it resends.
func (s *Source) Send(ctx context.Context, u Update, after []byte, fn func([]store.DeltaEntry) error) error {
	limit := s.ChunkBytes
	if limit <= 0 {
		limit = DefaultChunkBytes
	}
	var chunk []store.DeltaEntry
	size := 0
	flush := func() error {
		err := fn(chunk)
		if err == nil && s.Sent != nil {
			s.Sent(size)
		}
		chunk, size = nil, 0
		return err
	}
	entries := func(fn func(store.DeltaEntry) error) error {
		return s.Store.Delta(ctx, s.Volume, u.From, u.To, fn)
	}
	if s.Filter != nil {
		w, ok, err := s.record(ctx, u.To)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("mirror: /%s update %s has no record of what it withholds", s.Volume, u.To)
		}
		entries = func(fn func(store.DeltaEntry) error) error { return s.filtered(ctx, u, w, fn) }
	}
	err := entries(func(e store.DeltaEntry) error {
		if after != nil && string(e.Key) <= string(after) {
			return nil
		}
		chunk = append(chunk, e)
		size += len(e.Key) + len(e.Value) + 16
		if size >= limit {
			return flush()
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(chunk) > 0 {
		return flush()
	}
	return nil
}

// Published tells the source that the destination published the update
// to snapshot name: the destination's older mirror snapshots go (their
// versions become garbage once no destination holds them). Each
// destination (Source.Dest) has snapshots of its own, so this never
// deletes one another destination's next update starts from.
func (s *Source) Published(ctx context.Context, name string) error {
	snaps, err := s.Store.Snapshots(ctx, s.Volume)
	if err != nil {
		return err
	}
	var keepTS uint64
	for _, sn := range snaps {
		if sn.Name == name {
			keepTS = sn.TS
		}
	}
	if keepTS == 0 {
		return nil
	}
	for _, sn := range snaps {
		if s.owns(sn.Name) && sn.TS < keepTS {
			if err := s.Store.DeleteSnapshot(ctx, s.Volume, sn.Name); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
			if s.Filter != nil {
				if err := s.dropRecord(ctx, sn.Name); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// prefix is the name prefix of this destination's snapshots.
func (s *Source) prefix() string {
	if s.Dest == "" {
		return snapshotPrefix
	}
	return snapshotPrefix + s.Dest + "-"
}

// owns reports whether snapshot name is this destination's to delete:
// one of its own, or one named before snapshots were per destination
// ("mirror-<ns>"), which nobody else will release.
func (s *Source) owns(name string) bool {
	rest, ok := strings.CutPrefix(name, snapshotPrefix)
	if !ok {
		return false
	}
	if _, err := strconv.ParseUint(rest, 10, 64); err == nil {
		return true // unnamed destination's, or from before
	}
	return s.Dest != "" && strings.HasPrefix(name, s.prefix())
}

func (s *Source) snapshots(ctx context.Context) (map[string]bool, error) {
	snaps, err := s.Store.Snapshots(ctx, s.Volume)
	if err != nil {
		return nil, fmt.Errorf("mirror: snapshots of /%s: %w", s.Volume, err)
	}
	out := map[string]bool{}
	for _, sn := range snaps {
		out[sn.Name] = true
	}
	return out, nil
}

// Dest is the receiving side of a mirror of one volume.
type Dest struct {
	Store  *store.Store
	Volume string
}

// State is what the destination has, for the source's Offer.
func (d *Dest) State(ctx context.Context) (State, error) {
	have, err := d.Store.LastMirror(d.Volume)
	if err != nil {
		return State{}, err
	}
	st := State{Have: have}
	p, ok, err := d.Store.PendingMirror(d.Volume)
	if err != nil {
		return State{}, err
	}
	if ok {
		st.Pending, st.After = p.ID, p.Pos
	}
	return st, nil
}

// Receive stages an update: next yields its chunks (nil, nil at the end)
// and the update is published once all are staged. Cut off midway, it
// leaves what was staged for the next Receive of the same update.
func (d *Dest) Receive(ctx context.Context, u Update, next func() ([]store.DeltaEntry, error)) error {
	m, err := d.Store.BeginMirror(ctx, d.Volume, u.To)
	if errors.Is(err, store.ErrExists) {
		// Another update is pending that the source no longer holds (it
		// offers a pending one while it has it): give that one up.
		if err := d.Store.AbandonMirror(ctx, d.Volume); err != nil {
			return fmt.Errorf("mirror: /%s abandoning the pending update: %w", d.Volume, err)
		}
		m, err = d.Store.BeginMirror(ctx, d.Volume, u.To)
	}
	if err != nil {
		return fmt.Errorf("mirror: /%s update %s: %w", d.Volume, u.To, err)
	}
	// Chunks are staged a few MiB at a time: each staging is a durable
	// commit of its own.
	var pending []store.DeltaEntry
	size := 0
	stage := func() error {
		if len(pending) == 0 {
			return nil
		}
		err := m.Apply(ctx, pending)
		pending, size = nil, 0
		if err != nil {
			return fmt.Errorf("mirror: /%s update %s: %w", d.Volume, u.To, err)
		}
		return nil
	}
	for {
		chunk, err := next()
		if err != nil {
			// Keep what came before the cut for the next Receive.
			return errors.Join(err, stage())
		}
		if chunk == nil {
			break
		}
		pending = append(pending, chunk...)
		for _, e := range chunk {
			size += len(e.Key) + len(e.Value)
		}
		if size >= stageBytes {
			if err := stage(); err != nil {
				return err
			}
		}
	}
	if err := stage(); err != nil {
		return err
	}
	if err := m.Publish(ctx); err != nil {
		return fmt.Errorf("mirror: publish /%s update %s: %w", d.Volume, u.To, err)
	}
	return nil
}
