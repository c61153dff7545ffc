package up

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weft-io/weft/internal/testenv/wait"
	"github.com/weft-io/weft/store"
)

var (
	weftOnce sync.Once
	weftPath string
	weftErr  error
)

// TestMain removes the weft binary the tests built.
func TestMain(m *testing.M) {
	code := m.Run()
	if weftPath != "" {
		os.RemoveAll(filepath.Dir(weftPath))
	}
	os.Exit(code)
}

// weftBinary builds the weft binary once for the tests that run nodes
// as processes.
func weftBinary(t testing.TB) string {
	t.Helper()
	weftOnce.Do(func() {
		dir, err := os.MkdirTemp("", "weft-up-")
		if err != nil {
			weftErr = err
			return
		}
		weftPath = filepath.Join(dir, "weft")
		if out, err := exec.Command("go", "build", "-o", weftPath, "github.com/weft-io/weft/cmd/weft").CombinedOutput(); err != nil {
			weftErr = fmt.Errorf("build weft: %v\n%s", err, out)
		}
	})
	if weftErr != nil {
		t.Fatal(weftErr)
	}
	return weftPath
}

// api calls a node's HTTP API with the cluster's admin token.
func (c *Cluster) api(addr, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, "http://"+addr+path, rd)
	req.Header.Set("Authorization", "Bearer "+c.Token)
	hc := &http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
}

type clusterNodes struct {
	Nodes []struct {
		Name    string   `json:"name"`
		Address string   `json:"address"`
		State   string   `json:"state"`
		Edges   []string `json:"edges"`
	} `json:"nodes"`
}

// view asks a running core for the cluster's nodes: owner of each edge
// among the nodes up, and the nodes' states.
func (c *Cluster) view() (owners map[string]string, states map[string]string, err error) {
	var last error
	for _, p := range c.Cores {
		if !p.Running() {
			continue
		}
		var v clusterNodes
		if err := c.api(p.Addrs["http"], "GET", "/api/v1/cluster", nil, &v); err != nil {
			last = err
			continue
		}
		owners, states = map[string]string{}, map[string]string{}
		for _, n := range v.Nodes {
			states[n.Name] = n.State
			for _, e := range n.Edges {
				if o, dup := owners[e]; dup {
					return nil, nil, fmt.Errorf("edge %s owned by %s and %s", e, o, n.Name)
				}
				owners[e] = n.Name
			}
		}
		return owners, states, nil
	}
	return nil, nil, fmt.Errorf("no core answers: %v", last)
}

