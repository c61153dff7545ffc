package replicate

import (
	"reflect"
	"testing"
	"time"

	"github.com/weft-io/weft/sync/wire"
)

// TestReportBacklogOnlyWhenLasting feeds a reporter a sender's figures
// and a clock: it reports while a message has waited a period or more,
// once more when that is over, and never at rest or while messages are
// acknowledged within the period; the receiver's figures from the reports
// are exact whatever batches arrive after them.
func TestReportBacklogOnlyWhenLasting(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	link := &LinkStats{streams: map[string]*StreamStats{}}
	send := link.Stream(DirSend, "/uplink/events")
	send.running.Store(true)
	var fig lagFigures
	send.setLag(func() lagFigures { return fig })
	r := &reporter{link: link, every: time.Second}
	steps := []struct {
		name string
		at   time.Duration
		fig  lagFigures
		sent uint64
		want *wire.StreamBacklog // nil: no frame
	}{
		{"at rest", 0, lagFigures{}, 0, nil},
		{"acknowledged within the period", 2 * time.Second, lagFigures{msgs: 3, unsent: 0, bytes: 300, oldest: t0.Add(1500 * time.Millisecond).UnixNano()}, 3, nil},
		{"a lasting backlog", 10 * time.Second, lagFigures{msgs: 100, unsent: 90, bytes: 10000, oldest: t0.UnixNano(), unsentOldest: t0.Add(time.Second).UnixNano()}, 10,
			&wire.StreamBacklog{Path: "/uplink/events", Messages: 90, Bytes: 9000, Age: 10000, UnsentAge: 9000, Sent: 10}},
		{"still lasting, unchanged", 11 * time.Second, lagFigures{msgs: 100, unsent: 90, bytes: 10000, oldest: t0.UnixNano()}, 10,
			&wire.StreamBacklog{Path: "/uplink/events", Messages: 90, Bytes: 9000, Age: 11000, Sent: 10}},
		{"a corrupt range waiting", 11500 * time.Millisecond, lagFigures{msgs: 100, unsent: 90, bytes: 10000, oldest: t0.UnixNano()}, 10,
			&wire.StreamBacklog{Path: "/uplink/events", Messages: 90, Bytes: 9000, Age: 11500, Sent: 10,
				Failed: []wire.FailedRange{{Topic: "edge1", From: 19, To: 40, Error: "corrupt"}}}},
		{"over", 12 * time.Second, lagFigures{}, 100, &wire.StreamBacklog{Path: "/uplink/events", Sent: 100}},
		{"at rest again", 13 * time.Second, lagFigures{}, 100, nil},
	}
	for _, st := range steps {
		fig = st.fig
		send.setFailures(nil)
		if st.want != nil && st.want.Failed != nil {
			send.setFailures(map[tp]Failure{{"edge1", 0}: {Topic: "edge1", From: 19, To: 40, Error: "corrupt"}})
		}
		send.sentMsg.Store(st.sent)
		b := r.next(t0.Add(st.at))
		switch {
		case st.want == nil && b != nil:
			t.Errorf("%s: sent %+v, want nothing", st.name, b)
		case st.want != nil && (b == nil || len(b.Streams) != 1 || !reflect.DeepEqual(b.Streams[0], *st.want)):
			t.Errorf("%s: sent %+v, want %+v", st.name, b, *st.want)
		}
	}

	// At the receiver: a report of 90 unsent and 10 sent, of which 4 have
	// arrived, is 96 behind; as the other 6 arrive, 90.
	recv := link.Stream(DirReceive, "/uplink/events")
	recv.recvMsg.Store(4)
	link.TakeBacklog(&wire.Backlog{Streams: []wire.StreamBacklog{{Path: "/uplink/events", Messages: 90, Bytes: 9000, Age: 10000, Sent: 10,
		Failed: []wire.FailedRange{{Topic: "edge1", From: 19, To: 40, Error: "corrupt"}}},
		{Path: "/not/received"}}}, t0)
	st := recv.status(t0.Add(5 * time.Second))
	if st.LagMessages != 96 || st.BacklogBytes != 9600 || st.LagSeconds != 15 || !st.ReportedAt.Equal(t0) {
		t.Fatalf("receiver's figures from a report: %+v", st)
	}
	if len(st.Failed) != 1 || st.Failed[0] != (Failure{Topic: "edge1", From: 19, To: 40, Error: "corrupt"}) {
		t.Fatalf("receiver's failures from a report: %+v", st.Failed)
	}
	recv.recvMsg.Store(10)
	if st := recv.status(t0.Add(5 * time.Second)); st.LagMessages != 90 {
		t.Fatalf("after the batches in flight arrived: %d behind, want 90", st.LagMessages)
	}
	// With the age of the oldest unsent: once all that was sent is here,
	// the lag's age is theirs.
	link.TakeBacklog(&wire.Backlog{Streams: []wire.StreamBacklog{{Path: "/uplink/events", Messages: 90, Bytes: 9000, Age: 10000, UnsentAge: 2000, Sent: 10}}}, t0)
	if st := recv.status(t0.Add(5 * time.Second)); st.LagMessages != 90 || st.LagSeconds != 7 {
		t.Fatalf("all sent arrived: %d behind for %v s, want 90 for 7 s", st.LagMessages, st.LagSeconds)
	}
	recv.recvMsg.Store(4)
	if st := recv.status(t0.Add(5 * time.Second)); st.LagSeconds != 15 {
		t.Fatalf("with batches on their way: lag of %v s, want the oldest unacknowledged's 15", st.LagSeconds)
	}
	recv.recvMsg.Store(10)
	// A batch applied after the report is the newer word.
	recv.backlog.Store(80)
	recv.reported.Store(t0.Add(time.Second).UnixNano())
	if st := recv.status(t0.Add(5 * time.Second)); st.LagMessages != 80 {
		t.Fatalf("after a batch: %d behind, want 80", st.LagMessages)
	}
}
