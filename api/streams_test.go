package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/store"
)

const eventsURL = "/api/v1/streams/telemetry/events"

func TestAppendAndRead(t *testing.T) {
	e := newEnv(t)
	var one AppendResponse
	e.post(eventsURL+"/messages", `{"topic":"edge1","key":"dev1","value":"{\"t\":21.5}","headers":{"qos":"1"}}`, 200, &one)
	if want := []Offset{{"edge1", 0, 0}}; !slices.Equal(one.Offsets, want) {
		t.Fatalf("offsets %v, want %v", one.Offsets, want)
	}
	var many AppendResponse
	e.post(eventsURL+"/messages", `{"messages":[
		{"topic":"edge1","value":"a"},
		{"topic":"edge2","value":"b","partition":0},
		{"topic":"edge1","value":"c"},
		{"topic":"edge1","value":""}]}`, 200, &many)
	want := []Offset{{"edge1", 0, 1}, {"edge2", 0, 0}, {"edge1", 0, 2}, {"edge1", 0, 3}}
	if !slices.Equal(many.Offsets, want) {
		t.Fatalf("offsets %v, want %v", many.Offsets, want)
	}

	var got MessagesResponse
	e.get(eventsURL+"/messages?topic=edge1", certs.RoleViewer, 200, &got)
	if got.Next != 4 || len(got.Messages) != 4 {
		t.Fatalf("read %+v, want 4 messages and next 4", got)
	}
	m := got.Messages[0]
	if m.Offset != 0 || *m.Key != "dev1" || *m.Value != `{"t":21.5}` || m.Headers["qos"] != "1" || m.Timestamp.IsZero() {
		t.Fatalf("first message %+v", m)
	}
	for i, v := range []string{"a", "c", ""} {
		if m := got.Messages[i+1]; m.Offset != uint64(i+1) || m.Key != nil || m.Value == nil || *m.Value != v {
			t.Fatalf("message %d: %+v, want value %q", i+1, m, v)
		}
	}

	// Paging with from, limit and next.
	e.get(eventsURL+"/messages?topic=edge1&from=1&limit=2", certs.RoleViewer, 200, &got)
	if len(got.Messages) != 2 || got.Messages[0].Offset != 1 || got.Next != 3 {
		t.Fatalf("page %+v, want offsets 1, 2 and next 3", got)
	}
	// At and past the end: nothing, next is from.
	for _, q := range []string{"from=4", "from=9", "from=end"} {
		var end MessagesResponse
		e.get(eventsURL+"/messages?topic=edge1&"+q, certs.RoleViewer, 200, &end)
		want := uint64(4)
		if q == "from=9" {
			want = 9
		}
		if end.Messages == nil || len(end.Messages) != 0 || end.Next != want {
			t.Fatalf("%s: %+v, want no messages and next %d", q, end, want)
		}
	}

	// Topics, paged.
	var topics TopicsResponse
	e.get(eventsURL+"/topics?limit=1", certs.RoleViewer, 200, &topics)
	if !slices.Equal(topics.Topics, []string{"edge1"}) || topics.Next != "edge1" {
		t.Fatalf("topics page 1 %+v", topics)
	}
	e.get(eventsURL+"/topics?limit=1&after=edge1", certs.RoleViewer, 200, &topics)
	if !slices.Equal(topics.Topics, []string{"edge2"}) || topics.Next != "" {
		t.Fatalf("topics page 2 %+v", topics)
	}
	e.get(eventsURL+"/topics?prefix=x", certs.RoleViewer, 200, &topics)
	if topics.Topics == nil || len(topics.Topics) != 0 {
		t.Fatalf("topics with prefix x %+v", topics)
	}
}

