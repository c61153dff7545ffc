package shadow

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/weft-io/weft/internal/testenv/wait"
	"github.com/weft-io/weft/store"
)

// applyAll applies ws in order on st, with versions 10, 11, ...
func applyAll(t *testing.T, st *store.Store, ws []Write, origin bool) {
	t.Helper()
	for i, w := range ws {
		err := st.Write(context.Background(), func(tx *store.Tx) error {
			_, err := ApplyWrite(tx, w, uint64(10+i), origin)
			return err
		})
		if err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
}

func readTopic(t *testing.T, st *store.Store, path, topic string) []store.Message {
	t.Helper()
	msgs, err := st.Stream(path).Read(context.Background(), topic, 0, 0, store.ReadOptions{})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		t.Fatal(err)
	}
	return msgs
}

// TestApplyWriteSameEverywhere applies the same writes on two nodes
// whose copies of the device's reported state differ: both append the
// same messages at the same offsets and end with the same desired side;
// only the writer appends the local records.
func TestApplyWriteSameEverywhere(t *testing.T) {
	writer, other := openStore(t), openStore(t)
	report(t, writer, "pump-1", "pump", `{"setpoint":4}`)
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	audit := store.AppendRequest{Path: store.AuditStream, Topic: "edge1", Partition: 0, Messages: []store.Message{{Value: []byte(`{"a":1}`), Timestamp: at}}}
	ws := []Write{
		{Desired: &DesiredWrite{Device: "pump-1", Patch: json.RawMessage(`{"setpoint":7,"mode":"eco"}`), Now: at, Reported: json.RawMessage(`{"setpoint":4}`)},
			Local: []store.AppendRequest{audit}},
		{Records: []store.AppendRequest{{Path: store.UpdatesStream, Topic: "all", Partition: -1, Messages: []store.Message{{Value: []byte(`{"x":1}`), Timestamp: at}}}}},
		{Desired: &DesiredWrite{Device: "pump-1", Patch: json.RawMessage(`{"mode":null}`), Now: at.Add(time.Second), Reported: json.RawMessage(`{"setpoint":4}`)}},
	}
	applyAll(t, writer, ws, true)
	applyAll(t, other, ws, false)

	for _, topic := range []string{DeviceTopic("pump-1"), "all"} {
		a, b := readTopic(t, writer, store.UpdatesStream, topic), readTopic(t, other, store.UpdatesStream, topic)
		if len(a) == 0 || !reflect.DeepEqual(a, b) {
			t.Errorf("topic %s: writer has\n%+v\nthe other node\n%+v", topic, a, b)
		}
	}
	d := downMessages(t, writer, "pump-1")
	if len(d) != 2 || string(d[0].Value) != `{"mode":"eco","setpoint":7}` || d[0].Headers[HeaderVersion] != "10" ||
		string(d[1].Value) != `{"setpoint":7}` || d[1].Headers[HeaderDesired] != `{"setpoint":7}` || d[1].Headers[HeaderVersion] != "12" {
		t.Errorf("deltas: %+v", d)
	}
	dw, err := Get(context.Background(), writer, "pump-1")
	if err != nil {
		t.Fatal(err)
	}
	do, err := Get(context.Background(), other, "pump-1")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(dw.Desired, do.Desired) || !reflect.DeepEqual(dw.DesiredTS, do.DesiredTS) {
		t.Errorf("desired: writer %v %v, other %v %v", dw.Desired, dw.DesiredTS, do.Desired, do.DesiredTS)
	}
	if n := len(readTopic(t, writer, store.AuditStream, "edge1")); n != 1 {
		t.Errorf("writer's audit records: %d, want 1", n)
	}
	if n := len(readTopic(t, other, store.AuditStream, "edge1")); n != 0 {
		t.Errorf("other node's audit records: %d, want 0", n)
	}
}

// TestApplyWriteRefusesOtherStreams: a core-owned write appends to
// /updates/down only.
func TestApplyWriteRefusesOtherStreams(t *testing.T) {
	st := openStore(t)
	err := st.Write(context.Background(), func(tx *store.Tx) error {
		_, err := ApplyWrite(tx, Write{Records: []store.AppendRequest{{Path: store.AuditStream, Topic: "x", Messages: []store.Message{{Value: []byte("1")}}}}}, 1, true)
		return err
	})
	if !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("err %v, want store.ErrInvalid", err)
	}
}

// recordingDown is a Down that applies locally and records the writes.
type recordingDown struct {
	st     *store.Store
	writes []Write
}

func (d *recordingDown) Write(ctx context.Context, w Write) (Written, error) {
	d.writes = append(d.writes, w)
	var out Written
	err := d.st.Write(ctx, func(tx *store.Tx) (err error) {
		out, err = ApplyWrite(tx, w, 100, true)
		return err
	})
	return out, err
}

