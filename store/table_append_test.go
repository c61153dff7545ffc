package store

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
)

// TestUpdateAppend: a document, its change record and the appends fn
// returns are committed together, or none of them when any fails.
func TestUpdateAppend(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	tb := s.Table(ShadowsTable)
	ev := s.Stream(ByDeviceStream)
	changes := s.Stream(ShadowChanges)

	msg := []Message{{Key: []byte("dev1"), Value: []byte(`{"temp":20}`)}}
	d, pos, err := tb.UpdateAppend(ctx, "dev1", func(old Doc, exists bool) (json.RawMessage, []AppendRequest, error) {
		return json.RawMessage(`{"reported":{"temp":20}}`), []AppendRequest{{Path: ByDeviceStream, Topic: "dev1", Partition: -1, Messages: msg}}, nil
	})
	if err != nil || d.Version != 1 || len(pos) != 1 || len(pos[0]) != 1 || pos[0][0].Offset != 0 {
		t.Fatalf("update: %+v %+v %v", d, pos, err)
	}
	if got, err := ev.Read(ctx, "dev1", pos[0][0].Partition, 0, ReadOptions{}); err != nil || len(got) != 1 {
		t.Fatalf("appended: %v %v", got, err)
	}
	_, next, err := changes.Bounds(ctx, s.cfg.Name, 0)
	if err != nil || next != 1 {
		t.Fatalf("change records: %d %v", next, err)
	}

	// An append that cannot be made leaves the document, its change
	// record and the other appends out.
	_, _, err = tb.UpdateAppend(ctx, "dev1", func(old Doc, exists bool) (json.RawMessage, []AppendRequest, error) {
		return json.RawMessage(`{"reported":{"temp":21}}`), []AppendRequest{
			{Path: ByDeviceStream, Topic: "dev1", Partition: -1, Messages: msg},
			{Path: "/telemetry/nope", Topic: "dev1", Partition: -1, Messages: msg},
		}, nil
	})
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("append to a missing stream: %v", err)
	}
	if got, err := tb.Get(ctx, "dev1"); err != nil || got.Version != 1 || string(got.Value) != `{"reported":{"temp":20}}` {
		t.Fatalf("document after a failed update: %s %+v %v", got.Value, got, err)
	}
	if _, next, err := ev.Bounds(ctx, "dev1", pos[0][0].Partition); err != nil || next != 1 {
		t.Fatalf("stream after a failed update: next %d %v", next, err)
	}
	if _, next, err := changes.Bounds(ctx, s.cfg.Name, 0); err != nil || next != 1 {
		t.Fatalf("change records after a failed update: %d %v", next, err)
	}
}

// TestNodeName: a store opened without a name (a store command on a
// node's data directory) writes its own records under the name the node
// opened it with, so that a replica takes them as the node's.
func TestNodeName(t *testing.T) {
	dir := t.TempDir()
	open := func(name string) *Store {
		t.Helper()
		s, err := Open(Config{Dir: dir, Name: name, MinFreeBytes: -1, RetentionInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := open("")
	if s.Name() != "local" {
		t.Fatalf("a store no node opened is %q", s.Name())
	}
	s.Close()
	s = open("edge1")
	s.Close()
	s = open("")
	defer s.Close()
	if s.Name() != "edge1" {
		t.Fatalf("opened without a name after edge1: %q", s.Name())
	}
	ctx := context.Background()
	if _, err := s.Table(ShadowsTable).Put(ctx, "d", json.RawMessage(`{}`)); err != nil {
		t.Fatal(err)
	}
	if _, next, err := s.Stream(ShadowChanges).Bounds(ctx, "edge1", 0); err != nil || next != 1 {
		t.Fatalf("change record under edge1: %d %v", next, err)
	}
}
