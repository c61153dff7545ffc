package cluster

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// The cluster's log of core-owned writes: each write is a put of the key
// log under the cluster's root, acknowledged once etcd committed it (a
// majority of the voting members holds it); its revision orders it. Every
// node follows the key's history from the revision after the last it
// applied, and records that revision under applied/<name> (no lease), so
// that the history before the least of them, applied everywhere, can be
// compacted.

// Entry is one write of the log: its revision and its value.
type Entry struct {
	Rev   int64
	Value []byte
}

// ErrCompacted is the error of a node asking for writes that were
// compacted away before it applied them.
var ErrCompacted = errors.New("cluster: the log was compacted past this node's position")

func (n *Node) logKey() string { return n.root + "log" }

// Propose writes value to the log and returns its revision once a
// majority holds it.
func (n *Node) Propose(ctx context.Context, value []byte) (int64, error) {
	r, err := n.cli.Put(ctx, n.logKey(), string(value))
	if err != nil {
		return 0, fmt.Errorf("cluster: propose: %w", err)
	}
	return r.Header.Revision, nil
}

// maxRun bounds the writes Follow gives apply at once.
const maxRun = 1000

// Follow calls apply with the log's writes after revision after, in
// revision order (each call a run of them), until ctx ends or apply fails.
// It returns ErrCompacted when the writes after after are gone.
func (n *Node) Follow(ctx context.Context, after int64, apply func(context.Context, []Entry) error) error {
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := n.cli.Watch(wctx, n.logKey(), clientv3.WithRev(after+1))
		ended := false
		for !ended {
			r, ok := <-wch
			if !ok {
				break
			}
			// What arrived meanwhile goes with it: one apply (one commit)
			// for all of it.
			var es []Entry
			for {
				if r.CompactRevision != 0 { // the watch was cancelled: what it missed is gone
					cancel()
					return fmt.Errorf("%w (at %d, compacted to %d)", ErrCompacted, after, r.CompactRevision)
				}
				if r.Err() != nil {
					ended = true
					break
				}
				for _, ev := range r.Events {
					if ev.Type != mvccpb.PUT || ev.Kv.ModRevision <= after {
						continue
					}
					es = append(es, Entry{Rev: ev.Kv.ModRevision, Value: ev.Kv.Value})
				}
				if len(es) >= maxRun {
					break
				}
				select {
				case r, ok = <-wch:
				default:
					ok = false
				}
				if !ok {
					break
				}
			}
			if len(es) == 0 {
				continue
			}
			if err := apply(ctx, es); err != nil {
				cancel()
				return err
			}
			after = es[len(es)-1].Rev
		}
		cancel()
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond): // the watch ended (no leader, say): again
		}
	}
	return nil
}

// Applied records that this node applied the log up to rev.
func (n *Node) Applied(ctx context.Context, rev int64) error {
	if _, err := n.cli.Put(ctx, n.root+"applied/"+n.cfg.Name, strconv.FormatInt(rev, 10)); err != nil {
		return fmt.Errorf("cluster: applied: %w", err)
	}
	return nil
}

// AppliedEverywhere returns the least revision every voting member has
// applied (0 when one of them has recorded none).
func (n *Node) AppliedEverywhere(ctx context.Context) (int64, error) {
	r, err := n.cli.Get(ctx, n.root+"applied/", clientv3.WithPrefix())
	if err != nil {
		return 0, fmt.Errorf("cluster: %w", err)
	}
	got := map[string]int64{}
	for _, kv := range r.Kvs {
		v, err := strconv.ParseInt(string(kv.Value), 10, 64)
		if err == nil {
			got[strings.TrimPrefix(string(kv.Key), n.root+"applied/")] = v
		}
	}
	return leastApplied(n.cfg.Peers, got), nil
}

// leastApplied is the least of every peer's applied revision, 0 when a
// peer has none. It is pure.
func leastApplied(peers []Peer, applied map[string]int64) int64 {
	least := int64(-1)
	for _, p := range peers {
		v, ok := applied[p.Name]
		if !ok {
			return 0
		}
		if least < 0 || v < least {
			least = v
		}
	}
	return max(least, 0)
}

// Compact drops etcd's history before rev (the log's writes every member
// applied; every other key of the cluster is read at its latest only). A
// revision compacted already is no error.
func (n *Node) Compact(ctx context.Context, rev int64) error {
	if rev <= 0 {
		return nil
	}
	if _, err := n.cli.Compact(ctx, rev); err != nil && !errors.Is(err, rpctypes.ErrCompacted) && !errors.Is(err, rpctypes.ErrGRPCCompacted) {
		return fmt.Errorf("cluster: compact: %w", err)
	}
	return nil
}
