package mirror

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"maps"
	"slices"

	"github.com/weft-io/weft/store"
)

// Filter decides whether an object of the volume goes to a destination:
// name is its path inside the volume ("sensor-fw/1.2.0/image" for
// /firmware/sensor-fw/1.2.0/image). It is asked about objects the
// destination does not hold yet; one it holds is kept up to date whatever
// the filter says later. It may be asked often (each of the destination's
// requests while it has objects withheld), so it should be cheap.
type Filter func(ctx context.Context, name string) (bool, error)

// Policy is what a core adds to the mirrors it serves down: a filter per
// destination and an account of the bytes sent.
type Policy struct {
	// Filter, if set, returns the filter of volume for destination dest;
	// nil sends it everything.
	Filter func(volume, dest string) Filter
	// Sent, if set, is told the bytes of each chunk of volume sent to
	// dest (keys, values and 16 bytes of framing per entry).
	Sent func(volume, dest string, n int)
}

type policyKey struct{}

// WithPolicy returns ctx carrying p, for the Serve calls under it. A sync
// link server (package link) passes its Serve's context down to Serve, so
// a core sets its policy on the context it serves its links with.
func WithPolicy(ctx context.Context, p Policy) context.Context {
	return context.WithValue(ctx, policyKey{}, p)
}

func policyFrom(ctx context.Context) Policy {
	p, _ := ctx.Value(policyKey{}).(Policy)
	return p
}

// WithheldTable is where a source with a Filter records, per update it
// offers, the objects it withholds from the destination: the table
// "/config/mirror_withheld", keyed "<volume>/<snapshot>". A record goes
// with its snapshot.
const WithheldTable = "/config/mirror_withheld"

// withheld is a filtered update's record: what the destination does not
// hold once it has published snapshot To, and what the update sends whole
// because the destination lacked it and the filter now keeps it.
type withheld struct {
	// From is the snapshot the update starts from (empty: nothing).
	From string `json:"from,omitempty"`
	// Withheld are the objects at To the destination does not get.
	Withheld []string `json:"withheld,omitempty"`
	// Resend are objects withheld before that the update sends whole.
	Resend []string `json:"resend,omitempty"`
}

func (s *Source) recordKey(snapshot string) string { return s.Volume + "/" + snapshot }

// record reads the record of snapshot; ok is false when there is none
// (a snapshot offered without a Filter: nothing was withheld).
func (s *Source) record(ctx context.Context, snapshot string) (w withheld, ok bool, err error) {
	d, err := s.Store.Table(WithheldTable).Get(ctx, s.recordKey(snapshot))
	if errors.Is(err, store.ErrNotFound) {
		return withheld{}, false, nil
	}
	if err != nil {
		return withheld{}, false, fmt.Errorf("mirror: record of %s: %w", snapshot, err)
	}
	if err := json.Unmarshal(d.Value, &w); err != nil {
		return withheld{}, false, fmt.Errorf("mirror: record of %s: %w", snapshot, err)
	}
	return w, true, nil
}

func (s *Source) saveRecord(ctx context.Context, snapshot string, w withheld) error {
	if err := ensureVolume(ctx, s.Store, "config"); err != nil {
		return err
	}
	if err := s.Store.CreateTable(ctx, WithheldTable, store.TableOptions{}); err != nil && !errors.Is(err, store.ErrExists) {
		return fmt.Errorf("mirror: table %s: %w", WithheldTable, err)
	}
	b, err := json.Marshal(w)
	if err != nil {
		return err
	}
	if _, err := s.Store.Table(WithheldTable).Put(ctx, s.recordKey(snapshot), b); err != nil {
		return fmt.Errorf("mirror: record of %s: %w", snapshot, err)
	}
	return nil
}

func (s *Source) dropRecord(ctx context.Context, snapshot string) error {
	err := s.Store.Table(WithheldTable).Delete(ctx, s.recordKey(snapshot))
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("mirror: record of %s: %w", snapshot, err)
	}
	return nil
}

// keptNow returns the objects of names the filter keeps now.
func (s *Source) keptNow(ctx context.Context, names []string) ([]string, error) {
	var out []string
	for _, n := range names {
		ok, err := s.Filter(ctx, n)
		if err != nil {
			return nil, fmt.Errorf("mirror: filter of /%s for %s: %w", s.Volume, s.Dest, err)
		}
		if ok {
			out = append(out, n)
		}
	}
	return out, nil
}

