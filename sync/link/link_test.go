package link

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/internal/testenv/wait"
	"github.com/weft-io/weft/store"
	"github.com/weft-io/weft/sync/replicate"
	"github.com/weft-io/weft/sync/wire"
)

type fabric struct {
	t          *testing.T
	dir        string
	auth       *certs.Authority
	core, edge *store.Store
	srv        *Server
	addr       string
	stopCore   context.CancelFunc
	coreDone   chan error
}

func openStore(t *testing.T, dir, name string) *store.Store {
	t.Helper()
	st, err := store.Open(store.Config{Dir: dir, Name: name, MinFreeBytes: -1, MemTableSize: 16 << 20, RetentionInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func nodeTLS(t *testing.T, auth *certs.Authority, role, name string) wire.TLSConfig {
	t.Helper()
	iss, err := auth.IssueNode(role, name, []string{"127.0.0.1"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	cf, kf, err := auth.Save(iss)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := certs.LoadKeyPair(cf, kf)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := certs.Pool(auth.FabricCA.PEM)
	if err != nil {
		t.Fatal(err)
	}
	return wire.TLSConfig{Certificate: pair, FabricCAs: pool}
}

// newFabric opens an edge store and a core store and starts the core's
// server on loopback.
func newFabric(t *testing.T, sc ServerConfig) *fabric {
	t.Helper()
	dir := t.TempDir()
	if err := certs.Init(filepath.Join(dir, "certs"), false); err != nil {
		t.Fatal(err)
	}
	auth, err := certs.Load(filepath.Join(dir, "certs"))
	if err != nil {
		t.Fatal(err)
	}
	f := &fabric{t: t, dir: dir, auth: auth,
		core: openStore(t, filepath.Join(dir, "core"), "core1"),
		edge: openStore(t, filepath.Join(dir, "edge"), "edge1")}
	t.Cleanup(func() { f.edge.Close() })
	t.Cleanup(func() { f.core.Close() })
	sc.Store, sc.TLS = f.core, nodeTLS(t, auth, certs.CoreNode, "core1")
	f.srv, err = NewServer(sc)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := f.srv.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	f.stopCore, f.coreDone = cancel, make(chan error, 1)
	go func() { f.coreDone <- f.srv.Serve(ctx, ln); ln.Close() }()
	t.Cleanup(func() { cancel(); <-f.coreDone })
	return f
}

// startLink runs a link from the edge; the returned func stops it.
func (f *fabric) startLink(lc ClientConfig) (*Client, func()) {
	f.t.Helper()
	lc.Store, lc.Addr = f.edge, f.addr
	if lc.TLS.Certificate == nil {
		lc.TLS = nodeTLS(f.t, f.auth, certs.EdgeNode, "edge1")
	}
	lc.Backoff = replicate.Backoff{Min: 20 * time.Millisecond, Max: 200 * time.Millisecond}
	l, err := NewClient(lc)
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { l.Run(ctx); close(done) }()
	stop := func() { cancel(); <-done }
	f.t.Cleanup(stop)
	return l, stop
}

func appendN(t *testing.T, st *store.Store, path, topic string, n, size int, tag string) {
	t.Helper()
	chunk := max(1, min(500, (1<<20)/max(size, 1)))
	for i := 0; i < n; i += chunk {
		var msgs []store.Message
		for j := i; j < min(n, i+chunk); j++ {
			v := fmt.Appendf(nil, "%s-%d-", tag, j)
			v = append(v, bytes.Repeat([]byte{'x'}, max(0, size-len(v)))...)
			msgs = append(msgs, store.Message{Key: []byte(topic), Value: v, Headers: map[string]string{"n": fmt.Sprint(j)}})
		}
		if _, err := st.Stream(path).Append(context.Background(), topic, msgs...); err != nil {
			t.Fatal(err)
		}
	}
}

// digest summarises a topic partition: its bounds and a hash of every
// message at its offset.
func digest(ctx context.Context, s *store.Stream, topic string, part int) (string, error) {
	low, next, err := s.Bounds(ctx, topic, part)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for from := low; from < next; {
		msgs, err := s.Read(ctx, topic, part, from, store.ReadOptions{Limit: 10000, MaxBytes: 16 << 20})
		if err != nil {
			return "", err
		}
		if len(msgs) == 0 {
			return "", fmt.Errorf("%s %q: nothing at %d below %d", s.Path(), topic, from, next)
		}
		for _, m := range msgs {
			if m.Offset != from {
				return "", fmt.Errorf("%s %q: offset %d where %d was expected", s.Path(), topic, m.Offset, from)
			}
			hdr, _ := json.Marshal(m.Headers)
			fmt.Fprintf(h, "%d|%x|%x|%s|%d\n", m.Offset, m.Key, m.Value, hdr, m.Timestamp.UnixNano())
			from++
		}
	}
	return fmt.Sprintf("%d-%d-%x", low, next, h.Sum(nil)), nil
}

// same reports whether every topic of src's stream path is equal in dst.
func same(src, dst *store.Store, path string) (bool, string) {
	ctx := context.Background()
	topics, err := src.Stream(path).Topics(ctx, "", "", 100000)
	if err != nil {
		return false, err.Error()
	}
	for _, topic := range topics {
		a, err := digest(ctx, src.Stream(path), topic, 0)
		if err != nil {
			return false, err.Error()
		}
		b, err := digest(ctx, dst.Stream(path), topic, 0)
		if err != nil {
			return false, err.Error()
		}
		if a != b {
			return false, fmt.Sprintf("%s %q: source %s, replica %s", path, topic, a[:min(len(a), 30)], b[:min(len(b), 30)])
		}
	}
	return true, ""
}

func waitSame(t *testing.T, src, dst *store.Store, paths ...string) {
	t.Helper()
	wait.ForNil(t, time.Minute, "the replica equal to its source", func() error {
		for _, p := range paths {
			if ok, why := same(src, dst, p); !ok {
				return errors.New(why)
			}
		}
		return nil
	})
}

// waitFor polls cond with a deadline (wait.For).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	wait.For(t, 30*time.Second, what, cond)
}

func streamStatus(m *replicate.Monitor, peer, dir, path string) replicate.StreamStatus {
	for _, l := range m.Links() {
		if l.Peer != peer {
			continue
		}
		for _, s := range l.Streams {
			if s.Direction == dir && s.Path == path {
				return s
			}
		}
	}
	return replicate.StreamStatus{}
}

func TestReplicateBothWays(t *testing.T) {
	f := newFabric(t, ServerConfig{})
	// Data before the link comes up, in several topics.
	appendN(t, f.edge, store.UplinkStream, "edge1", 2000, 200, "pre")
	appendN(t, f.edge, store.AuditStream, "edge1", 10, 50, "audit")
	appendN(t, f.core, store.UpdatesStream, "all", 30, 100, "up")
	appendN(t, f.core, store.UpdatesStream, "device/d1", 3, 100, "up")
	if _, err := f.edge.Table(store.ShadowsTable).Patch(context.Background(), "d1", json.RawMessage(`{"reported":{"t":1}}`)); err != nil {
		t.Fatal(err)
	}
	// The core's own topics of the same streams must stay untouched.
	appendN(t, f.core, store.UplinkStream, "core1", 5, 10, "core-own")
	link, _ := f.startLink(ClientConfig{Up: append(replicate.DefaultUp(), store.ByDeviceStream)})
	waitSame(t, f.edge, f.core, store.UplinkStream, store.AuditStream, store.ShadowChanges)
	waitSame(t, f.core, f.edge, store.UpdatesStream)

	// And while it is up, including new topics.
	appendN(t, f.edge, store.UplinkStream, "edge1", 3000, 200, "live")
	appendN(t, f.edge, store.ByDeviceStream, "dev-big", 100, 64<<10, "big")
	appendN(t, f.core, store.UpdatesStream, "class/pump", 5, 100, "live")
	waitSame(t, f.edge, f.core, store.UplinkStream, store.ByDeviceStream)
	waitSame(t, f.core, f.edge, store.UpdatesStream)
	if ok, _ := same(f.core, f.edge, store.UplinkStream); ok {
		t.Fatal("the core's own topic reached the edge")
	}
	if _, next, _ := f.core.Stream(store.UplinkStream).Bounds(context.Background(), "core1", 0); next != 5 {
		t.Fatalf("core's own topic has %d messages", next)
	}

	// Both sides show the link.
	waitFor(t, "acknowledgements", func() bool {
		s := streamStatus(link.Monitor(), "core1", replicate.DirSend, store.UplinkStream)
		return s.Messages == 5000 && s.LagMessages == 0
	})
	r := streamStatus(f.srv.Monitor(), "edge1", replicate.DirReceive, store.UplinkStream)
	if r.Messages != 5000 || r.Duplicates != 0 || r.Batches == 0 {
		t.Fatalf("core's view of the uplink: %+v", r)
	}
	rec := httptest.NewRecorder()
	f.srv.Monitor().Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/api/v1/links", nil))
	var lr replicate.LinksResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &lr); err != nil || lr.Node != "core1" || len(lr.Links) != 1 || !lr.Links[0].Connected {
		t.Fatalf("links: %s (%v)", rec.Body.String(), err)
	}
}

// TestLagWhileDown: the lag counts only topics with news while the link is
// up, and every topic once it is down, so an outage's backlog shows.
func TestLagWhileDown(t *testing.T) {
	f := newFabric(t, ServerConfig{})
	appendN(t, f.edge, store.UplinkStream, "edge1", 100, 100, "before")
	link, stop := f.startLink(ClientConfig{})
	waitSame(t, f.edge, f.core, store.UplinkStream)
	waitFor(t, "no lag", func() bool {
		return streamStatus(link.Monitor(), "core1", replicate.DirSend, store.UplinkStream).LagMessages == 0
	})
	stop()
	appendN(t, f.edge, store.UplinkStream, "edge1", 50, 100, "while down")
	if s := streamStatus(link.Monitor(), "core1", replicate.DirSend, store.UplinkStream); s.LagMessages != 50 || s.Topics != 1 {
		t.Fatalf("with the link down: %+v, want 50 messages behind", s)
	}
}

// TestSendsWithholdsTopics checks the core's per-edge choice of down
// topics: a withheld topic never reaches the edge, and reaches it once the
// rule lets it (asked again after RecheckWithheld).
func TestSendsWithholdsTopics(t *testing.T) {
	var moved atomic.Bool
	f := newFabric(t, ServerConfig{RecheckWithheld: 100 * time.Millisecond, Sends: func(edge, path, topic string) error {
		if edge != "edge1" || path != store.UpdatesStream {
			t.Errorf("asked about %s %s for %s", path, topic, edge)
		}
		if topic == "device/elsewhere" && !moved.Load() {
			return errors.New("behind another edge")
		}
		return nil
	}})
	appendN(t, f.core, store.UpdatesStream, "all", 5, 100, "all")
	appendN(t, f.core, store.UpdatesStream, "device/mine", 5, 100, "mine")
	appendN(t, f.core, store.UpdatesStream, "device/elsewhere", 5, 100, "secret")
	f.startLink(ClientConfig{})
	ctx := context.Background()
	waitFor(t, "the allowed topics", func() bool {
		_, a, _ := f.edge.Stream(store.UpdatesStream).Bounds(ctx, "all", 0)
		_, m, _ := f.edge.Stream(store.UpdatesStream).Bounds(ctx, "device/mine", 0)
		return a == 5 && m == 5
	})
	appendN(t, f.core, store.UpdatesStream, "device/elsewhere", 5, 100, "secret2")
	appendN(t, f.core, store.UpdatesStream, "all", 5, 100, "all2")
	waitFor(t, "more of the allowed topic", func() bool {
		_, a, _ := f.edge.Stream(store.UpdatesStream).Bounds(ctx, "all", 0)
		return a == 10
	})
	topics, err := f.edge.Stream(store.UpdatesStream).Topics(ctx, "", "", 100)
	if err != nil || slices.Contains(topics, "device/elsewhere") {
		t.Fatalf("edge topics %v, %v: the withheld one arrived", topics, err)
	}
	moved.Store(true)
	waitSame(t, f.core, f.edge, store.UpdatesStream)
}

func TestReplicateResumesWithoutDuplicates(t *testing.T) {
	f := newFabric(t, ServerConfig{})
	link, stop := f.startLink(ClientConfig{})
	appendN(t, f.edge, store.UplinkStream, "edge1", 1000, 100, "a")
	waitSame(t, f.edge, f.core, store.UplinkStream)
	stop()
	appendN(t, f.edge, store.UplinkStream, "edge1", 1000, 100, "b")
	link2, _ := f.startLink(ClientConfig{Monitor: link.Monitor()})
	waitSame(t, f.edge, f.core, store.UplinkStream)
	waitFor(t, "acknowledgements", func() bool {
		return streamStatus(link2.Monitor(), "core1", replicate.DirSend, store.UplinkStream).Messages == 2000
	})
	s := streamStatus(f.srv.Monitor(), "edge1", replicate.DirReceive, store.UplinkStream)
	if s.Duplicates != 0 || s.Messages != 2000 {
		t.Fatalf("after resuming: %+v", s)
	}
	if l := f.srv.Monitor().Links(); l[0].Reconnects != 1 {
		t.Fatalf("core counts %d reconnects", l[0].Reconnects)
	}
}

func TestReplicateTrimmedSource(t *testing.T) {
	f := newFabric(t, ServerConfig{})
	ctx := context.Background()
	if err := f.edge.CreateStream(ctx, "/telemetry/short", store.StreamOptions{MaxBytes: 64 << 10}); err != nil {
		t.Fatal(err)
	}
	appendN(t, f.edge, "/telemetry/short", "edge1", 2000, 200, "old")
	if err := f.edge.EnforceRetention(ctx); err != nil {
		t.Fatal(err)
	}
	low, _, _ := f.edge.Stream("/telemetry/short").Bounds(ctx, "edge1", 0)
	if low == 0 {
		t.Fatal("retention trimmed nothing")
	}
	appendN(t, f.edge, "/telemetry/short", "edge1", 10, 200, "new")
	link, _ := f.startLink(ClientConfig{Up: []string{"/telemetry/short"}})
	waitSame(t, f.edge, f.core, "/telemetry/short")
	if info, err := f.core.Stat(ctx, "/telemetry/short"); err != nil || info.Partitions != 1 {
		t.Fatalf("replica stream: %+v %v", info, err)
	}
	if n := streamStatus(link.Monitor(), "core1", replicate.DirSend, "/telemetry/short").Dropped; n != int64(low) {
		t.Fatalf("%d dropped messages counted, want %d", n, low)
	}
}

// TestBacklogQuotaDropsOldest fills the uplink of an edge whose core is out
// of reach far past the volume's quota: no append is refused, and once the
// link is up the core gets what the edge kept, the drop counted on both the
// stream and the link.
func TestBacklogQuotaDropsOldest(t *testing.T) {
	f := newFabric(t, ServerConfig{})
	ctx := context.Background()
	if err := f.edge.SetVolume(ctx, "uplink", store.VolumeOptions{Quota: 1 << 20, DropOldest: true}); err != nil {
		t.Fatal(err)
	}
	appendN(t, f.edge, store.UplinkStream, "edge1", 20000, 500, "backlog") // ~10 MB
	low, next, err := f.edge.Stream(store.UplinkStream).Bounds(ctx, "edge1", 0)
	if err != nil || next != 20000 || low == 0 {
		t.Fatalf("edge uplink %d..%d, %v: want its oldest dropped", low, next, err)
	}
	info, err := f.edge.Stat(ctx, store.UplinkStream)
	if err != nil || info.Dropped != int64(low) {
		t.Fatalf("edge counts %d dropped, %v; want %d", info.Dropped, err, low)
	}
	link, _ := f.startLink(ClientConfig{})
	waitSame(t, f.edge, f.core, store.UplinkStream)
	clow, cnext, err := f.core.Stream(store.UplinkStream).Bounds(ctx, "edge1", 0)
	if err != nil || clow != low || cnext != next {
		t.Fatalf("core uplink %d..%d, %v; want %d..%d", clow, cnext, err, low, next)
	}
	if n := streamStatus(link.Monitor(), "core1", replicate.DirSend, store.UplinkStream).Dropped; n != int64(low) {
		t.Fatalf("link counts %d dropped, want %d", n, low)
	}
	if n := streamStatus(f.srv.Monitor(), "edge1", replicate.DirReceive, store.UplinkStream).Dropped; n != int64(low) {
		t.Fatalf("the core's side of the link counts %d dropped, want %d", n, low)
	}
}

// TestReplicateManyTopics replicates a stream of more topics than one page
// of offers, before and while the link is up.
func TestReplicateManyTopics(t *testing.T) {
	f := newFabric(t, ServerConfig{})
	add := func(from, to int, tag string) {
		var reqs []store.AppendRequest
		for i := from; i < to; i++ {
			dev := fmt.Sprintf("dev-%05d", i)
			reqs = append(reqs, store.AppendRequest{Path: store.ByDeviceStream, Topic: dev, Partition: 0,
				Messages: []store.Message{{Value: []byte(tag + dev)}, {Value: []byte(tag + dev + "-2")}}})
		}
		if _, err := f.edge.AppendMany(context.Background(), reqs); err != nil {
			t.Fatal(err)
		}
	}
	add(0, 2500, "a")
	f.startLink(ClientConfig{Up: []string{store.ByDeviceStream}})
	waitSame(t, f.edge, f.core, store.ByDeviceStream)
	add(1000, 3100, "b") // old topics get more, new ones appear
	waitSame(t, f.edge, f.core, store.ByDeviceStream)
	topics, err := f.core.Stream(store.ByDeviceStream).Topics(context.Background(), "", "", 10000)
	if err != nil || len(topics) != 3100 {
		t.Fatalf("core has %d topics, %v", len(topics), err)
	}
}

func TestServerRefusesStreamsItWrites(t *testing.T) {
	f := newFabric(t, ServerConfig{})
	appendN(t, f.edge, store.UpdatesStream, "all", 3, 10, "forged")
	appendN(t, f.edge, store.UplinkStream, "edge1", 3, 10, "fine")
	_, _ = f.startLink(ClientConfig{Up: []string{store.UpdatesStream, store.UplinkStream}, Down: []string{}})
	waitSame(t, f.edge, f.core, store.UplinkStream)
	if _, next, _ := f.core.Stream(store.UpdatesStream).Bounds(context.Background(), "all", 0); next != 0 {
		t.Fatalf("an edge wrote %d messages into the core's updates", next)
	}
}

func TestLinkShowsWhyItIsDown(t *testing.T) {
	f := newFabric(t, ServerConfig{})
	f.stopCore()
	err := <-f.coreDone
	f.coreDone <- err // for the cleanup
	link, _ := f.startLink(ClientConfig{QUIC: &quic.Config{HandshakeIdleTimeout: 200 * time.Millisecond}})
	waitFor(t, "the link's error", func() bool {
		l := link.Monitor().Links()
		return len(l) == 1 && l[0].Peer == f.addr && !l[0].Connected && l[0].LastError != ""
	})
}

// TestRefusedStreamLeavesOthers: a stream the core cannot take (its
// partitions differ) is reported, and the other streams replicate.
func TestRefusedStreamLeavesOthers(t *testing.T) {
	f := newFabric(t, ServerConfig{})
	ctx := context.Background()
	if err := f.edge.CreateStream(ctx, "/telemetry/wide", store.StreamOptions{Partitions: 4}); err != nil {
		t.Fatal(err)
	}
	if err := f.core.CreateStream(ctx, "/telemetry/wide", store.StreamOptions{Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	appendN(t, f.edge, store.UplinkStream, "edge1", 100, 10, "ok")
	link, _ := f.startLink(ClientConfig{Up: []string{"/telemetry/wide", store.UplinkStream}})
	waitSame(t, f.edge, f.core, store.UplinkStream)
	waitFor(t, "the refusal in the figures", func() bool {
		return strings.Contains(streamStatus(link.Monitor(), "core1", replicate.DirSend, "/telemetry/wide").Error, "partitions")
	})
	appendN(t, f.edge, store.UplinkStream, "edge1", 100, 10, "still")
	waitSame(t, f.edge, f.core, store.UplinkStream)
	if l := link.Monitor().Links(); l[0].Reconnects != 0 {
		t.Fatalf("%d reconnects", l[0].Reconnects)
	}
}

// TestEdgeCannotHoldDownStream: the edge's copy of a stream the core sends
// has other partitions; that stream stops, the others go on.
func TestEdgeCannotHoldDownStream(t *testing.T) {
	f := newFabric(t, ServerConfig{Down: []string{store.UpdatesStream, "/updates/wide"}})
	ctx := context.Background()
	if err := f.core.CreateStream(ctx, "/updates/wide", store.StreamOptions{Partitions: 3}); err != nil {
		t.Fatal(err)
	}
	if err := f.edge.CreateStream(ctx, "/updates/wide", store.StreamOptions{Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	appendN(t, f.core, store.UpdatesStream, "all", 10, 10, "u")
	link, _ := f.startLink(ClientConfig{Down: []string{store.UpdatesStream, "/updates/wide"}})
	waitSame(t, f.core, f.edge, store.UpdatesStream)
	waitFor(t, "the refusal in the figures", func() bool {
		return strings.Contains(streamStatus(link.Monitor(), "core1", replicate.DirReceive, "/updates/wide").Error, "partitions")
	})
	appendN(t, f.core, store.UpdatesStream, "all", 10, 10, "v")
	appendN(t, f.edge, store.UplinkStream, "edge1", 10, 10, "w")
	waitSame(t, f.core, f.edge, store.UpdatesStream)
	waitSame(t, f.edge, f.core, store.UplinkStream)
	if l := link.Monitor().Links(); l[0].Reconnects != 0 {
		t.Fatalf("%d reconnects", l[0].Reconnects)
	}
}

// TestCoreTakesOnlyTheEdgesOwnTopics: an edge's topics named after another
// node are left out; its own go through.
func TestCoreTakesOnlyTheEdgesOwnTopics(t *testing.T) {
	f := newFabric(t, ServerConfig{})
	appendN(t, f.edge, store.UplinkStream, "edge1", 50, 10, "mine")
	appendN(t, f.edge, store.UplinkStream, "edge2", 50, 10, "forged")
	appendN(t, f.edge, store.UplinkStream, "core1", 50, 10, "forged")
	link, _ := f.startLink(ClientConfig{})
	waitFor(t, "the edge's own topic at the core", func() bool {
		_, next, _ := f.core.Stream(store.UplinkStream).Bounds(context.Background(), "edge1", 0)
		return next == 50
	})
	waitFor(t, "the refusal in the figures", func() bool {
		return strings.Contains(streamStatus(link.Monitor(), "core1", replicate.DirSend, store.UplinkStream).Error, "refused")
	})
	for _, topic := range []string{"edge2", "core1"} {
		if _, next, _ := f.core.Stream(store.UplinkStream).Bounds(context.Background(), topic, 0); next != 0 {
			t.Fatalf("the core took %d messages of topic %s from edge1", next, topic)
		}
	}
	// Once the own topic's acknowledgements are in, nothing is behind: the
	// refused topics do not count as lag.
	waitFor(t, "no lag", func() bool {
		return streamStatus(link.Monitor(), "core1", replicate.DirSend, store.UplinkStream).LagMessages == 0
	})
}

func TestLinkConfigChecks(t *testing.T) {
	f := newFabric(t, ServerConfig{})
	core := nodeTLS(t, f.auth, certs.CoreNode, "core2")
	edge := nodeTLS(t, f.auth, certs.EdgeNode, "edge2")
	for _, tc := range []struct {
		name string
		cfg  ClientConfig
		want string
	}{
		{"no store", ClientConfig{Addr: "x:1", TLS: edge}, "needs"},
		{"core certificate", ClientConfig{Store: f.edge, Addr: "x:1", TLS: core}, "dialled by an edge"},
		{"both ways", ClientConfig{Store: f.edge, Addr: "x:1", TLS: edge, Up: []string{"/a/b"}, Down: []string{"/a/b"}}, "both ways"},
		{"bad path", ClientConfig{Store: f.edge, Addr: "x:1", TLS: edge, Up: []string{"nope"}}, "bad path"},
	} {
		if _, err := NewClient(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	if _, err := NewServer(ServerConfig{Store: f.core, TLS: edge}); err == nil {
		t.Error("a server with an edge certificate")
	}
	if !slices.Equal(replicate.DefaultUp(), []string{"/uplink/events", "/shadows/changes", "/audit/events"}) {
		t.Error("defaults changed")
	}
}
