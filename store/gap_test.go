package store

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// TestApplyReplicaGap: a replica learns a gap its source quarantined. The
// hole is recorded and named (Gaps, a *GapError from inside it, the count,
// the audit), reads before it stop at it, ReadPast steps over it, the
// offsets after it line up with the source's, applying it again changes
// nothing, and it survives a restart, also when it is the partition's last
// word.
func TestApplyReplicaGap(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, func(c *Config) { c.Dir = dir })
	ctx := context.Background()
	const path, topic = UplinkStream, "edge-1"
	apply := func(bs ...ReplicaBatch) ([]int, error) {
		for i := range bs {
			bs[i].Path, bs[i].Topic = path, topic
		}
		return s.ApplyReplica(ctx, bs)
	}
	gap := func(from, to uint64) ReplicaBatch {
		return ReplicaBatch{Gap: &Gap{From: from, To: to}, Reason: "quarantined at the source"}
	}
	if _, err := apply(ReplicaBatch{Messages: replicaMsgs(0, 10)}); err != nil {
		t.Fatal(err)
	}
	// A gap past the replica's end is refused, like a batch.
	if _, err := apply(gap(12, 20)); !errors.Is(err, ErrGap) {
		t.Fatalf("gap past the end: %v, want ErrGap", err)
	}
	// The gap and the messages after it, in one commit.
	n, err := apply(gap(10, 20), ReplicaBatch{Messages: replicaMsgs(20, 10)})
	if err != nil || n[0] != 0 || n[1] != 10 {
		t.Fatalf("gap then batch: %v, %v", n, err)
	}
	st := s.Stream(path)
	check := func(when string) {
		t.Helper()
		if _, next, err := st.Bounds(ctx, topic, 0); err != nil || next != 30 {
			t.Fatalf("%s: next %d, %v; want 30", when, next, err)
		}
		gaps, err := st.Gaps(ctx, topic, 0)
		if err != nil || len(gaps) != 1 || gaps[0] != (Gap{10, 20}) {
			t.Fatalf("%s: gaps %v, %v", when, gaps, err)
		}
		if ms, err := st.Read(ctx, topic, 0, 0, ReadOptions{Limit: 100}); err != nil || len(ms) != 10 || ms[9].Offset != 9 {
			t.Fatalf("%s: a read before the gap: %d messages, %v", when, len(ms), err)
		}
		var ge *GapError
		if _, err := st.Read(ctx, topic, 0, 13, ReadOptions{}); !errors.As(err, &ge) || ge.From != 10 || ge.To != 20 {
			t.Fatalf("%s: a read inside the gap: %v, want a *GapError of 10-19", when, err)
		}
		ms, start, err := st.ReadPast(ctx, topic, 0, 10, ReadOptions{Limit: 100})
		if err != nil || start != 20 || len(ms) != 10 || ms[0].Offset != 20 || string(ms[0].Value) != "m20" {
			t.Fatalf("%s: ReadPast: from %d, %d messages, %v", when, start, len(ms), err)
		}
		if info, err := s.Stat(ctx, path); err != nil || info.Quarantined != 10 {
			t.Fatalf("%s: quarantined %d, %v; want 10", when, info.Quarantined, err)
		}
	}
	check("applied")
	// Again, whole or in part: nothing changes.
	if n, err := apply(gap(10, 20), gap(12, 15), ReplicaBatch{Messages: replicaMsgs(20, 10)}); err != nil || n[2] != 0 {
		t.Fatalf("again: %v, %v", n, err)
	}
	check("applied twice")
	audit, err := s.Stream(AuditStream).Read(ctx, s.Name(), 0, 0, ReadOptions{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	gaps := 0
	for _, m := range audit {
		if strings.Contains(string(m.Value), `"stream.gap"`) {
			gaps++
			if !strings.Contains(string(m.Value), "quarantined at the source") {
				t.Errorf("audit record without the reason: %s", m.Value)
			}
		}
	}
	if gaps != 1 {
		t.Fatalf("%d audit records of the gap, want 1", gaps)
	}

	// A gap of which the replica holds a part (it had the messages before
	// the source lost them): only the rest is a hole.
	if _, err := apply(ReplicaBatch{Messages: replicaMsgs(30, 5)}, gap(30, 40)); err != nil {
		t.Fatal(err)
	}
	if gs, _ := st.Gaps(ctx, topic, 0); len(gs) != 2 || gs[1] != (Gap{35, 40}) {
		t.Fatalf("gaps %v, want the second 35-39", gs)
	}
	// A new topic whose first news is a gap is listed, and starts after it.
	if _, err := s.ApplyReplica(ctx, []ReplicaBatch{{Path: path, Topic: "edge-2", Gap: &Gap{From: 0, To: 7}}}); err != nil {
		t.Fatal(err)
	}
	if topics, _ := st.Topics(ctx, "", "", 10); len(topics) != 2 {
		t.Fatalf("topics %v, want edge-1 and edge-2", topics)
	}
	s.Close()
	s = openTest(t, func(c *Config) { c.Dir = dir })
	st = s.Stream(path)
	if _, next, _ := st.Bounds(ctx, topic, 0); next != 40 {
		t.Fatalf("after a restart, ending with a gap: next %d, want 40", next)
	}
	if _, next, _ := st.Bounds(ctx, "edge-2", 0); next != 7 {
		t.Fatalf("after a restart, a topic of a gap only: next %d, want 7", next)
	}
	if n, err := s.ApplyReplica(ctx, []ReplicaBatch{{Path: path, Topic: topic, Messages: replicaMsgs(40, 3)}}); err != nil || n[0] != 3 {
		t.Fatalf("after the gap, after a restart: %v, %v", n, err)
	}
	if _, err := s.ApplyReplica(ctx, []ReplicaBatch{{Path: path, Topic: topic, Gap: &Gap{From: 5, To: 5}}}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("an empty gap: %v", err)
	}
}
