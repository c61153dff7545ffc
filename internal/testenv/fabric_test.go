package testenv

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/weft-io/weft/api"
	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/core"
	"github.com/weft-io/weft/device"
	"github.com/weft-io/weft/edge"
	"github.com/weft-io/weft/shadow"
	"github.com/weft-io/weft/store"
	"github.com/weft-io/weft/sync/replicate"
)

func (f *Fabric) token(role certs.Role) string {
	f.T.Helper()
	tok, err := certs.IssueToken(f.Auth.TokenKey, certs.TokenClaims{Subject: "test", Role: role}, time.Hour)
	if err != nil {
		f.T.Fatal(err)
	}
	return tok
}

func getLinks(t *testing.T, f *Fabric, addr string) replicate.LinksResponse {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+addr+"/api/v1/links", nil)
	req.Header.Set("Authorization", "Bearer "+f.token(certs.RoleViewer))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET /api/v1/links: %d %s", resp.StatusCode, b)
	}
	var lr replicate.LinksResponse
	if err := json.Unmarshal(b, &lr); err != nil {
		t.Fatal(err)
	}
	return lr
}

func findStream(l replicate.LinksResponse, peer, dir, path string) (replicate.StreamStatus, bool) {
	for _, lk := range l.Links {
		if lk.Peer != peer {
			continue
		}
		for _, s := range lk.Streams {
			if s.Direction == dir && s.Path == path {
				return s, true
			}
		}
	}
	return replicate.StreamStatus{}, false
}

