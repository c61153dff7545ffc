package node

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"
)

// TestNotify: READY=1 reaches the socket of $NOTIFY_SOCKET when the node
// is ready, STOPPING=1 when its context ends; without the variable
// nothing is sent and nothing fails.
func TestNotify(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if err := Notify(stateReady); err != nil {
		t.Fatalf("without NOTIFY_SOCKET: %v", err)
	}

	for _, name := range []string{filepath.Join(t.TempDir(), "notify"), "@weft-notify-test-" + t.Name()} {
		t.Run(name[:1], func(t *testing.T) {
			ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			t.Setenv("NOTIFY_SOCKET", name)
			ctx, cancel := context.WithCancel(context.Background())
			NotifyReady(ctx, nil)
			read := func() string {
				// A deadline on the read only so a missing message fails
				// the test instead of hanging it.
				ln.SetReadDeadline(time.Now().Add(time.Minute))
				buf := make([]byte, 256)
				n, err := ln.Read(buf)
				if err != nil {
					t.Fatal(err)
				}
				return string(buf[:n])
			}
			if got := read(); got != "READY=1" {
				t.Fatalf("first message %q, want READY=1", got)
			}
			cancel()
			if got := read(); got != "STOPPING=1" {
				t.Fatalf("second message %q, want STOPPING=1", got)
			}
		})
	}
}
