package link

import (
	"net"
	"testing"
	"time"
)

func TestStalled(t *testing.T) {
	for _, tc := range []struct {
		name string
		w    progressBucket
		want bool
	}{
		{"idle", progressBucket{received: 10}, false},
		{"all acknowledged", progressBucket{sent: 1 << 20, acked: 1 << 20, received: 800}, false},
		{"30% lost", progressBucket{sent: 1 << 20, acked: 700 << 10, received: 600}, false},
		{"large packets lost, keepalives pass", progressBucket{sent: 8334, received: 3}, true},
		{"a trickle acknowledged", progressBucket{sent: 100000, acked: 5000, received: 40}, true},
		{"outage: nothing comes back", progressBucket{sent: 8334}, false},
		{"one lost packet is not enough", progressBucket{sent: 1400, received: 3}, false},
	} {
		if got := stalled(tc.w); got != tc.want {
			t.Errorf("%s: stalled(%+v) = %v, want %v", tc.name, tc.w, got, tc.want)
		}
	}
}

func TestSmallPaths(t *testing.T) {
	var p smallPaths
	t0 := time.Unix(1000, 0)
	a := &net.UDPAddr{IP: net.IPv4(10, 0, 0, 7), Port: 4000}
	b := &net.UDPAddr{IP: net.IPv4(10, 0, 0, 7), Port: 5000} // same host, new socket
	if p.small(a, t0) {
		t.Fatal("small before any stall")
	}
	p.mark(a, t0.Add(time.Minute))
	if !p.small(b, t0.Add(30*time.Second)) {
		t.Fatal("another port of the same host is not kept small")
	}
	if p.small(&net.UDPAddr{IP: net.IPv4(10, 0, 0, 8), Port: 4000}, t0) {
		t.Fatal("another host kept small")
	}
	if p.small(a, t0.Add(time.Minute)) {
		t.Fatal("still small after the period")
	}
}
