package link

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/weft-io/weft/store"
	"github.com/weft-io/weft/sync/replicate"
)

// damageUplink gives the edge's /uplink/events 40 batches of one 100 KiB
// message each (they live in the value log), flips 16 bytes in the middle
// of its value log while the store is closed, and quarantines every range
// a read then reports corrupt, as `weft store quarantine` does; then it
// appends 10 more messages after the gaps. It returns the gaps.
func damageUplink(t *testing.T, f *fabric) []store.Gap {
	t.Helper()
	damage(t, f)
	return quarantineAll(t, f)
}

// damage writes the 40 large batches and damages the value log.
func damage(t *testing.T, f *fabric) {
	t.Helper()
	ctx := context.Background()
	for i := range 40 {
		v := make([]byte, 100<<10)
		copy(v, fmt.Sprintf("big-%d-", i))
		for j := 16; j < len(v); j++ {
			v[j] = byte(i*7 + j*13) // not compressible by Badger or the wire to nothing
		}
		if _, err := f.edge.Stream(store.UplinkStream).Append(ctx, "edge1", store.Message{Value: v}); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(f.dir, "edge")
	if err := f.edge.Close(); err != nil {
		t.Fatal(err)
	}
	vlogs, _ := filepath.Glob(filepath.Join(dir, "*.vlog"))
	if len(vlogs) == 0 {
		t.Fatal("no value log")
	}
	fh, err := os.OpenFile(vlogs[0], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := fh.Stat()
	buf := make([]byte, 16)
	fh.ReadAt(buf, fi.Size()/2)
	for i := range buf {
		buf[i] ^= 0xff
	}
	if _, err := fh.WriteAt(buf, fi.Size()/2); err != nil {
		t.Fatal(err)
	}
	fh.Close()
	f.edge = openStore(t, dir, "edge1")
}

// quarantineAll quarantines every range a read of the edge's uplink
// reports corrupt, then appends 10 messages after the gaps.
func quarantineAll(t *testing.T, f *fabric) []store.Gap {
	t.Helper()
	ctx := context.Background()
	st := f.edge.Stream(store.UplinkStream)
	var gaps []store.Gap
	for from, i := uint64(0), 0; i < 1000; i++ {
		msgs, err := st.Read(ctx, "edge1", 0, from, store.ReadOptions{Limit: 100})
		var ce *store.CorruptError
		var ge *store.GapError
		switch {
		case errors.As(err, &ce):
			g, err := st.Quarantine(ctx, "edge1", 0, ce.From)
			if err != nil {
				t.Fatal(err)
			}
			gaps = append(gaps, g)
			continue
		case errors.As(err, &ge):
			from = ge.To
			continue
		case err != nil:
			t.Fatal(err)
		}
		if len(msgs) == 0 {
			break
		}
		from = msgs[len(msgs)-1].Offset + 1
	}
	if len(gaps) == 0 {
		t.Fatal("the damage made no read fail")
	}
	appendN(t, f.edge, store.UplinkStream, "edge1", 10, 100, "after")
	return gaps
}

// readPast reads a whole partition stepping over gaps: the offsets and
// values, and the ranges stepped over.
func readPast(t *testing.T, s *store.Stream, topic string) (string, []store.Gap) {
	t.Helper()
	ctx := context.Background()
	_, next, err := s.Bounds(ctx, topic, 0)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	var holes []store.Gap
	for from := uint64(0); from < next; {
		msgs, start, err := s.ReadPast(ctx, topic, 0, from, store.ReadOptions{Limit: 1000, MaxBytes: 64 << 20})
		if err != nil {
			t.Fatal(err)
		}
		if start > from {
			holes = append(holes, store.Gap{From: from, To: start})
		}
		if len(msgs) == 0 {
			break
		}
		for _, m := range msgs {
			fmt.Fprintf(&b, "%d:%x;", m.Offset, m.Value[:min(len(m.Value), 32)])
		}
		from = msgs[len(msgs)-1].Offset + 1
	}
	return b.String(), holes
}

// TestQuarantinedGapOverLink: a range an edge lost to damage and
// quarantined crosses a real QUIC link as a Gap frame: the core's replica
// records the same gap (named where it is read, not an error, not
// hidden), the offsets after it are the edge's, the link neither stalls
// nor lists the partition as failed, and both ends count the offsets.
func TestQuarantinedGapOverLink(t *testing.T) {
	f := newFabric(t, ServerConfig{})
	gaps := damageUplink(t, f)
	appendN(t, f.edge, store.AuditStream, "edge1", 5, 50, "audit")
	link, _ := f.startLink(ClientConfig{})
	ctx := context.Background()
	_, edgeNext, _ := f.edge.Stream(store.UplinkStream).Bounds(ctx, "edge1", 0)
	waitFor(t, "the core past the gap", func() bool {
		_, next, _ := f.core.Stream(store.UplinkStream).Bounds(ctx, "edge1", 0)
		return next == edgeNext
	})
	coreGaps, err := f.core.Stream(store.UplinkStream).Gaps(ctx, "edge1", 0)
	if err != nil || !reflect.DeepEqual(coreGaps, gaps) {
		t.Fatalf("core's gaps %v, %v; the edge's %v", coreGaps, err, gaps)
	}
	edgeData, edgeHoles := readPast(t, f.edge.Stream(store.UplinkStream), "edge1")
	coreData, coreHoles := readPast(t, f.core.Stream(store.UplinkStream), "edge1")
	if edgeData != coreData || !reflect.DeepEqual(edgeHoles, coreHoles) {
		t.Fatalf("the core's copy differs from the edge's: holes %v and %v", coreHoles, edgeHoles)
	}
	var ge *store.GapError
	if _, err := f.core.Stream(store.UplinkStream).Read(ctx, "edge1", 0, gaps[0].From, store.ReadOptions{}); !errors.As(err, &ge) || ge.From != gaps[0].From {
		t.Fatalf("a read at the core from the gap: %v, want it named", err)
	}
	var lost int64
	for _, g := range gaps {
		lost += int64(g.To - g.From)
	}
	if info, _ := f.core.Stat(ctx, store.UplinkStream); info.Quarantined != lost {
		t.Fatalf("core counts %d quarantined, want %d", info.Quarantined, lost)
	}
	waitSame(t, f.edge, f.core, store.AuditStream)
	waitFor(t, "both ends counting the gap, and no lag", func() bool {
		s := streamStatus(link.Monitor(), "core1", replicate.DirSend, store.UplinkStream)
		r := streamStatus(f.srv.Monitor(), "edge1", replicate.DirReceive, store.UplinkStream)
		return s.Quarantined == lost && r.Quarantined == lost && s.LagMessages == 0 && len(s.Failed) == 0
	})
}

// TestQuarantinedGapOlderCore: a core of before Gap frames is sent none;
// the partition waits at the gap, listed as failed, while the link's other
// streams go on.
func TestQuarantinedGapOlderCore(t *testing.T) {
	f := newFabric(t, ServerConfig{old: true})
	gaps := damageUplink(t, f)
	link, _ := f.startLink(ClientConfig{})
	appendN(t, f.edge, store.AuditStream, "edge1", 5, 50, "audit")
	waitSame(t, f.edge, f.core, store.AuditStream)
	ctx := context.Background()
	waitFor(t, "the partition waiting at the gap", func() bool {
		s := streamStatus(link.Monitor(), "core1", replicate.DirSend, store.UplinkStream)
		_, next, _ := f.core.Stream(store.UplinkStream).Bounds(ctx, "edge1", 0)
		return len(s.Failed) == 1 && s.Failed[0].From == gaps[0].From && next == gaps[0].From
	})
	if gs, _ := f.core.Stream(store.UplinkStream).Gaps(ctx, "edge1", 0); len(gs) != 0 {
		t.Fatalf("an older core recorded gaps %v", gs)
	}
}

// TestDamageShownThenSentAsGap: a damaged range the edge has not
// quarantined yet waits at the edge, and the core lists it as failed too
// (the edge's backlog reports carry it); once quarantined it crosses as a
// gap and the failure clears at both ends.
func TestDamageShownThenSentAsGap(t *testing.T) {
	f := newFabric(t, ServerConfig{})
	damage(t, f)
	link, _ := f.startLink(ClientConfig{backlogEvery: 100 * time.Millisecond})
	var failed replicate.Failure
	waitFor(t, "the core listing the edge's damaged range", func() bool {
		r := streamStatus(f.srv.Monitor(), "edge1", replicate.DirReceive, store.UplinkStream)
		s := streamStatus(link.Monitor(), "core1", replicate.DirSend, store.UplinkStream)
		if len(r.Failed) == 1 && len(s.Failed) == 1 && r.Failed[0] == s.Failed[0] {
			failed = r.Failed[0]
			return true
		}
		return false
	})
	if failed.Topic != "edge1" || failed.Error == "" {
		t.Fatalf("failure at the core: %+v", failed)
	}
	quarantineAll(t, f)
	ctx := context.Background()
	_, edgeNext, _ := f.edge.Stream(store.UplinkStream).Bounds(ctx, "edge1", 0)
	// The sender tries the range again every 30 s (Session.Recheck, not
	// set by the client), or at once when news comes.
	waitFor(t, "the gap across and the failure cleared at both ends", func() bool {
		_, next, _ := f.core.Stream(store.UplinkStream).Bounds(ctx, "edge1", 0)
		r := streamStatus(f.srv.Monitor(), "edge1", replicate.DirReceive, store.UplinkStream)
		s := streamStatus(link.Monitor(), "core1", replicate.DirSend, store.UplinkStream)
		return next == edgeNext && len(r.Failed) == 0 && len(s.Failed) == 0
	})
}
