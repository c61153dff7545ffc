package up

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weft-io/weft/console"
	"github.com/weft-io/weft/internal/testenv/wait"
)

// gatheredDevices is a page of GET /api/v1/devices on a node of a
// cluster.
type gatheredDevices struct {
	Devices []struct {
		ID   string `json:"id"`
		Edge string `json:"edge"`
	} `json:"devices"`
	Next         string   `json:"next"`
	Partial      bool     `json:"partial"`
	MissingNodes []string `json:"missing_nodes"`
}

// listAll pages through GET /api/v1/devices at addr, limit devices a
// page, and returns the ids in the order listed, each page's missing
// nodes, and each device's edge.
func (c *Cluster) listAll(addr string, limit int) (ids []string, missing []string, edges map[string]string, err error) {
	edges = map[string]string{}
	after := ""
	for range 1000 {
		var p gatheredDevices
		q := url.Values{"limit": {fmt.Sprint(limit)}, "after": {after}}
		if err := c.api(addr, "GET", "/api/v1/devices?"+q.Encode(), nil, &p); err != nil {
			return nil, nil, nil, err
		}
		if len(p.Devices) > limit {
			return nil, nil, nil, fmt.Errorf("%d devices in a page of %d", len(p.Devices), limit)
		}
		for _, d := range p.Devices {
			ids = append(ids, d.ID)
			edges[d.ID] = d.Edge
		}
		missing = append(missing, p.MissingNodes...)
		if p.Next == "" {
			return ids, missing, edges, nil
		}
		after = p.Next
	}
	return nil, nil, nil, fmt.Errorf("no last page")
}

// localDevices lists the devices the node at addr holds: the request
// carries the forwarded header, so the node answers from its own store.
func (c *Cluster) localDevices(addr string) (gatheredDevices, error) {
	var p gatheredDevices
	req, _ := http.NewRequest("GET", "http://"+addr+"/api/v1/devices?limit=1000", nil)
	req.Header.Set("Authorization", "Bearer "+c.Token)
	req.Header.Set("X-Weft-Forwarded-By", "test")
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return p, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return p, fmt.Errorf("GET devices at %s: %d", addr, resp.StatusCode)
	}
	return p, json.NewDecoder(resp.Body).Decode(&p)
}

// consolePage gets a console page at addr, signed in with the cluster's
// token as the session cookie.
func (c *Cluster) consolePage(addr, path string) (string, error) {
	req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
	req.AddCookie(&http.Cookie{Name: console.CookieName, Value: c.Token})
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s at %s: %d", path, addr, resp.StatusCode)
	}
	return string(b), nil
}

