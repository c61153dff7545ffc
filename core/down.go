package core

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/weft-io/weft/cluster"
	"github.com/weft-io/weft/shadow"
	"github.com/weft-io/weft/store"
)

// The applied revision of the cluster's log is a consumer cursor of
// /updates/down, committed with the records each run of writes appends.
const (
	appliedGroup = "cluster-log"
	appliedTopic = "applied"
)

// Bounds of a core-owned write on a cluster's node.
const (
	// proposeTimeout bounds waiting for a majority: a node cut off from
	// it answers an error rather than hang.
	proposeTimeout = 5 * time.Second
	// applyTimeout bounds waiting for this node to apply a write the
	// cluster committed (reading its own write).
	applyTimeout = 10 * time.Second
	// appliedEvery is how often a node tells the others how far it
	// applied the log, and compacts what every member applied.
	appliedEvery = time.Second
)

// errNotApplied is a write the cluster holds that this node has not
// applied within applyTimeout: it is durable, and every node sends it.
var errNotApplied = errors.New("core: write held by the cluster, not yet applied on this node")

// unavailable wraps err as a write the cluster cannot take now (503).
func unavailable(err error) error {
	return fmt.Errorf("%w (%w): %w", shadow.ErrUnavailable, context.DeadlineExceeded, err)
}

// logEntry is a write as the cluster's log holds it (JSON).
type logEntry struct {
	// Origin is the node that wrote it: the only one to append its
	// local records (audit).
	Origin string       `json:"origin"`
	Write  shadow.Write `json:"write"`
}

// clusterDown is the shadow.Down of a cluster's node: a write is put in
// the cluster's log (etcd) and acknowledged once a majority holds it and
// this node applied it; every node applies the log in revision order to
// its /updates/down (run), so every node's /updates/down holds the same
// records at the same offsets.
type clusterDown struct {
	st     *store.Store
	self   string
	member *member
	log    *slog.Logger

	mu      sync.Mutex
	applied int64
	moved   chan struct{} // closed when applied moves
}

var _ shadow.Down = (*clusterDown)(nil)

func newClusterDown(st *store.Store, self string, m *member, log *slog.Logger) *clusterDown {
	return &clusterDown{st: st, self: self, member: m, log: log.With("component", "cluster-log"), moved: make(chan struct{})}
}