func TestStreamNamesWithSlashes(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for _, p := range []string{"/telemetry/site/a/messages", "/telemetry/topics"} {
		if err := e.st.CreateStream(ctx, p, store.StreamOptions{}); err != nil {
			t.Fatal(err)
		}
		var res AppendResponse
		e.post("/api/v1/streams"+p+"/messages", `{"topic":"t","value":"`+p+`"}`, 200, &res)
		var got MessagesResponse
		e.get("/api/v1/streams"+p+"/messages?topic=t", certs.RoleViewer, 200, &got)
		if len(got.Messages) != 1 || *got.Messages[0].Value != p {
			t.Fatalf("%s: %+v", p, got)
		}
	}
}

func TestPartitions(t *testing.T) {
	e := newEnv(t)
	if err := e.st.CreateStream(context.Background(), "/telemetry/multi", store.StreamOptions{Partitions: 3}); err != nil {
		t.Fatal(err)
	}
	var res AppendResponse
	e.post("/api/v1/streams/telemetry/multi/messages", `{"messages":[
		{"topic":"t","value":"p2","partition":2},
		{"topic":"t","value":"k","key":"dev7"}]}`, 200, &res)
	if res.Offsets[0] != (Offset{"t", 2, 0}) {
		t.Fatalf("offsets %v", res.Offsets)
	}
	keyed := res.Offsets[1]
	var got MessagesResponse
	e.get(fmt.Sprintf("/api/v1/streams/telemetry/multi/messages?topic=t&partition=%d&from=%d", keyed.Partition, keyed.Offset), certs.RoleViewer, 200, &got)
	if len(got.Messages) == 0 || got.Messages[0].Partition != keyed.Partition || *got.Messages[0].Key != "dev7" {
		t.Fatalf("keyed message at %+v: %+v", keyed, got)
	}
	resp, b := e.do("GET", "/api/v1/streams/telemetry/multi/messages?topic=t&partition=3", e.token(certs.RoleViewer), "")
	problem(t, resp, b, 400)
	resp, b = e.do("POST", "/api/v1/streams/telemetry/multi/messages", e.token(certs.RoleAdmin), `{"topic":"t","partition":3}`)
	if p := problem(t, resp, b, 400); p.Title != "No such partition" {
		t.Fatalf("problem %+v", p)
	}
}

func TestBinaryRoundTrip(t *testing.T) {
	e := newEnv(t)
	key, val := []byte{0xff, 0x00, 0xfe}, []byte{0xc3, 0x28, 0x00, 0x01}
	body := fmt.Sprintf(`{"topic":"bin","key_b64":%q,"value_b64":%q}`,
		base64.StdEncoding.EncodeToString(key), base64.StdEncoding.EncodeToString(val))
	e.post(eventsURL+"/messages", body, 200, nil)

	_, raw := e.do("GET", eventsURL+"/messages?topic=bin", e.token(certs.RoleViewer), "")
	var generic struct{ Messages []map[string]any }
	if err := json.Unmarshal(raw, &generic); err != nil {
		t.Fatal(err)
	}
	if m := generic.Messages[0]; m["value"] != nil || m["key"] != nil || m["value_b64"] == nil || m["key_b64"] == nil {
		t.Fatalf("binary message as %v: want key_b64 and value_b64 only", m)
	}
	var got MessagesResponse
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	sm, err := got.Messages[0].Decode()
	if err != nil {
		t.Fatal(err)
	}
	if string(sm.Key) != string(key) || string(sm.Value) != string(val) {
		t.Fatalf("round trip: key %x value %x, want %x %x", sm.Key, sm.Value, key, val)
	}
}

func TestBlockingRead(t *testing.T) {
	e := newEnv(t)
	waiting := make(chan struct{})
	var once sync.Once
	e.srv.testHookWait = func() { once.Do(func() { close(waiting) }) }
	type result struct {
		got MessagesResponse
		err error
	}
	done := make(chan result, 1)
	tok := e.token(certs.RoleViewer)
	go func() {
		// wait is the most allowed: only the append can end it early.
		resp, b := e.do("GET", eventsURL+"/messages?topic=live&from=0&wait=1m", tok, "")
		var r result
		if resp.StatusCode != 200 {
			r.err = fmt.Errorf("status %d: %s", resp.StatusCode, b)
		} else {
			r.err = json.Unmarshal(b, &r.got)
		}
		done <- r
	}()
	select {
	case <-waiting:
	case r := <-done:
		t.Fatalf("read returned before waiting: %+v", r)
	}
	e.post(eventsURL+"/messages", `{"topic":"live","value":"wake"}`, 200, nil)
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatal(r.err)
		}
		if len(r.got.Messages) != 1 || *r.got.Messages[0].Value != "wake" || r.got.Next != 1 {
			t.Fatalf("woken read %+v", r.got)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("blocking read not woken by the append")
	}
}

