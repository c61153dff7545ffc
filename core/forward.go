package core

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"time"

	"github.com/weft-io/weft/cluster"
	"github.com/weft-io/weft/shadow"
	"github.com/weft-io/weft/store"
)

// forwardedHeader marks a request one node forwarded to another, which
// answers it itself.
const forwardedHeader = "X-Weft-Forwarded-By"

// deviceRead matches the reads of one device's data: its shadow, history
// and events.
var deviceRead = regexp.MustCompile(`^/api/v1/devices/([^/]+)(/history|/events)?$`)

// forward serves reads of a device's data on a node of a cluster from the
// owner of the device's edge: the node whose store takes the edge's data
// now. The device's edge comes from this node's copy of its shadow; a
// device this node has no shadow of is asked of the other nodes up, and
// the first answer that is not 404 is the answer. The lists of devices,
// edges and models are gathered from every node up and merged (gather).
// Everything else, and every request another node forwarded, is served
// here.
func (m *member) forward(next http.Handler, st *store.Store, log *slog.Logger) http.Handler {
	hc := &http.Client{Timeout: 30 * time.Second}
	gc := &http.Client{Timeout: gatherTimeout}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := m.node.Load()
		if n == nil || r.Method != http.MethodGet || r.Header.Get(forwardedHeader) != "" {
			next.ServeHTTP(w, r)
			return
		}
		if kind := listOfRequest(r); kind != notList {
			m.gather(w, r, kind, n, next, gc, log)
			return
		}
		match := deviceRead.FindStringSubmatch(r.URL.Path)
		if match == nil {
			next.ServeHTTP(w, r)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		targets, err := m.targets(ctx, n, st, match[1])
		cancel()
		if err != nil {
			log.Debug("not forwarded", "path", r.URL.Path, "err", err)
			next.ServeHTTP(w, r)
			return
		}
		for _, t := range targets {
			req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, "http://"+t.API+r.URL.RequestURI(), nil)
			for _, h := range []string{"Authorization", "Cookie", "Accept", "X-Request-Id"} {
				if v := r.Header.Get(h); v != "" {
					req.Header.Set(h, v)
				}
			}
			req.Header.Set(forwardedHeader, n.Name())
			resp, err := hc.Do(req)
			if err != nil {
				log.Debug("forward failed", "to", t.Name, "path", r.URL.Path, "err", err)
				continue
			}
			if resp.StatusCode == http.StatusNotFound && len(targets) > 1 {
				resp.Body.Close()
				continue
			}
			for k, vs := range resp.Header {
				for _, v := range vs {
					w.Header().Add(k, v)
				}
			}
			w.Header().Set(forwardedHeader, t.Name)
			w.WriteHeader(resp.StatusCode)
			io.Copy(w, resp.Body)
			resp.Body.Close()
			return
		}
		next.ServeHTTP(w, r)
	})
}

// targets returns the nodes to ask for device's data: the owner of its
// edge when this node's copy of its shadow names one other than this
// node, every other node up when this node has no shadow of it, none
// when this node serves it.
func (m *member) targets(ctx context.Context, n *cluster.Node, st *store.Store, device string) ([]cluster.Member, error) {
	up, err := n.Up(ctx)
	if err != nil {
		return nil, err
	}
	others := up[:0:0]
	for _, u := range up {
		if u.Name != n.Name() {
			others = append(others, u)
		}
	}
	d, err := shadow.Get(ctx, st, device)
	if errors.Is(err, store.ErrNotFound) {
		return others, nil
	}
	if err != nil || d.Edge == "" {
		return nil, err
	}
	owners, err := n.Owners(ctx)
	if err != nil {
		return nil, err
	}
	for _, u := range others {
		if u.Name == owners[d.Edge] {
			return []cluster.Member{u}, nil
		}
	}
	return nil, nil
}