func (c *Cluster) core(name string) *Proc {
	for _, p := range c.Cores {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// next is the next offset of the edge's topic of /uplink/events at the
// node at addr.
func (c *Cluster) next(addr, edge string) (uint64, error) {
	var r struct {
		Next uint64 `json:"next"`
	}
	err := c.api(addr, "GET", "/api/v1/streams/uplink/events/messages?topic="+edge+"&from=end", nil, &r)
	return r.Next, err
}

// waitRelinked waits until every edge of want is owned by an up node other
// than gone and that node holds records of the edge past at; it returns
// when.
func (c *Cluster) waitRelinked(t testing.TB, gone string, edges []string, at map[string]uint64) {
	t.Helper()
	wait.ForNil(t, 60*time.Second, "the edges of "+gone+" taken by the others and flowing", func() error {
		owners, _, err := c.view()
		if err != nil {
			return err
		}
		for _, e := range edges {
			o := owners[e]
			if o == "" || o == gone {
				return fmt.Errorf("%s owned by %q", e, o)
			}
			n, err := c.next(c.core(o).Addrs["http"], e)
			if err != nil {
				return err
			}
			if n <= at[e] {
				return fmt.Errorf("%s at %s: %d, not past %d yet", e, o, n, at[e])
			}
		}
		return nil
	})
}

// TestCoreCluster runs three core nodes and four edges, each its own
// process, with writers appending to every edge through its API and
// simulated devices behind each edge. It kills -9 the node owning the
// most edges (they are taken by the others), brings it back (edges move
// to it while ingest goes on), pauses a node with SIGSTOP past its lease
// and resumes it; GET /api/v1/cluster never shows an edge twice. In the
// end every edge's uplink is at its final owner whole, and every copy of
// it on any node holds the edge's records at the edge's offsets: nothing
// acknowledged lost, nothing applied twice; and every core answers for
// every device (reads forwarded to the owner of its edge).
func TestCoreCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("runs seven nodes as processes")
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c, err := StartCluster(ctx, ClusterConfig{DataDir: dir, Binary: weftBinary(t), Devices: 8, Interval: time.Second, LogLevel: "info"})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			cancel()
			for _, f := range c.Fleets {
				<-f.Done()
			}
			c.Shutdown()
		}
	}()
	logs := func() string {
		var b strings.Builder
		for _, p := range append(slices.Clone(c.Cores), c.Edges...) {
			lines := strings.Split(strings.TrimSpace(p.Logs()), "\n")
			fmt.Fprintf(&b, "--- %s:\n%s\n", p.Name, strings.Join(lines[max(0, len(lines)-40):], "\n"))
		}
		return b.String()
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(logs())
		}
	})
	var edges []string
	for _, e := range c.Edges {
		edges = append(edges, e.Name)
	}

	// Writers: each edge takes batches through its API, retrying.
	var acked atomic.Int64
	wstop := make(chan struct{})
	var wg sync.WaitGroup
	c.write(&wg, wstop, &acked)
	defer func() {
		select {
		case <-wstop:
		default:
			close(wstop)
		}
		wg.Wait()
	}()

	// Every edge is owned, and flowing to its owner.
	zero := map[string]uint64{}
	c.waitRelinked(t, "", edges, zero)
	owners, _, err := c.view()
	if err != nil {
		t.Fatal(err)
	}
	count := map[string][]string{}
	for e, o := range owners {
		count[o] = append(count[o], e)
	}
	victim := ""
	for o, es := range count {
		if victim == "" || len(es) > len(count[victim]) {
			victim = o
		}
	}
	t.Logf("owners %v; killing %s", owners, victim)

	// kill -9 of the node owning the most edges.
	at := map[string]uint64{}
	for _, e := range count[victim] {
		at[e], _ = c.next(c.core(victim).Addrs["http"], e)
	}
	start := time.Now()
	c.core(victim).Kill()
	c.waitRelinked(t, victim, count[victim], at)
	t.Logf("edges %v relinked %v after kill -9 of %s", count[victim], time.Since(start).Round(10*time.Millisecond), victim)

	// The node comes back: the edges that belong on it move to it while
	// the writers go on.
	if err := c.core(victim).Start(ctx); err != nil {
		t.Fatal(err)
	}
	wait.ForNil(t, 60*time.Second, victim+" back, with edges", func() error {
		owners, states, err := c.view()
		if err != nil {
			return err
		}
		if states[victim] != "up" {
			return fmt.Errorf("%s %s", victim, states[victim])
		}
		for e, o := range owners {
			if o == victim {
				n, err := c.next(c.core(victim).Addrs["http"], e)
				if err == nil && n > 0 {
					return nil
				}
			}
		}
		return fmt.Errorf("no edge flowing to %s yet: %v", victim, owners)
	})

	// SIGSTOP a node that owns edges, past its lease; its edges go to
	// the others; SIGCONT: it takes nothing in and joins again.
	owners, _, _ = c.view()
	paused := ""
	for _, o := range owners {
		paused = o
		break
	}
	c.core(paused).Pause()
	wait.ForNil(t, 60*time.Second, paused+"'s lease expired under SIGSTOP", func() error {
		owners, states, err := c.view()
		if err != nil {
			return err
		}
		if states[paused] != "down" {
			return fmt.Errorf("%s still %s", paused, states[paused])
		}
		for e, o := range owners {
			if o == paused {
				return fmt.Errorf("%s still owns %s", paused, e)
			}
		}
		return nil
	})
	c.core(paused).Resume()
	wait.ForNil(t, 60*time.Second, paused+" up again after SIGCONT", func() error {
		_, states, err := c.view()
		if err != nil {
			return err
		}
		if states[paused] != "up" {
			return fmt.Errorf("%s %s", paused, states[paused])
		}
		return nil
	})

	// Stop the writers; every edge's whole uplink reaches its owner.
	close(wstop)
	wg.Wait()
	final := map[string]string{}
	wait.ForNil(t, 90*time.Second, "every edge's uplink whole at its owner", func() error {
		owners, _, err := c.view()
		if err != nil {
			return err
		}
		for _, e := range c.Edges {
			want, err := c.next(e.Addrs["http"], e.Name)
			if err != nil {
				return err
			}
			o := owners[e.Name]
			if o == "" {
				return fmt.Errorf("%s unowned", e.Name)
			}
			got, err := c.next(c.core(o).Addrs["http"], e.Name)
			if err != nil {
				return err
			}
			if got != want {
				return fmt.Errorf("%s: %d at %s, %d at the edge", e.Name, got, o, want)
			}
			final[e.Name] = o
		}
		return nil
	})
	t.Logf("%d records acknowledged; final owners %v", acked.Load(), final)

	// Any node answers for any device: its shadow comes from the owner
	// of its edge (forwarded by the others).
	for i, fl := range c.Fleets {
		id := fl.IDs()[0]
		wait.ForNil(t, 60*time.Second, "device "+id+"'s shadow from every core", func() error {
			for _, p := range c.Cores {
				var d struct {
					Edge string `json:"edge"`
				}
				if err := c.api(p.Addrs["http"], "GET", "/api/v1/devices/"+id, nil, &d); err != nil {
					return fmt.Errorf("%s: %w", p.Name, err)
				}
				if d.Edge != c.Edges[i].Name {
					return fmt.Errorf("%s: device %s on edge %q, want %s", p.Name, id, d.Edge, c.Edges[i].Name)
				}
			}
			return nil
		})
	}
	cancel()
	for _, f := range c.Fleets {
		<-f.Done()
	}
	c.Shutdown()
	stopped = true

	// Every copy of every edge's uplink, on every core, is the edge's
	// records at the edge's offsets; the final owner's is whole.
	open := func(name string) *store.Store {
		st, err := store.Open(store.Config{Dir: filepath.Join(dir, name), Name: name, MinFreeBytes: -1, RetentionInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	bctx := context.Background()
	for _, e := range c.Edges {
		es := open(e.Name)
		_, enext, err := es.Stream(store.UplinkStream).Bounds(bctx, e.Name, 0)
		if err != nil {
			t.Fatal(err)
		}
		src, err := es.Stream(store.UplinkStream).Read(bctx, e.Name, 0, 0, store.ReadOptions{Limit: int(enext) + 1, MaxBytes: 1 << 30})
		es.Close()
		if err != nil || uint64(len(src)) != enext {
			t.Fatalf("%s: read %d of %d: %v", e.Name, len(src), enext, err)
		}
		for _, p := range c.Cores {
			cs := open(p.Name)
			low, next, err := cs.Stream(store.UplinkStream).Bounds(bctx, e.Name, 0)
			if err != nil {
				cs.Close()
				t.Fatal(err)
			}
			msgs, err := cs.Stream(store.UplinkStream).Read(bctx, e.Name, 0, low, store.ReadOptions{Limit: int(next-low) + 1, MaxBytes: 1 << 30})
			cs.Close()
			if err != nil {
				t.Fatal(err)
			}
			if next > enext || uint64(len(msgs)) != next-low {
				t.Errorf("%s at %s: %d records in [%d, %d), the edge has %d", e.Name, p.Name, len(msgs), low, next, enext)
				continue
			}
			for _, m := range msgs {
				if s := src[m.Offset]; !bytes.Equal(s.Value, m.Value) {
					t.Errorf("%s at %s: offset %d is %q, the edge's %q", e.Name, p.Name, m.Offset, m.Value, s.Value)
					break
				}
			}
			if p.Name == final[e.Name] && next != enext {
				t.Errorf("%s at its owner %s: up to %d of %d", e.Name, p.Name, next, enext)
			}
		}
	}
}

// BenchmarkClusterRelink measures how long the edges of a core killed
// with kill -9 take to flow to the others: from the kill to every one of
// its edges owned by another node that holds records past those the
// killed node had.
//
//	go test ./up -run '^$' -bench ClusterRelink -benchtime 1x -count 3
func BenchmarkClusterRelink(b *testing.B) {
	for range b.N {
		b.StopTimer()
		c, stop := benchCluster(b, 3, 4)
		var acked atomic.Int64
		var wg sync.WaitGroup
		wstop := make(chan struct{})
		c.write(&wg, wstop, &acked)
		owners := c.waitOwned(b)
		victim := ""
		count := map[string][]string{}
		for e, o := range owners {
			count[o] = append(count[o], e)
			if victim == "" || len(count[o]) > len(count[victim]) {
				victim = o
			}
		}
		at := map[string]uint64{}
		for _, e := range count[victim] {
			at[e], _ = c.next(c.core(victim).Addrs["http"], e)
		}
		b.StartTimer()
		start := time.Now()
		c.core(victim).Kill()
		c.waitRelinked(b, victim, count[victim], at)
		d := time.Since(start)
		b.StopTimer()
		b.ReportMetric(d.Seconds(), "relink-s")
		b.ReportMetric(float64(len(count[victim])), "edges-moved")
		close(wstop)
		wg.Wait()
		stop()
	}
}

// BenchmarkClusterIngest measures records/s taken in by a core cluster
// of 3 nodes against 1 node, with 4 edges each appending batches of 100
// records of 200 bytes through its API as fast as it takes them, for
// 10 s: the figure is the records the edges acknowledged over the time
// until the cores held them all.
//
//	go test ./up -run '^$' -bench ClusterIngest -benchtime 1x -count 2
func BenchmarkClusterIngest(b *testing.B) {
	for _, cores := range []int{1, 3} {
		b.Run(fmt.Sprintf("cores=%d", cores), func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				c, stop := benchCluster(b, cores, 4)
				c.waitOwned(b)
				var acked atomic.Int64
				var wg sync.WaitGroup
				value := strings.Repeat("x", 200)
				b.StartTimer()
				start := time.Now()
				deadline := start.Add(10 * time.Second)
				for _, e := range c.Edges {
					for range 2 {
						wg.Go(func() {
							var body struct {
								Messages []map[string]any `json:"messages"`
							}
							for range 100 {
								body.Messages = append(body.Messages, map[string]any{"topic": e.Name, "value": value})
							}
							for time.Now().Before(deadline) {
								if c.api(e.Addrs["http"], "POST", "/api/v1/streams/uplink/events/messages", body, nil) == nil {
									acked.Add(100)
								}
							}
						})
					}
				}
				wg.Wait()
				want := map[string]uint64{}
				for _, e := range c.Edges {
					want[e.Name], _ = c.next(e.Addrs["http"], e.Name)
				}
				wait.ForNil(b, 5*time.Minute, "the cores holding every record", func() error {
					owners, _, err := c.view()
					if err != nil {
						return err
					}
					for e, n := range want {
						p := c.core(owners[e])
						if p == nil {
							return fmt.Errorf("%s unowned", e)
						}
						got, err := c.next(p.Addrs["http"], e)
						if err != nil {
							return err
						}
						if got < n {
							return fmt.Errorf("%s: %d of %d", e, got, n)
						}
					}
					return nil
				})
				d := time.Since(start)
				b.StopTimer()
				b.ReportMetric(float64(acked.Load())/d.Seconds(), "records/s")
				stop()
			}
		})
	}
}