// TestDeviceToCore: a device publishes over MQTT to an edge; the message
// appears at the core at the same offset. Its reported state reaches the
// core's shadow without touching the desired side, and the core's updates
// reach the edge.
func TestDeviceToCore(t *testing.T) {
	f := New(t)
	c := f.StartCore("core1", core.Config{})
	e := f.StartEdge("edge1", edge.Config{Core: c.SyncAddr().String(), Replicate: []string{store.EventsStream, store.ByDeviceStream}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	creds, pool, err := device.Credentials(f.Certs, []string{"pump-1"}, "pump")
	if err != nil {
		t.Fatal(err)
	}
	dev, err := device.Connect(ctx, device.DialConfig{Addr: e.MQTTAddr().String(), Roots: pool}, "pump-1", creds[0], true, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Disconnect(&paho.Disconnect{})
	for i := range 5 {
		if _, err := dev.Publish(ctx, &paho.Publish{Topic: "devices/pump-1/telemetry", QoS: 1, Payload: fmt.Appendf(nil, `{"t":%d}`, i)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := dev.Publish(ctx, &paho.Publish{Topic: "devices/pump-1/shadow/reported", QoS: 1, Payload: []byte(`{"temp":21}`)}); err != nil {
		t.Fatal(err)
	}
	// The last telemetry message, at the edge and then at the core.
	es, cs := e.Store(), c.Store()
	msgs, err := es.Stream(store.EventsStream).Read(ctx, "edge1", 0, 0, store.ReadOptions{})
	if err != nil || len(msgs) < 5 {
		t.Fatalf("edge events: %d, %v", len(msgs), err)
	}
	want := msgs[4]
	if string(want.Value) != `{"t":4}` {
		t.Fatalf("edge event 4 is %q", want.Value)
	}
	WaitFor(t, 30*time.Second, "the message at the core", func() bool {
		got, err := cs.Stream(store.EventsStream).Read(ctx, "edge1", 0, want.Offset, store.ReadOptions{Limit: 1})
		return err == nil && len(got) == 1 && got[0].Offset == want.Offset && string(got[0].Value) == string(want.Value) &&
			got[0].Headers["device"] == want.Headers["device"]
	})
	WaitEqual(t, es, cs, 30*time.Second, store.EventsStream, store.ByDeviceStream, store.ShadowChanges, store.AuditStream)

	// The core's shadow follows the edge's reported side.
	WaitFor(t, 30*time.Second, "the reported state at the core", func() bool {
		d, err := shadow.Get(ctx, cs, "pump-1")
		return err == nil && shadow.Equal(d.Reported["temp"], 21)
	})
	// The core sets desired state; its delta goes down to the edge.
	if _, err := shadow.SetDesired(ctx, cs, "pump-1", json.RawMessage(`{"temp":18}`), shadow.SetOptions{}); err != nil {
		t.Fatal(err)
	}
	WaitEqual(t, cs, es, 30*time.Second, store.UpdatesStream)
	// A new report from the edge leaves the core's desired side alone.
	if _, err := dev.Publish(ctx, &paho.Publish{Topic: "devices/pump-1/shadow/reported", QoS: 1, Payload: []byte(`{"temp":19}`)}); err != nil {
		t.Fatal(err)
	}
	WaitFor(t, 30*time.Second, "the new report at the core", func() bool {
		d, err := shadow.Get(ctx, cs, "pump-1")
		return err == nil && shadow.Equal(d.Reported["temp"], 19) && shadow.Equal(d.Desired["temp"], 18) && shadow.Equal(d.Delta["temp"], 18)
	})

	// Both nodes show the link.
	WaitFor(t, 30*time.Second, "the links' figures", func() bool {
		s, ok := findStream(getLinks(t, f, e.HTTPAddr().String()), "core1", "send", store.EventsStream)
		return ok && s.LagMessages == 0 && s.Messages >= 5
	})
	cl := getLinks(t, f, c.HTTPAddr().String())
	if cl.Node != "core1" || len(cl.Links) != 1 || cl.Links[0].Peer != "edge1" || !cl.Links[0].Connected {
		t.Fatalf("core's links: %+v", cl)
	}
	if s, ok := findStream(cl, "edge1", "receive", store.EventsStream); !ok || s.Messages < 5 || s.Duplicates != 0 {
		t.Fatalf("core's view of %s: %+v", store.EventsStream, s)
	}
	if s, ok := findStream(cl, "edge1", "send", store.UpdatesStream); !ok || s.Messages < 1 {
		t.Fatalf("core's view of %s: %+v", store.UpdatesStream, s)
	}
	// And the same figures in Prometheus form.
	resp, err := http.Get("http://" + c.HTTPAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`weft_sync_link_up{peer="edge1"} 1`,
		`weft_sync_messages_total{direction="receive",peer="edge1",stream="/telemetry/events"}`,
		`weft_sync_lag_messages{direction="send",peer="edge1",stream="/updates/down"} 0`,
		`weft_sync_duplicates_total{direction="receive",peer="edge1",stream="/uplink/events"} 0`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestTwoEdges: the core's copy of a stream is the union of its edges'
// topics.
func TestTwoEdges(t *testing.T) {
	f := New(t)
	c := f.StartCore("core1", core.Config{})
	var edges []*edge.Node
	for _, name := range []string{"edge1", "edge2"} {
		e := f.StartEdge(name, edge.Config{Core: c.SyncAddr().String()})
		edges = append(edges, e)
		appendN(t, e.Store(), store.UplinkStream, name, 1000, 200, name)
	}
	for _, e := range edges {
		WaitEqual(t, e.Store(), c.Store(), 30*time.Second, store.UplinkStream, store.AuditStream)
	}
	topics, err := c.Store().Stream(store.UplinkStream).AllTopics(context.Background())
	if err != nil || len(topics) != 2 {
		t.Fatalf("core's uplink topics %v, %v", topics, err)
	}
}

func appendN(t testing.TB, st *store.Store, path, topic string, n, size int, tag string) {
	t.Helper()
	chunk := max(1, min(500, (1<<20)/max(size, 1)))
	for i := 0; i < n; i += chunk {
		var msgs []store.Message
		for j := i; j < min(n, i+chunk); j++ {
			v := fmt.Appendf(nil, "%s-%d-", tag, j)
			for len(v) < size {
				v = append(v, byte('a'+len(v)%26))
			}
			msgs = append(msgs, store.Message{Key: []byte(tag), Value: v})
		}
		if _, err := st.Stream(path).Append(context.Background(), topic, msgs...); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFullBacklogShowsAtTheCore: an edge whose core is out of reach fills
// its uplink far past --backlog-quota, dropping its oldest data instead of
// refusing; once the core is up it holds what the edge kept, and its API
// shows the drop on the edge's link.
func TestFullBacklogShowsAtTheCore(t *testing.T) {
	f := New(t)
	// The core's address, then the core away.
	c := f.StartCore("core1", core.Config{})
	addr := c.SyncAddr().String()
	if err := c.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	e := f.StartEdge("edge1", edge.Config{Core: addr, BacklogQuota: 1 << 20})
	appendN(t, e.Store(), store.UplinkStream, "edge1", 20000, 500, "offline")
	low, next, err := e.Store().Stream(store.UplinkStream).Bounds(context.Background(), "edge1", 0)
	if err != nil || low == 0 || next != 20000 {
		t.Fatalf("edge uplink %d..%d, %v: want its oldest dropped", low, next, err)
	}
	c = f.StartCore("core1", core.Config{Listen: addr})
	WaitEqual(t, e.Store(), c.Store(), 30*time.Second, store.UplinkStream)

	// The receiver counts the drop once the batch after it is applied,
	// which may be just after the data is visible.
	var edges api.EdgesResponse
	shows := func() bool {
		req, _ := http.NewRequest("GET", "http://"+c.HTTPAddr().String()+"/api/v1/edges", nil)
		req.Header.Set("Authorization", "Bearer "+f.token(certs.RoleViewer))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		edges = api.EdgesResponse{}
		if err := json.NewDecoder(resp.Body).Decode(&edges); err != nil {
			t.Fatal(err)
		}
		for _, ed := range edges.Edges {
			if ed.Name == "edge1" && ed.Link != nil && ed.Link.Dropped == int64(low) {
				return true
			}
		}
		return false
	}
	WaitFor(t, 30*time.Second, fmt.Sprintf("the core's edges to show edge1's %d dropped messages", low), shows)
}