func TestBlockingReadTimesOut(t *testing.T) {
	e := newEnv(t)
	var got MessagesResponse
	e.get(eventsURL+"/messages?topic=quiet&from=0&wait=20ms", certs.RoleViewer, 200, &got)
	if got.Messages == nil || len(got.Messages) != 0 || got.Next != 0 {
		t.Fatalf("timed-out read %+v, want an empty list and next 0", got)
	}
}

func TestReadBelowLowWaterMark(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	const path = "/telemetry/capped"
	if err := e.st.CreateStream(ctx, path, store.StreamOptions{MaxBytes: 1}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		e.post("/api/v1/streams"+path+"/messages", `{"topic":"t","value":"x"}`, 200, nil)
	}
	if err := e.st.EnforceRetention(ctx); err != nil {
		t.Fatal(err)
	}
	low, _, err := e.st.Stream(path).Bounds(ctx, "t", 0)
	if err != nil || low == 0 {
		t.Fatalf("bounds: low %d, %v: retention trimmed nothing", low, err)
	}
	resp, b := e.do("GET", "/api/v1/streams"+path+"/messages?topic=t&from=0", e.token(certs.RoleViewer), "")
	p := problem(t, resp, b, 410)
	if p.Title != "Offset trimmed" || p.LowWaterMark == nil || *p.LowWaterMark != low ||
		!strings.Contains(p.Detail, fmt.Sprintf("low-water mark %d", low)) {
		t.Fatalf("problem %+v, want the low-water mark %d", p, low)
	}
	// Without from, a read starts at the low-water mark.
	var got MessagesResponse
	e.get("/api/v1/streams"+path+"/messages?topic=t", certs.RoleViewer, 200, &got)
	if got.Next != low {
		t.Fatalf("read from the default start: %+v, want next %d", got, low)
	}
}

func TestBodyTooLarge(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxBodyBytes = 1024 })
	big := `{"topic":"t","value":"` + strings.Repeat("x", 2048) + `"}`
	resp, b := e.do("POST", eventsURL+"/messages", e.token(certs.RoleAdmin), big)
	if p := problem(t, resp, b, 413); p.Title != "Body too large" {
		t.Fatalf("problem %+v", p)
	}
	var sb strings.Builder
	sb.WriteString(`{"messages":[`)
	for i := range MaxAppendMessages + 1 {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(`{"topic":"t"}`)
	}
	sb.WriteString(`]}`)
	e2 := newEnv(t)
	resp, b = e2.do("POST", eventsURL+"/messages", e2.token(certs.RoleAdmin), sb.String())
	problem(t, resp, b, 413)
}

