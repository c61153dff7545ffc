package shadow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/weft-io/weft/internal/testenv/wait"
	"github.com/weft-io/weft/store"
)

func openStore(t testing.TB) *store.Store {
	t.Helper()
	st, err := store.Open(store.Config{Dir: t.TempDir(), Name: "edge1", MinFreeBytes: -1, RetentionInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// report writes a device report the way the gateway does: reported merged
// in, with last_seen, class and edge.
// report writes a device's report the way a replica of an edge's shadow
// arrives before anything reconciled it: a plain patch, no delta.
func report(t testing.TB, st *store.Store, id, class, reported string) store.Doc {
	t.Helper()
	patch := fmt.Sprintf(`{"reported":%s,"last_seen":%q,"class":%q,"edge":"edge1","connected":true}`, reported, time.Now().UTC().Format(time.RFC3339Nano), class)
	d, err := st.Table(store.ShadowsTable).Patch(context.Background(), id, json.RawMessage(patch))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// downMessages returns what was appended to /updates/down for device id.
func downMessages(t *testing.T, st *store.Store, id string) []store.Message {
	t.Helper()
	msgs, err := st.Stream(store.UpdatesStream).Read(context.Background(), DeviceTopic(id), 0, 0, store.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

func TestSetDesired(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	before := report(t, st, "pump-1", "pump", `{"setpoint":4,"sample_interval_s":5}`)

	audit := store.AppendRequest{Path: store.AuditStream, Topic: "edge1", Partition: 0, Messages: []store.Message{{Value: []byte(`{"action":"test"}`)}}}
	doc, err := SetDesired(ctx, st, "pump-1", json.RawMessage(`{"setpoint":7,"sample_interval_s":5}`), SetOptions{
		Conds: []store.Cond{store.IfVersion(before.Version)}, Now: t0, Also: func(saved Doc) []store.AppendRequest {
			if saved.Version != before.Version+1 {
				t.Errorf("Also sees version %d", saved.Version)
			}
			return []store.AppendRequest{audit}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if doc.Version != before.Version+1 || doc.InSync || !Equal(doc.Delta, map[string]any{"setpoint": 7.0}) {
		t.Fatalf("after SetDesired: version %d (was %d), delta %v", doc.Version, before.Version, doc.Delta)
	}
	if !doc.DesiredTS["setpoint"].Equal(t0) || doc.Class != "pump" || doc.Reported["setpoint"] == nil {
		t.Fatalf("after SetDesired: %+v", doc)
	}
	stored, err := Get(ctx, st, "pump-1")
	if err != nil {
		t.Fatal(err)
	}
	if stored.Version != doc.Version || !Equal(stored.Desired, doc.Desired) {
		t.Fatalf("stored %+v, returned %+v", stored, doc)
	}
	raw, _ := st.Table(store.ShadowsTable).Get(ctx, "pump-1")
	if m := decode(t, string(raw.Value)); !Equal(m[FieldDelta], map[string]any{"setpoint": 7.0}) {
		t.Fatalf("stored delta %v", m[FieldDelta])
	}

	msgs := downMessages(t, st, "pump-1")
	if len(msgs) != 1 {
		t.Fatalf("%d delta messages, want 1", len(msgs))
	}
	m := msgs[0]
	if string(m.Value) != `{"setpoint":7}` || m.Headers[HeaderSubtopic] != DeltaSubtopic || m.Headers[HeaderVersion] != fmt.Sprint(doc.Version) {
		t.Fatalf("delta message %s %v", m.Value, m.Headers)
	}
	if _, next, _ := st.Stream(store.AuditStream).Bounds(ctx, "edge1", 0); next == 0 {
		t.Fatal("the Also request was not appended")
	}

	// A stale version is a conflict, and nothing is sent.
	_, err = SetDesired(ctx, st, "pump-1", json.RawMessage(`{"setpoint":8}`), SetOptions{Conds: []store.Cond{store.IfVersion(before.Version)}})
	if !errors.Is(err, store.ErrVersion) {
		t.Fatalf("stale version: %v, want ErrVersion", err)
	}
	// Check refuses inside the update.
	errScope := errors.New("out of scope")
	_, err = SetDesired(ctx, st, "pump-1", json.RawMessage(`{"setpoint":8}`), SetOptions{Check: func(cur Doc, exists bool) error {
		if !exists || cur.Class != "pump" {
			t.Errorf("Check saw %+v exists %v", cur, exists)
		}
		return errScope
	}})
	if !errors.Is(err, errScope) {
		t.Fatalf("refused by Check: %v", err)
	}
	// Not an object.
	for _, bad := range []string{`[1]`, `7`, `{`, ``} {
		if _, err := SetDesired(ctx, st, "pump-1", json.RawMessage(bad), SetOptions{}); !errors.Is(err, store.ErrBadDocument) {
			t.Errorf("patch %q: %v, want ErrBadDocument", bad, err)
		}
	}
	if n := len(downMessages(t, st, "pump-1")); n != 1 {
		t.Fatalf("%d delta messages after refused changes, want 1", n)
	}

	// Removing a field with null; the delta goes down even when empty, so
	// that an older retained delta is replaced.
	doc, err = SetDesired(ctx, st, "pump-1", json.RawMessage(`{"setpoint":null}`), SetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !doc.InSync || doc.Desired["setpoint"] != nil || doc.DesiredTS["setpoint"] != (time.Time{}) {
		t.Fatalf("after removing setpoint: %+v", doc)
	}
	msgs = downMessages(t, st, "pump-1")
	if len(msgs) != 2 || string(msgs[1].Value) != `{}` {
		t.Fatalf("delta messages %d, last %s; want an empty delta", len(msgs), msgs[len(msgs)-1].Value)
	}

	// A device that has never reported gets a shadow.
	doc, err = SetDesired(ctx, st, "new-1", json.RawMessage(`{"setpoint":3}`), SetOptions{Conds: []store.Cond{store.IfVersion(0)}})
	if err != nil || doc.Version != 1 || !Equal(doc.Delta, map[string]any{"setpoint": 3.0}) {
		t.Fatalf("new device: %+v, %v", doc, err)
	}
}

func TestSetDesiredDeltaNotSent(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	report(t, st, "pump-1", "pump", `{"setpoint":4}`)
	// The updates volume is full: the shadow (another volume) is saved,
	// the delta is not.
	if err := st.SetVolume(ctx, "updates", store.VolumeOptions{Quota: 1}); err != nil {
		t.Fatal(err)
	}
	doc, err := SetDesired(ctx, st, "pump-1", json.RawMessage(`{"setpoint":7}`), SetOptions{})
	if !errors.Is(err, ErrDeltaNotSent) || !errors.Is(err, store.ErrQuotaExceeded) {
		t.Fatalf("err %v, want ErrDeltaNotSent and ErrQuotaExceeded", err)
	}
	if doc.Desired["setpoint"] == nil {
		t.Fatalf("doc %+v: want the saved shadow", doc)
	}
	if got, _ := Get(ctx, st, "pump-1"); got.Version != doc.Version || got.Desired["setpoint"] == nil {
		t.Fatalf("stored %+v", got)
	}
	// Once there is room, an empty patch sends the delta again.
	if err := st.SetVolume(ctx, "updates", store.VolumeOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := SetDesired(ctx, st, "pump-1", json.RawMessage(`{}`), SetOptions{}); err != nil {
		t.Fatal(err)
	}
	if msgs := downMessages(t, st, "pump-1"); len(msgs) != 1 || string(msgs[0].Value) != `{"setpoint":7}` {
		t.Fatalf("delta messages %v", msgs)
	}
}

// runWatcher runs a watcher until the test ends.
func runWatcher(t *testing.T, st *store.Store) (*Watcher, func()) {
	t.Helper()
	w, err := NewWatcher(WatcherConfig{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	stop := func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("watcher: %v", err)
		}
	}
	var once sync.Once
	t.Cleanup(func() { once.Do(stop) })
	return w, func() { once.Do(stop) }
}

// waitFor polls the stored (not recomputed) shadow of id until ok says
// yes, failing the test at the deadline.
func waitFor(t *testing.T, st *store.Store, id, what string, ok func(m map[string]any) bool) map[string]any {
	t.Helper()
	var m map[string]any
	wait.For(t, 0, what+" of "+id, func() bool {
		d, err := st.Table(store.ShadowsTable).Get(context.Background(), id)
		if err != nil {
			return false
		}
		m = decode(t, string(d.Value))
		return ok(m)
	})
	return m
}

func storedDelta(m map[string]any) map[string]any { return objectField(m, FieldDelta) }

func TestWatcherKeepsDeltaCurrent(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	w, _ := runWatcher(t, st)

	report(t, st, "pump-1", "pump", `{"setpoint":4}`)
	waitFor(t, st, "pump-1", "a delta", func(m map[string]any) bool { return m[FieldDelta] != nil })
	if _, err := SetDesired(ctx, st, "pump-1", json.RawMessage(`{"setpoint":7}`), SetOptions{}); err != nil {
		t.Fatal(err)
	}
	// The device applies the setpoint and reports it: the gateway patches
	// reported, and the watcher clears the stored delta.
	report(t, st, "pump-1", "pump", `{"setpoint":7}`)
	m := waitFor(t, st, "pump-1", "an empty delta", func(m map[string]any) bool { return len(storedDelta(m)) == 0 })
	if objectField(m, FieldReported)["setpoint"] == nil {
		t.Fatalf("shadow %v", m)
	}
	settled, _ := st.Table(store.ShadowsTable).Get(ctx, "pump-1")

	// Another device's change goes through the watcher after pump-1's
	// last write; once it is reconciled, pump-1 has not been written
	// again: the watcher's own write did not make it loop.
	report(t, st, "pump-2", "pump", `{"setpoint":1}`)
	waitFor(t, st, "pump-2", "a delta", func(m map[string]any) bool { return m[FieldDelta] != nil })
	again, _ := st.Table(store.ShadowsTable).Get(ctx, "pump-1")
	if again.Version != settled.Version {
		t.Fatalf("pump-1 went from version %d to %d with no change of its own", settled.Version, again.Version)
	}
	if w.Writes() < 2 {
		t.Fatalf("watcher counts %d writes, want at least 2", w.Writes())
	}
}

func TestWatcherResumesAndPrimes(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	// Shadows written before any watcher ran: the first one reconciles
	// them all.
	for i := range 20 {
		report(t, st, fmt.Sprintf("dev-%02d", i), "meter", `{"setpoint":1}`)
	}
	if _, err := SetDesired(ctx, st, "dev-00", json.RawMessage(`{"setpoint":1}`), SetOptions{}); err != nil {
		t.Fatal(err)
	}
	_, stop := runWatcher(t, st)
	for i := range 20 {
		waitFor(t, st, fmt.Sprintf("dev-%02d", i), "a delta", func(m map[string]any) bool { return m[FieldDelta] != nil })
	}
	stop()

	// Changes made while no watcher runs are picked up from the cursor.
	if _, err := SetDesired(ctx, st, "dev-05", json.RawMessage(`{"setpoint":9}`), SetOptions{}); err != nil {
		t.Fatal(err)
	}
	report(t, st, "dev-05", "meter", `{"setpoint":9}`)
	raw, _ := st.Table(store.ShadowsTable).Get(ctx, "dev-05")
	if len(storedDelta(decode(t, string(raw.Value)))) == 0 {
		t.Fatal("the stored delta is already empty before any watcher ran")
	}
	runWatcher(t, st)
	waitFor(t, st, "dev-05", "an empty delta", func(m map[string]any) bool { return len(storedDelta(m)) == 0 })
}

// TestReportOneCommit: a report, its change record and its history record
// are one commit; a report whose history cannot be written leaves the
// shadow as it was.
func TestReportOneCommit(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	src := Source{Class: "pump", Edge: "edge1", Site: "north"}
	history := func(v string) []store.AppendRequest {
		return []store.AppendRequest{{Path: store.ByDeviceStream, Topic: "pump-1", Partition: -1, Messages: []store.Message{{Value: []byte(v)}}}}
	}
	d, err := Report(ctx, st, "pump-1", json.RawMessage(`{"setpoint":4,"firmware":"1.2.0"}`), src, t0, history(`{"setpoint":4}`))
	if err != nil {
		t.Fatal(err)
	}
	if d.Firmware != "1.2.0" || !d.ReportedTS["setpoint"].Equal(t0) || !d.LastSeen.Equal(t0) || d.Site != "north" {
		t.Fatalf("after the report: %+v", d)
	}
	raw, _ := st.Table(store.ShadowsTable).Get(ctx, "pump-1")
	if m := decode(t, string(raw.Value)); m[FieldDelta] == nil || objectField(m, FieldReportedFP)["setpoint"] == nil {
		t.Fatalf("stored shadow not reconciled in the report's commit: %s", raw.Value)
	}
	_, next, _ := st.Stream(store.ByDeviceStream).Bounds(ctx, "pump-1", 0)
	if next != 1 {
		t.Fatalf("history records %d, want 1", next)
	}
	// No room for the history: nothing of the report is kept.
	if err := st.SetVolume(ctx, "telemetry", store.VolumeOptions{Quota: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := Report(ctx, st, "pump-1", json.RawMessage(`{"setpoint":5}`), src, t0.Add(time.Minute), history(`{"setpoint":5}`)); !errors.Is(err, store.ErrQuotaExceeded) {
		t.Fatalf("report over quota: %v", err)
	}
	if after, _ := st.Table(store.ShadowsTable).Get(ctx, "pump-1"); after.Version != raw.Version {
		t.Fatalf("shadow written (version %d to %d) though its history was refused", raw.Version, after.Version)
	}
}

// TestApplyEdge: an edge's shadow change replaces the edge-owned fields,
// keeps the node's desired side and recomputes the delta.
func TestApplyEdge(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	tbl := st.Table(store.ShadowsTable)
	if _, err := tbl.Put(ctx, "d1", json.RawMessage(`{"desired":{"temp":18},"desired_ts":{"temp":"2026-01-01T00:00:00Z"},"reported":{"temp":1},"old":true}`)); err != nil {
		t.Fatal(err)
	}
	doc := func() map[string]any {
		t.Helper()
		d, err := tbl.Get(ctx, "d1")
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		m = decode(t, string(d.Value))
		return m
	}
	// An edge's change: its fields replace the core's, but not desired.
	edgeDoc := `{"reported":{"temp":21},"connected":true,"desired":{"temp":99},"delta":{"x":1}}`
	if err := ApplyEdge(ctx, st, store.Change{Key: "d1", Op: "patch", Doc: json.RawMessage(edgeDoc), TS: time.Now()}); err != nil {
		t.Fatal(err)
	}
	got := doc()
	if got["reported"].(map[string]any)["temp"] != json.Number("21") || got["desired"].(map[string]any)["temp"] != json.Number("18") ||
		got["connected"] != true || got["old"] != nil || got["desired_ts"] == nil ||
		!Equal(objectField(got, FieldDelta), map[string]any{"temp": json.Number("18")}) {
		t.Fatalf("after the edge's change: %v", got)
	}
	// Applying it again changes nothing but the version.
	if err := ApplyEdge(ctx, st, store.Change{Key: "d1", Op: "patch", Doc: json.RawMessage(edgeDoc)}); err != nil {
		t.Fatal(err)
	}
	if again := doc(); len(again) != len(got) {
		t.Fatalf("applied twice: %v", again)
	}
	// The edge deletes its shadow: the core's desired side stays.
	if err := ApplyEdge(ctx, st, store.Change{Key: "d1", Op: "delete"}); err != nil {
		t.Fatal(err)
	}
	if got := doc(); len(got) != 3 || got["desired"] == nil || got["desired_ts"] == nil || got["delta"] == nil {
		t.Fatalf("after the edge's delete: %v", got)
	}
	// A device the core sets nothing for goes entirely.
	if err := ApplyEdge(ctx, st, store.Change{Key: "d2", Op: "put", Doc: json.RawMessage(`{"reported":{}}`)}); err != nil {
		t.Fatal(err)
	}
	if err := ApplyEdge(ctx, st, store.Change{Key: "d2", Op: "delete"}); err != nil {
		t.Fatal(err)
	}
	if _, err := tbl.Get(ctx, "d2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("d2 after delete: %v", err)
	}
	// Deleting what the core never had is nothing.
	if err := ApplyEdge(ctx, st, store.Change{Key: "d3", Op: "delete"}); err != nil {
		t.Fatal(err)
	}
	if _, err := tbl.Get(ctx, "d3"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("d3: %v", err)
	}
}

// TestWatcherFollowsEveryPartition: with a change stream of several
// partitions, every device's change is reconciled, whichever partition
// its key falls in.
func TestWatcherFollowsEveryPartition(t *testing.T) {
	st, err := store.Open(store.Config{Dir: t.TempDir(), Name: "edge1", MinFreeBytes: -1, RetentionInterval: -1,
		Partitions: map[string]int{store.ShadowChanges: 4}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if info, err := st.Stat(context.Background(), store.ShadowChanges); err != nil || info.Partitions != 4 {
		t.Fatalf("change stream: %+v %v", info, err)
	}
	runWatcher(t, st)
	for i := range 20 {
		report(t, st, fmt.Sprintf("dev-%02d", i), "meter", `{"setpoint":1}`)
	}
	for i := range 20 {
		waitFor(t, st, fmt.Sprintf("dev-%02d", i), "a delta", func(m map[string]any) bool { return m[FieldDelta] != nil })
	}
}
