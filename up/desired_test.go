package up

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weft-io/weft/internal/testenv/wait"
	"github.com/weft-io/weft/store"
)

// localDevice reads a device's shadow as the node at addr holds it (not
// forwarded to the owner of its edge).
func (c *Cluster) localDevice(addr, id string) (map[string]any, error) {
	req, _ := http.NewRequest("GET", "http://"+addr+"/api/v1/devices/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+c.Token)
	req.Header.Set("X-Weft-Forwarded-By", "test")
	hc := &http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("GET device %s at %s: %d", id, addr, resp.StatusCode)
	}
	var d map[string]any
	return d, json.NewDecoder(resp.Body).Decode(&d)
}

// patchDesired sends PATCH /api/v1/devices/{id}/desired to the node at
// addr.
func (c *Cluster) patchDesired(addr, id string, patch map[string]any) error {
	b, _ := json.Marshal(patch)
	req, _ := http.NewRequest("PATCH", "http://"+addr+"/api/v1/devices/"+id+"/desired", bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+c.Token)
	req.Header.Set("Content-Type", "application/merge-patch+json")
	hc := &http.Client{Timeout: 15 * time.Second}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return fmt.Errorf("PATCH desired of %s at %s: %d %s", id, addr, resp.StatusCode, body)
	}
	return nil
}

// field is d[side][name].
func field(d map[string]any, side, name string) any {
	m, _ := d[side].(map[string]any)
	return m[name]
}

// downRecords reads every topic of /updates/down in a node's store: the
// offset, key, value, headers and time of each record, by topic.
func downRecords(t *testing.T, dir, name string) map[string][]store.Message {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(store.Config{Dir: filepath.Join(dir, name), Name: name, MinFreeBytes: -1, RetentionInterval: -1})
	if err != nil {
		t.Fatalf("open %s's store: %v", name, err)
	}
	defer st.Close()
	s := st.Stream(store.UpdatesStream)
	out := map[string][]store.Message{}
	after := ""
	for {
		topics, err := s.Topics(ctx, "", after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, topic := range topics {
			low, next, err := s.Bounds(ctx, topic, 0)
			if err != nil {
				t.Fatal(err)
			}
			msgs, err := s.Read(ctx, topic, 0, low, store.ReadOptions{Limit: int(next-low) + 1, MaxBytes: 1 << 30})
			if err != nil {
				t.Fatal(err)
			}
			out[topic] = msgs
		}
		if len(topics) < 1000 {
			return out
		}
		after = topics[len(topics)-1]
	}
}

// TestClusterDesiredSurvivesKill: three core nodes, an edge with a
// simulated device. A desired write on one node, then a PATCH of the
// device's desired state on the node that owns the edge, which is killed
// with kill -9 right after the 200 (the edge paused meanwhile, so it
// takes nothing from that node): the other nodes hold the desired value,
// it reaches the device through the node the edge relinks to, and
// every node's /updates/down holds the same records at the same offsets,
// with a token issued through a third node. The cores' etcd members link
// over TLS (https:// peers).
func TestClusterDesiredSurvivesKill(t *testing.T) {
	if testing.Short() {
		t.Skip("runs four nodes as processes")
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c, err := StartCluster(ctx, ClusterConfig{DataDir: dir, Binary: weftBinary(t), Edges: 1, Devices: 1, Interval: time.Second, PeerTLS: true})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		for _, f := range c.Fleets {
			<-f.Done()
		}
		c.Shutdown()
	}()
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range append(slices.Clone(c.Cores), c.Edges...) {
				lines := strings.Split(strings.TrimSpace(p.Logs()), "\n")
				t.Logf("--- %s:\n%s", p.Name, strings.Join(lines[max(0, len(lines)-30):], "\n"))
			}
		}
	})
	edge := c.Edges[0]
	id := c.Fleets[0].IDs()[0]
	owners := c.waitOwned(t)
	owner := c.core(owners[edge.Name])
	var other *Proc
	for _, p := range c.Cores {
		if p != owner {
			other = p
			break
		}
	}
	wait.ForNil(t, time.Minute, id+" reported at the owner", func() error {
		d, err := c.localDevice(owner.Addrs["http"], id)
		if err != nil {
			return err
		}
		if field(d, "reported", "sample_interval_s") == nil {
			return fmt.Errorf("not reported yet: %v", d["reported"])
		}
		return nil
	})

	// The edge paused, so that it cannot take the writes from its owner:
	// a write through another node first, then the owner's, and the
	// owner killed at once; then the edge resumed.
	edge.Pause()
	// A token issued on a third node goes through the same log.
	var third *Proc
	for _, p := range c.Cores {
		if p != owner && p != other {
			third = p
		}
	}
	var tok struct {
		ID string `json:"id"`
	}
	if err := c.api(third.Addrs["http"], "POST", "/api/v1/tokens", map[string]any{"role": "viewer", "subject": "desired-test", "ttl": "1h"}, &tok); err != nil {
		t.Fatal(err)
	}
	if err := c.patchDesired(other.Addrs["http"], id, map[string]any{"setpoint": 5}); err != nil {
		t.Fatal(err)
	}
	if err := c.patchDesired(owner.Addrs["http"], id, map[string]any{"sample_interval_s": 7}); err != nil {
		t.Fatal(err)
	}
	owner.Kill()
	edge.Resume()
	t.Logf("desired written at %s, which owned %s and was killed", owner.Name, edge.Name)

	// The others hold it, each in its own copy.
	for _, p := range c.Cores {
		if p == owner {
			continue
		}
		wait.ForNil(t, 30*time.Second, "the desired value at "+p.Name, func() error {
			d, err := c.localDevice(p.Addrs["http"], id)
			if err != nil {
				return err
			}
			if v := field(d, "desired", "sample_interval_s"); v != float64(7) {
				return fmt.Errorf("desired.sample_interval_s %v", v)
			}
			if v := field(d, "desired", "setpoint"); v != float64(5) {
				return fmt.Errorf("desired.setpoint %v", v)
			}
			return nil
		})
	}
	// The edge relinks to another node, and the device gets it from
	// there.
	wait.ForNil(t, time.Minute, edge.Name+" owned by another node", func() error {
		if o := c.owner(edge.Name); o == "" || o == owner.Name || o == "?" {
			return fmt.Errorf("owned by %q", o)
		}
		return nil
	})
	wait.ForNil(t, 90*time.Second, "the device running with the desired value", func() error {
		var d map[string]any
		if err := c.api(edge.Addrs["http"], "GET", "/api/v1/devices/"+id, nil, &d); err != nil {
			return err
		}
		if v := field(d, "reported", "sample_interval_s"); v != float64(7) {
			return fmt.Errorf("reported.sample_interval_s %v (owner now %s)", v, c.owner(edge.Name))
		}
		return nil
	})
	t.Logf("the device runs with it; %s owned by %s", edge.Name, c.owner(edge.Name))

	// Every node's /updates/down, the killed one's included: the same
	// records at the same offsets.
	cancel()
	for _, f := range c.Fleets {
		<-f.Done()
	}
	c.Shutdown()
	var first map[string][]store.Message
	for i, p := range c.Cores {
		recs := downRecords(t, dir, p.Name)
		if len(recs["device/"+id]) < 2 {
			t.Errorf("%s: %d records of device/%s, want the two writes", p.Name, len(recs["device/"+id]), id)
		}
		if len(recs["tokens"]) < 1 {
			t.Errorf("%s: no record of the token issued (topic tokens): %v", p.Name, len(recs["tokens"]))
		}
		if i == 0 {
			first = recs
			continue
		}
		for topic, a := range first {
			if b := recs[topic]; !reflect.DeepEqual(a, b) {
				t.Errorf("/updates/down topic %s: %s has %d records, %s %d, or they differ:\n%+v\n%+v", topic, c.Cores[0].Name, len(a), p.Name, len(b), a, b)
			}
		}
		for topic := range recs {
			if _, ok := first[topic]; !ok {
				t.Errorf("/updates/down topic %s at %s only", topic, p.Name)
			}
		}
	}
}