func TestStreamErrors(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		method, path, body string
		status             int
		title              string
	}{
		{"GET", eventsURL + "/messages", "", 400, "Bad request"},
		{"GET", eventsURL + "/messages?topic=a&limit=0", "", 400, "Bad request"},
		{"GET", eventsURL + "/messages?topic=a&limit=10001", "", 400, "Bad request"},
		{"GET", eventsURL + "/messages?topic=a&from=-1", "", 400, "Bad request"},
		{"GET", eventsURL + "/messages?topic=a&wait=2m", "", 400, "Bad request"},
		{"GET", eventsURL + "/messages?topic=a&wait=soon", "", 400, "Bad request"},
		{"GET", eventsURL + "/messages?topic=a&partition=-1", "", 400, "Bad request"},
		{"GET", eventsURL + "/other", "", 404, "Not found"},
		{"GET", "/api/v1/streams/telemetry/events", "", 404, "Not found"},
		{"GET", "/api/v1/streams/telemetry/nope/messages?topic=a", "", 404, "Not found"},
		{"GET", "/api/v1/streams/nope/events/messages?topic=a", "", 404, "Not found"},
		{"GET", "/api/v1/streams/shadows/devices/messages?topic=a", "", 409, "Wrong object kind"},
		{"POST", eventsURL + "/messages", "", 400, "Bad request"},
		{"POST", eventsURL + "/messages", `{"value":"x"}`, 400, "Bad request"},
		{"POST", eventsURL + "/messages", `{"topic":"a","valu":"x"}`, 400, "Bad request"},
		{"POST", eventsURL + "/messages", `{"topic":"a"} {}`, 400, "Bad request"},
		{"POST", eventsURL + "/messages", `{"topic":"a","value":"x","value_b64":"eA=="}`, 400, "Bad request"},
		{"POST", eventsURL + "/messages", `{"topic":"a","value_b64":"not base64"}`, 400, "Bad request"},
		{"POST", eventsURL + "/messages", `{"messages":[]}`, 400, "Bad request"},
		{"POST", eventsURL + "/messages", `{"topic":"a","messages":[{"topic":"b"}]}`, 400, "Bad request"},
		{"POST", eventsURL + "/topics", `{"topic":"a"}`, 404, "Not found"},
		{"POST", "/api/v1/streams/telemetry/nope/messages", `{"topic":"a"}`, 404, "Not found"},
		{"POST", "/api/v1/streams/audit/events/messages", `{"topic":"a"}`, 403, "Forbidden"},
		{"DELETE", eventsURL + "/messages", "", 405, "Method not allowed"},
		{"GET", "/api/v1/nothing", "", 404, "Not found"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path+" "+tt.body, func(t *testing.T) {
			resp, b := e.do(tt.method, tt.path, e.token(certs.RoleAdmin), tt.body)
			if p := problem(t, resp, b, tt.status); p.Title != tt.title {
				t.Fatalf("title %q, want %q: %+v", p.Title, tt.title, p)
			}
			if tt.status == 405 && resp.Header.Get("Allow") == "" {
				t.Fatal("405 without Allow")
			}
		})
	}
}

func TestAppendIsAudited(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	audit := e.st.Stream(store.AuditStream)
	_, start, err := audit.Bounds(ctx, e.st.Name(), 0)
	if err != nil {
		t.Fatal(err)
	}
	e.post(eventsURL+"/messages", `{"messages":[{"topic":"a","value":"1"},{"topic":"b","value":"2"}]}`, 200, nil)
	if err := e.st.Audit(ctx, "bob", "test.action", "/x/y", map[string]any{"n": 1}); err != nil {
		t.Fatal(err)
	}
	msgs, err := audit.Read(ctx, e.st.Name(), 0, start, store.ReadOptions{})
	if err != nil || len(msgs) != 2 {
		t.Fatalf("audit records %d, %v; want 2", len(msgs), err)
	}
	var ours, theirs map[string]any
	if err := json.Unmarshal(msgs[0].Value, &ours); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(msgs[1].Value, &theirs); err != nil {
		t.Fatal(err)
	}
	// The API's record has the shape of the store's own.
	if k1, k2 := slices.Sorted(maps.Keys(ours)), slices.Sorted(maps.Keys(theirs)); !slices.Equal(k1, k2) {
		t.Fatalf("audit record keys %v, the store writes %v", k1, k2)
	}
	d := ours["detail"].(map[string]any)
	inner := d["detail"].(map[string]any)
	if ours["action"] != "stream.append" || ours["object"] != store.EventsStream || d["subject"] != "alice@admin" ||
		inner["messages"] != 2.0 || fmt.Sprint(inner["topics"]) != "[a b]" {
		t.Fatalf("audit record %v", ours)
	}
}