// write runs a writer a edge until stop closes: every 20 ms, 20 records
// appended to the edge's topic of /uplink/events through its API,
// counted in acked when the edge acknowledged them.
func (c *Cluster) write(wg *sync.WaitGroup, stop chan struct{}, acked *atomic.Int64) {
	for _, e := range c.Edges {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
				var body struct {
					Messages []map[string]any `json:"messages"`
				}
				for j := range 20 {
					body.Messages = append(body.Messages, map[string]any{"topic": e.Name, "key": "k", "value": fmt.Sprintf("%s-%d-%d", e.Name, i, j)})
				}
				if c.api(e.Addrs["http"], "POST", "/api/v1/streams/uplink/events/messages", body, nil) == nil {
					acked.Add(20)
				}
			}
		})
	}
}

// benchCluster starts a cluster for a benchmark; stop ends it.
func benchCluster(b *testing.B, cores, edges int) (*Cluster, func()) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	c, err := StartCluster(ctx, ClusterConfig{DataDir: b.TempDir(), Binary: weftBinary(b), CoreNodes: cores, Edges: edges})
	if err != nil {
		cancel()
		b.Fatal(err)
	}
	return c, func() { cancel(); c.Shutdown() }
}

// waitOwned waits until every edge is owned by a node and flowing to
// it, and returns the owners.
func (c *Cluster) waitOwned(tb testing.TB) map[string]string {
	tb.Helper()
	var owners map[string]string
	wait.ForNil(tb, 60*time.Second, "every edge owned", func() error {
		var err error
		owners, _, err = c.view()
		if err != nil {
			return err
		}
		for _, e := range c.Edges {
			if owners[e.Name] == "" {
				return fmt.Errorf("%s unowned", e.Name)
			}
		}
		return nil
	})
	return owners
}