// owner is the owner of edge now, as a node up says.
func (c *Cluster) owner(edge string) string {
	owners, _, err := c.view()
	if err != nil {
		return "?"
	}
	return owners[edge]
}

// BenchmarkClusterDesired measures desired-state writes/s (PATCH
// /api/v1/devices/{id}/desired, each a shadow update) taken by a core
// cluster of 3 nodes against 1 node in the same run: 16 writers, spread
// over the nodes, each patching one of 1,000 devices after another for
// 10 s. On 3 nodes each write is held by a majority (etcd) and applied
// by every node before its 200; on 1 node it is two local commits.
//
//	go test ./up -run '^$' -bench ClusterDesired -benchtime 1x -count 2
func BenchmarkClusterDesired(b *testing.B) {
	for _, cores := range []int{1, 3} {
		b.Run(fmt.Sprintf("cores=%d", cores), func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				c, stop := benchCluster(b, cores, 1)
				c.waitOwned(b)
				const writers, devices = 16, 1000
				var mu sync.Mutex
				var lat []time.Duration
				failed := 0
				var wg sync.WaitGroup
				b.StartTimer()
				start := time.Now()
				deadline := start.Add(10 * time.Second)
				for w := range writers {
					wg.Go(func() {
						addr := c.Cores[w%len(c.Cores)].Addrs["http"]
						for i := 0; time.Now().Before(deadline); i++ {
							id := fmt.Sprintf("bench-%d", (w*7919+i)%devices)
							t0 := time.Now()
							err := c.patchDesired(addr, id, map[string]any{"setpoint": i % 10})
							d := time.Since(t0)
							mu.Lock()
							if err != nil {
								failed++
							} else {
								lat = append(lat, d)
							}
							mu.Unlock()
						}
					})
				}
				wg.Wait()
				d := time.Since(start)
				b.StopTimer()
				if len(lat) == 0 {
					b.Fatalf("no write succeeded (%d failed)", failed)
				}
				slices.Sort(lat)
				b.ReportMetric(float64(len(lat))/d.Seconds(), "writes/s")
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
				b.ReportMetric(float64(failed), "failed")
				stop()
			}
		})
	}
}