// Write proposes w to the cluster's log and waits for this node to apply
// it.
func (d *clusterDown) Write(ctx context.Context, w shadow.Write) (shadow.Written, error) {
	n := d.member.node.Load()
	if n == nil {
		return shadow.Written{}, unavailable(errJoining)
	}
	// Every node must append the same messages: times are the writer's.
	now := d.st.Now()
	w.Records = stamped(w.Records, now)
	w.Local = stamped(w.Local, now)
	b, err := json.Marshal(logEntry{Origin: d.self, Write: w})
	if err != nil {
		return shadow.Written{}, fmt.Errorf("core: write: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, proposeTimeout)
	rev, err := n.Propose(pctx, b)
	cancel()
	if err != nil {
		return shadow.Written{}, unavailable(fmt.Errorf("core: write not held by the cluster: %w", err))
	}
	if err := d.waitApplied(ctx, rev, applyTimeout); err != nil {
		return shadow.Written{}, err
	}
	return shadow.Written{Version: uint64(rev)}, nil
}

// stamped returns reqs with the messages without a time given now (a
// copy: the caller's are not changed).
func stamped(reqs []store.AppendRequest, now time.Time) []store.AppendRequest {
	out := make([]store.AppendRequest, len(reqs))
	for i, r := range reqs {
		msgs := make([]store.Message, len(r.Messages))
		copy(msgs, r.Messages)
		for j := range msgs {
			if msgs[j].Timestamp.IsZero() {
				msgs[j].Timestamp = now
			}
			msgs[j].Timestamp = msgs[j].Timestamp.UTC()
		}
		r.Messages = msgs
		out[i] = r
	}
	return out
}

// Applied is how far this node applied the cluster's log.
func (d *clusterDown) Applied() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.applied
}

// waitApplied waits until this node applied the log up to rev, at most
// bound.
func (d *clusterDown) waitApplied(ctx context.Context, rev int64, bound time.Duration) error {
	t := time.NewTimer(bound)
	defer t.Stop()
	for {
		d.mu.Lock()
		applied, moved := d.applied, d.moved
		d.mu.Unlock()
		if applied >= rev {
			return nil
		}
		select {
		case <-moved:
		case <-t.C:
			return unavailable(fmt.Errorf("%w (revision %d, applied %d)", errNotApplied, rev, applied))
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (d *clusterDown) setApplied(rev int64) {
	d.mu.Lock()
	if rev > d.applied {
		d.applied = rev
		close(d.moved)
		d.moved = make(chan struct{})
	}
	d.mu.Unlock()
}

// run applies the cluster's log to this node's store from the revision
// after its cursor, until ctx ends, and keeps telling the cluster how far
// it is (so what every node applied is compacted).
func (d *clusterDown) run(ctx context.Context, n *cluster.Node) {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { d.report(ctx, n) })
	for ctx.Err() == nil {
		err := d.follow(ctx, n)
		if ctx.Err() != nil {
			return
		}
		again := time.Second
		if errors.Is(err, cluster.ErrCompacted) {
			// Only a copy of another node's store brings this node back
			// (docs/scale.md); say so now and then, not every second.
			again = time.Minute
			d.log.Error("this node's position in the cluster's writes was compacted away: restore it from another node's backup", "err", err)
		} else {
			d.log.Error("applying the cluster's writes stopped; retrying", "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(again):
		}
	}
}

func (d *clusterDown) follow(ctx context.Context, n *cluster.Node) error {
	off, _, err := d.st.Stream(store.UpdatesStream).Cursor(ctx, appliedGroup, appliedTopic, 0)
	if err != nil {
		return err
	}
	d.setApplied(int64(off))
	return n.Follow(ctx, int64(off), d.apply)
}

// apply appends a run of the log's writes, with the revision of the last,
// in one commit; a write that cannot be applied on its own (a bad
// document: the same on every node) is skipped.
func (d *clusterDown) apply(ctx context.Context, es []cluster.Entry) error {
	last := es[len(es)-1].Rev
	err := d.st.Write(ctx, func(tx *store.Tx) error {
		for _, e := range es {
			if err := d.applyOne(tx, e); err != nil {
				return err
			}
		}
		return tx.SetCursor(store.UpdatesStream, appliedGroup, appliedTopic, 0, uint64(last))
	})
	if err == nil {
		d.setApplied(last)
		return nil
	}
	if len(es) == 1 {
		if !deterministic(err) {
			return err
		}
		d.log.Error("cluster write skipped: it cannot be applied", "revision", last, "err", err)
		if err := d.st.Stream(store.UpdatesStream).SetCursor(ctx, appliedGroup, appliedTopic, 0, uint64(last)); err != nil {
			return err
		}
		d.setApplied(last)
		return nil
	}
	for _, e := range es { // find the one that fails
		if err := d.apply(ctx, []cluster.Entry{e}); err != nil {
			return err
		}
	}
	return nil
}

func (d *clusterDown) applyOne(tx *store.Tx, e cluster.Entry) error {
	var le logEntry
	if err := json.Unmarshal(e.Value, &le); err != nil {
		return fmt.Errorf("%w: cluster write %d: %v", store.ErrBadDocument, e.Rev, err)
	}
	_, err := shadow.ApplyWrite(tx, le.Write, uint64(e.Rev), le.Origin == d.self)
	return err
}

// deterministic reports whether err would fail the same write on every
// node (the write itself is at fault, not this node's disk).
func deterministic(err error) bool {
	return errors.Is(err, store.ErrBadDocument) || errors.Is(err, store.ErrInvalid) || errors.Is(err, store.ErrBadPath) ||
		errors.Is(err, store.ErrBadPartition) || errors.Is(err, store.ErrNotFound)
}

// report records, every appliedEvery, how far this node applied the log,
// and compacts the history every voting member applied.
func (d *clusterDown) report(ctx context.Context, n *cluster.Node) {
	t := time.NewTicker(appliedEvery)
	defer t.Stop()
	var told, compacted int64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, proposeTimeout)
		if a := d.Applied(); a > told {
			if err := n.Applied(cctx, a); err == nil {
				told = a
			}
		}
		if least, err := n.AppliedEverywhere(cctx); err == nil && least > compacted {
			if err := n.Compact(cctx, least); err == nil {
				compacted = least
			} else {
				d.log.Warn("compact", "err", err)
			}
		}
		cancel()
	}
}