// TestClusterListsGathered runs three core nodes and four edges with
// simulated devices: every node lists every device once, in id order,
// paged three at a time, with each device's edge, though each node's
// store holds only the devices of the edges it owns; every node lists
// every edge; the console's devices and edges pages on every node list
// every device and edge too; once a node is killed, the others' lists
// name it missing, and their devices page says so.
func TestClusterListsGathered(t *testing.T) {
	if testing.Short() {
		t.Skip("runs seven nodes as processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := StartCluster(ctx, ClusterConfig{DataDir: t.TempDir(), Binary: weftBinary(t), Devices: 12, Interval: time.Second})
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
	want := map[string]string{} // device -> edge
	var ids []string
	for i, f := range c.Fleets {
		for _, id := range f.IDs() {
			want[id] = c.Edges[i].Name
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	owners := c.waitOwned(t)
	byNode := map[string]bool{}
	for _, o := range owners {
		byNode[o] = true
	}
	if len(byNode) < 2 {
		t.Fatalf("every edge owned by one node: %v", owners)
	}
	t.Logf("owners: %v", owners)

	lacking := false // some node's store lacks some device
	for _, p := range c.Cores {
		// What the node's own store lists (the forwarded header: answered
		// here), for the log.
		if local, err := c.localDevices(p.Addrs["http"]); err == nil {
			t.Logf("%s holds %d of %d devices", p.Name, len(local.Devices), len(ids))
			lacking = lacking || len(local.Devices) < len(ids)
		}
		wait.ForNil(t, time.Minute, "every device listed at "+p.Name, func() error {
			got, missing, edges, err := c.listAll(p.Addrs["http"], 3)
			if err != nil {
				return err
			}
			if len(missing) > 0 {
				return fmt.Errorf("missing nodes %v", missing)
			}
			if !slices.Equal(got, ids) {
				return fmt.Errorf("listed %v, want %v", got, ids)
			}
			for id, e := range want {
				if edges[id] != e {
					return fmt.Errorf("%s behind %q, want %s", id, edges[id], e)
				}
			}
			return nil
		})
		wait.ForNil(t, time.Minute, "every edge listed at "+p.Name, func() error {
			var r struct {
				Edges []struct {
					Name    string `json:"name"`
					Devices int    `json:"devices"`
				} `json:"edges"`
			}
			if err := c.api(p.Addrs["http"], "GET", "/api/v1/edges", nil, &r); err != nil {
				return err
			}
			var names []string
			for _, e := range r.Edges {
				if e.Devices != 3 {
					return fmt.Errorf("edge %s with %d devices, want 3", e.Name, e.Devices)
				}
				names = append(names, e.Name)
			}
			var wantNames []string
			for _, e := range c.Edges {
				wantNames = append(wantNames, e.Name)
			}
			if !slices.Equal(names, wantNames) {
				return fmt.Errorf("edges %v, want %v", names, wantNames)
			}
			return nil
		})
		// The console's pages list what the API gathers.
		wait.ForNil(t, time.Minute, "every device on the devices page at "+p.Name, func() error {
			page, err := c.consolePage(p.Addrs["http"], "/devices")
			if err != nil {
				return err
			}
			for _, id := range ids {
				if n := strings.Count(page, `data-device="`+id+`"`); n != 1 {
					return fmt.Errorf("%s %d times on the page, want once", id, n)
				}
			}
			if strings.Contains(page, `id="missing-nodes"`) {
				return fmt.Errorf("partial note with every node up")
			}
			return nil
		})
		wait.ForNil(t, time.Minute, "every edge on the edges page at "+p.Name, func() error {
			page, err := c.consolePage(p.Addrs["http"], "/edges?part=live")
			if err != nil {
				return err
			}
			// The edges table, after the cluster's nodes (which name
			// their edges too).
			_, page, ok := strings.Cut(page, `class="data edges"`)
			if !ok {
				return fmt.Errorf("no edges table")
			}
			for _, e := range c.Edges {
				if !strings.Contains(page, `href="/devices?edge=`+e.Name+`"`) {
					return fmt.Errorf("edge %s not on the page", e.Name)
				}
			}
			return nil
		})
	}
	if !lacking {
		t.Log("every node's store held every device: the pages proved no gathering")
	}

	// A node killed: the others still answer, naming it missing.
	victim := c.Cores[len(c.Cores)-1]
	victim.Kill()
	for _, p := range c.Cores[:len(c.Cores)-1] {
		wait.ForNil(t, time.Minute, p.Name+" names "+victim.Name+" missing", func() error {
			_, missing, _, err := c.listAll(p.Addrs["http"], 5)
			if err != nil {
				return err
			}
			if !slices.Contains(missing, victim.Name) {
				return fmt.Errorf("missing %v", missing)
			}
			return nil
		})
		wait.ForNil(t, time.Minute, p.Name+"'s devices page names "+victim.Name+" missing", func() error {
			page, err := c.consolePage(p.Addrs["http"], "/devices")
			if err != nil {
				return err
			}
			if !strings.Contains(page, `id="missing-nodes"`) || !strings.Contains(page, "<strong>"+victim.Name+"</strong>") {
				return fmt.Errorf("no partial note naming %s", victim.Name)
			}
			return nil
		})
	}
}