// decide makes the record of the update from snapshot from (whose record
// is held) to snapshot to, and reports whether the delta between them
// holds anything. The destination holds the objects at from not withheld
// there, and gets their changes; of the other objects the delta writes,
// and of those withheld at from still there, the filter decides which it
// gets: a kept one withheld before is sent whole (Resend), one it
// refuses is withheld. Objects are judged by the delta's keys, not by
// their metadata, so that a file being written when to was taken (its
// chunks without metadata yet) is decided as well.
func (s *Source) decide(ctx context.Context, from string, held withheld, to string) (withheld, bool, error) {
	w := withheld{From: from}
	puts, dels := map[string]bool{}, map[string]bool{}
	err := s.Store.Delta(ctx, s.Volume, from, to, func(e store.DeltaEntry) error {
		if e.Delete {
			dels[objectName(e.Key)] = true
		} else {
			puts[objectName(e.Key)] = true
		}
		return nil
	})
	if err != nil {
		return w, false, fmt.Errorf("mirror: delta of /%s: %w", s.Volume, err)
	}
	changed := len(puts) > 0 || len(dels) > 0
	before := map[string]bool{}
	for _, n := range held.Withheld {
		before[n] = true
	}
	var at *store.View
	if from != "" {
		if at, err = s.Store.At(s.Volume, from); err != nil {
			return w, false, fmt.Errorf("mirror: snapshot %s of /%s: %w", from, s.Volume, err)
		}
	}
	judge := func(n string) error {
		ok, err := s.Filter(ctx, n)
		if err != nil {
			return fmt.Errorf("mirror: filter of /%s for %s: %w", s.Volume, s.Dest, err)
		}
		switch {
		case !ok:
			w.Withheld = append(w.Withheld, n)
		case before[n]:
			w.Resend = append(w.Resend, n)
		}
		return nil
	}
	for _, n := range slices.Sorted(maps.Keys(puts)) {
		if !before[n] && at != nil {
			_, err := at.Stat(ctx, "/"+s.Volume+"/"+n)
			if err == nil {
				continue // the destination holds it: it gets the change
			}
			if !errors.Is(err, store.ErrNotFound) {
				return w, false, fmt.Errorf("mirror: stat %s at %s: %w", n, from, err)
			}
		}
		if err := judge(n); err != nil {
			return w, false, err
		}
	}
	for _, n := range held.Withheld {
		if puts[n] || dels[n] {
			continue // judged above, or gone
		}
		if err := judge(n); err != nil {
			return w, false, err
		}
	}
	slices.Sort(w.Withheld)
	slices.Sort(w.Resend)
	return w, changed, nil
}

// objectName is the name of the object a delta key belongs to: the store
// keys an object's data (metadata, chunks, rows, batches, tombs) as one
// kind byte, the object's name, then a NUL and more parts or nothing
// (store/keys.go); names never hold a NUL.
func objectName(key []byte) string {
	if len(key) < 2 {
		return ""
	}
	rest := key[1:]
	if i := bytes.IndexByte(rest, 0); i >= 0 {
		rest = rest[:i]
	}
	return string(rest)
}

// deltaSeq is store.Delta as an iterator.
func deltaSeq(ctx context.Context, st *store.Store, vol, from, to string) iter.Seq2[store.DeltaEntry, error] {
	return func(yield func(store.DeltaEntry, error) bool) {
		err := st.Delta(ctx, vol, from, to, func(e store.DeltaEntry) error {
			if !yield(e, nil) {
				return errStop
			}
			return nil
		})
		if err != nil && !errors.Is(err, errStop) {
			yield(store.DeltaEntry{}, err)
		}
	}
}

// filtered calls fn, in key order, with the entries update u sends under
// record w: those of the delta but of objects withheld or resent, and
// every entry at u.To of the objects resent.
func (s *Source) filtered(ctx context.Context, u Update, w withheld, fn func(store.DeltaEntry) error) error {
	skip := map[string]bool{}
	for _, n := range w.Withheld {
		skip[n] = true
	}
	resend := map[string]bool{}
	for _, n := range w.Resend {
		resend[n] = true
	}
	if len(resend) == 0 {
		return s.Store.Delta(ctx, s.Volume, u.From, u.To, func(e store.DeltaEntry) error {
			if skip[objectName(e.Key)] {
				return nil
			}
			return fn(e)
		})
	}
	// The objects resent come whole from the snapshot, merged in key
	// order with the delta (a resumed transfer goes on after a key).
	next, stop := iter.Pull2(func(yield func(store.DeltaEntry, error) bool) {
		for e, err := range deltaSeq(ctx, s.Store, s.Volume, "", u.To) {
			if err != nil || resend[objectName(e.Key)] {
				if !yield(e, err) {
					return
				}
			}
		}
	})
	defer stop()
	peek, perr, more := next()
	flush := func(below []byte) error {
		for more && (below == nil || bytes.Compare(peek.Key, below) < 0) {
			if perr != nil {
				return perr
			}
			if err := fn(peek); err != nil {
				return err
			}
			peek, perr, more = next()
		}
		return nil
	}
	err := s.Store.Delta(ctx, s.Volume, u.From, u.To, func(e store.DeltaEntry) error {
		name := objectName(e.Key)
		if skip[name] || resend[name] {
			return nil
		}
		if err := flush(e.Key); err != nil {
			return err
		}
		return fn(e)
	})
	if err != nil {
		return err
	}
	return flush(nil)
}