// TestSetDesiredThroughDown: with a Down set, SetDesired checks its
// conditions against the node's copy, writes through the Down (the
// patch, its time and the reported state), and returns the shadow after.
func TestSetDesiredThroughDown(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	before := report(t, st, "pump-1", "pump", `{"setpoint":4}`)
	d := &recordingDown{st: st}
	SetDown(st, d)
	defer SetDown(st, nil)
	if _, ok := DownOf(st).(*recordingDown); !ok {
		t.Fatal("DownOf does not return the Down set")
	}

	if _, err := SetDesired(ctx, st, "pump-1", json.RawMessage(`{"setpoint":7}`), SetOptions{Conds: []store.Cond{store.IfVersion(before.Version + 5)}}); !errors.Is(err, store.ErrVersion) {
		t.Fatalf("stale version: %v", err)
	}
	errNo := errors.New("no")
	if _, err := SetDesired(ctx, st, "pump-1", json.RawMessage(`{"setpoint":7}`), SetOptions{Check: func(Doc, bool) error { return errNo }}); !errors.Is(err, errNo) {
		t.Fatalf("check: %v", err)
	}
	if len(d.writes) != 0 {
		t.Fatalf("refused changes written: %+v", d.writes)
	}
	var also Doc
	doc, err := SetDesired(ctx, st, "pump-1", json.RawMessage(`{"setpoint":7}`), SetOptions{Now: t0, Conds: []store.Cond{store.IfVersion(before.Version)},
		Also: func(saved Doc) []store.AppendRequest { also = saved; return nil }})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.writes) != 1 || d.writes[0].Desired == nil || string(d.writes[0].Desired.Reported) != `{"setpoint":4}` || !d.writes[0].Desired.Now.Equal(t0) {
		t.Fatalf("writes: %+v", d.writes)
	}
	if doc.Desired["setpoint"] != json.Number("7") || doc.Version != before.Version+1 || also.Version != before.Version+1 {
		t.Errorf("returned %+v (Also saw version %d)", doc, also.Version)
	}
	if m := downMessages(t, st, "pump-1"); len(m) != 1 || m[0].Headers[HeaderVersion] != "100" {
		t.Errorf("delta: %+v", m)
	}
	SetDown(st, nil)
	if _, ok := DownOf(st).(LocalDown); !ok {
		t.Error("SetDown(nil) does not restore LocalDown")
	}
}

// TestStageThroughOutbox: on a node with a Down set, a write staged in a
// transaction is kept in the outbox in that commit and written through
// the Down by RunOutbox, then removed; on a node without, it is applied
// in the transaction.
func TestStageThroughOutbox(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec := func(v string) Write {
		return Write{Records: []store.AppendRequest{{Path: store.UpdatesStream, Topic: "device/d1", Partition: -1, Messages: []store.Message{{Value: []byte(v)}}}}}
	}

	local := openStore(t)
	if err := local.Write(ctx, func(tx *store.Tx) error { return Stage(tx, local, rec(`1`)) }); err != nil {
		t.Fatal(err)
	}
	if m := downMessages(t, local, "d1"); len(m) != 1 {
		t.Fatalf("single node: %d records", len(m))
	}

	st := openStore(t)
	d := &syncDown{recordingDown: recordingDown{st: st}}
	SetDown(st, d)
	defer SetDown(st, nil)
	if err := EnsureOutbox(ctx, st); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{`1`, `2`} {
		if err := st.Write(ctx, func(tx *store.Tx) error { return Stage(tx, st, rec(v)) }); err != nil {
			t.Fatal(err)
		}
	}
	if m := downMessages(t, st, "d1"); len(m) != 0 {
		t.Fatalf("staged writes appended before the outbox ran: %+v", m)
	}
	done := make(chan error, 1)
	go func() { done <- RunOutbox(ctx, st, 10*time.Millisecond) }()
	wait.For(t, 10*time.Second, "the outbox written and emptied", func() bool {
		docs, _, err := st.Table(OutboxTable).Scan(ctx, "", "", 10)
		return err == nil && len(docs) == 0 && len(downMessages(t, st, "d1")) == 2
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if m := downMessages(t, st, "d1"); string(m[0].Value) != "1" || string(m[1].Value) != "2" {
		t.Errorf("order: %+v", m)
	}
}

// syncDown is a recordingDown safe for a goroutine.
type syncDown struct {
	mu sync.Mutex
	recordingDown
}

func (d *syncDown) Write(ctx context.Context, w Write) (Written, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.recordingDown.Write(ctx, w)
}
