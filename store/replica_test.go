package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func replicaMsgs(first uint64, n int) []Message {
	out := make([]Message, n)
	for i := range out {
		out[i] = Message{Offset: first + uint64(i), Value: []byte(fmt.Sprintf("m%d", first+uint64(i))), Timestamp: time.Unix(100, 0), Headers: map[string]string{"h": "v"}}
	}
	return out
}

func TestApplyReplica(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	st := s.Stream(UplinkStream)
	apply := func(b ReplicaBatch) (int, error) {
		b.Path, b.Topic = UplinkStream, "edge-1"
		n, err := s.ApplyReplica(ctx, []ReplicaBatch{b})
		if err != nil {
			return 0, err
		}
		return n[0], nil
	}
	tests := []struct {
		name    string
		batch   ReplicaBatch
		applied int
		err     error
		next    uint64
	}{
		{"first batch", ReplicaBatch{Messages: replicaMsgs(0, 5)}, 5, nil, 5},
		{"same batch again", ReplicaBatch{Messages: replicaMsgs(0, 5)}, 0, nil, 5},
		{"overlapping batch", ReplicaBatch{Messages: replicaMsgs(3, 4)}, 2, nil, 7},
		{"gap", ReplicaBatch{Messages: replicaMsgs(9, 2)}, 0, ErrGap, 7},
		{"source trimmed past the replica", ReplicaBatch{Messages: replicaMsgs(20, 3), Low: 20}, 3, nil, 23},
		{"not dense", ReplicaBatch{Messages: append(replicaMsgs(23, 1), replicaMsgs(30, 1)...)}, 0, ErrInvalid, 23},
		{"bad partition", ReplicaBatch{Partition: 3, Messages: replicaMsgs(23, 1)}, 0, ErrBadPartition, 23},
	}
	for _, tc := range tests {
		n, err := apply(tc.batch)
		if !errors.Is(err, tc.err) || n != tc.applied {
			t.Fatalf("%s: applied %d, %v; want %d, %v", tc.name, n, err, tc.applied, tc.err)
		}
		if _, next, _ := st.Bounds(ctx, "edge-1", 0); next != tc.next {
			t.Fatalf("%s: next %d, want %d", tc.name, next, tc.next)
		}
	}
	// The gap 7..19 was trimmed at the source: the replica starts at 20.
	low, _, _ := st.Bounds(ctx, "edge-1", 0)
	if low != 20 {
		t.Fatalf("low-water mark %d, want 20", low)
	}
	if _, err := st.Read(ctx, "edge-1", 0, 0, ReadOptions{}); !errors.Is(err, ErrTrimmed) {
		t.Fatalf("read below the moved low-water mark: %v", err)
	}
	got, err := st.Read(ctx, "edge-1", 0, 20, ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var vals []string
	for _, m := range got {
		vals = append(vals, string(m.Value))
		if m.Timestamp.Unix() != 100 || m.Headers["h"] != "v" {
			t.Fatalf("message %d lost its timestamp or headers: %+v", m.Offset, m)
		}
	}
	if strings.Join(vals, ",") != "m20,m21,m22" {
		t.Fatalf("replica holds %v", vals)
	}
	// A replica's own appends continue after what it applied.
	pos, _ := st.Append(ctx, "edge-1", Message{Value: []byte("x")})
	if pos[0].Offset != 23 {
		t.Fatalf("append after replica batches at %d", pos[0].Offset)
	}
}
