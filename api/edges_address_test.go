package api

import (
	"context"
	"testing"
	"time"

	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/sync/replicate"
)

// TestLinkAddressFollowsTheConnection: an edge's link shows the address
// its connection has now (after a migration, the new one), and the last
// one once the link is down.
func TestLinkAddressFollowsTheConnection(t *testing.T) {
	m := replicate.NewMonitor("core1", nil)
	addr := "192.0.2.7:40000"
	l := m.Link("truck-7", certs.EdgeNode)
	l.UpAt(func() string { return addr }, time.Now())
	links := MonitorLinks(m)
	if got := links.Links(context.Background())[0].Address; got != "192.0.2.7:40000" {
		t.Fatalf("address %q", got)
	}
	addr = "198.51.100.3:51000" // the path migrated
	if got := links.Links(context.Background())[0].Address; got != addr {
		t.Fatalf("after a migration: address %q, want %q", got, addr)
	}
	l.Down(nil, time.Now())
	addr = "203.0.113.1:1"
	if got := links.Links(context.Background())[0]; got.Address != "198.51.100.3:51000" || got.State != "down" {
		t.Fatalf("down: %+v, want the last address", got)
	}
}
