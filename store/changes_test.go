package store

import (
	"context"
	"fmt"
	"slices"
	"testing"
)

func TestStreamChanges(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	st := s.Stream(UplinkStream)
	if _, err := st.Append(ctx, "before", Message{Value: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	parts, cursor, complete := st.Changes(0)
	if complete || parts != nil {
		t.Fatalf("first call: %v, complete %v; want nothing and incomplete", parts, complete)
	}
	if parts, c, complete := st.Changes(cursor); !complete || len(parts) != 0 || c != cursor {
		t.Fatalf("nothing appended: %v %d %v", parts, c, complete)
	}
	for _, topic := range []string{"a", "b", "a"} {
		if _, err := st.Append(ctx, topic, Message{Value: []byte(topic)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Stream(AuditStream).Append(ctx, "other", Message{Value: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	parts, cursor2, complete := st.Changes(cursor)
	want := []TopicPart{{"a", 0}, {"b", 0}}
	if !complete || !slices.Equal(parts, want) {
		t.Fatalf("after appends to a, b, a: %v complete %v; want %v", parts, complete, want)
	}
	// With their ends: a took offsets 0 and 1, b offset 0.
	ends, _, complete := st.ChangeEnds(cursor)
	wantEnds := []PartEnd{{TopicPart{"a", 0}, 2}, {TopicPart{"b", 0}, 1}}
	if !complete || !slices.Equal(ends, wantEnds) {
		t.Fatalf("ends after appends to a, b, a: %v complete %v; want %v", ends, complete, wantEnds)
	}
	// A reader too far behind is told to look at everything.
	for i := range changeLogSize/256 + 1 {
		reqs := make([]AppendRequest, 256)
		for j := range reqs {
			reqs[j] = AppendRequest{Path: UplinkStream, Topic: fmt.Sprintf("t%d", (i*256+j)%1000), Partition: 0, Messages: msgs("v")}
		}
		if _, err := s.AppendMany(ctx, reqs); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, complete := st.Changes(cursor2); complete {
		t.Fatal("a cursor older than the log's memory came back complete")
	}
}