// BenchmarkClusterCatchUp measures records/s taken in by a core cluster
// of 3 nodes against 1 node when 4 edges catch up a backlog at once:
// every core is killed, each edge takes 50,000 records of 200 bytes
// through its API, the cores start again, and the figure is the records
// the owners took in from the moment every edge was owned again to the
// last, over that time.
//
//	go test ./up -run '^$' -bench ClusterCatchUp -benchtime 1x -count 2
func BenchmarkClusterCatchUp(b *testing.B) {
	const perEdge, batch = 50000, 1000
	for _, cores := range []int{1, 3} {
		b.Run(fmt.Sprintf("cores=%d", cores), func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				c, stop := benchCluster(b, cores, 4)
				c.waitOwned(b)
				for _, p := range c.Cores {
					p.Kill()
				}
				value := strings.Repeat("x", 200)
				var wg sync.WaitGroup
				want := map[string]uint64{}
				var mu sync.Mutex
				for _, e := range c.Edges {
					wg.Go(func() {
						var body struct {
							Messages []map[string]any `json:"messages"`
						}
						for range batch {
							body.Messages = append(body.Messages, map[string]any{"topic": e.Name, "value": value})
						}
						for range perEdge / batch {
							if err := c.api(e.Addrs["http"], "POST", "/api/v1/streams/uplink/events/messages", body, nil); err != nil {
								b.Error(err)
								return
							}
						}
						n, err := c.next(e.Addrs["http"], e.Name)
						if err != nil {
							b.Error(err)
						}
						mu.Lock()
						want[e.Name] = n
						mu.Unlock()
					})
				}
				wg.Wait()
				sctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				errs := make([]error, len(c.Cores))
				for i, p := range c.Cores {
					wg.Go(func() { errs[i] = p.Start(sctx) })
				}
				wg.Wait()
				cancel()
				for _, err := range errs {
					if err != nil {
						b.Fatal(err)
					}
				}
				held := func(owners map[string]string) (uint64, error) {
					var sum uint64
					for e := range want {
						p := c.core(owners[e])
						if p == nil {
							return 0, fmt.Errorf("%s unowned", e)
						}
						n, err := c.next(p.Addrs["http"], e)
						if err != nil {
							return 0, err
						}
						sum += n
					}
					return sum, nil
				}
				owners := c.waitOwned(b)
				b.StartTimer()
				start := time.Now()
				from, err := held(owners)
				if err != nil {
					b.Fatal(err)
				}
				var total uint64
				for _, n := range want {
					total += n
				}
				var at uint64
				wait.ForNil(b, 5*time.Minute, "every backlog at the owners", func() error {
					owners, _, err := c.view()
					if err != nil {
						return err
					}
					if at, err = held(owners); err != nil {
						return err
					}
					if at < total {
						return fmt.Errorf("%d of %d", at, total)
					}
					return nil
				})
				d := time.Since(start)
				b.StopTimer()
				b.ReportMetric(float64(total-from)/d.Seconds(), "records/s")
				stop()
			}
		})
	}
}
