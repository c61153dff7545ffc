package node

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
)

// Service manager states of sd_notify(3).
const (
	stateReady    = "READY=1"
	stateStopping = "STOPPING=1"
)

// Notify sends state ("READY=1", "STOPPING=1", ...) to the service manager
// on the datagram socket named by $NOTIFY_SOCKET, as sd_notify(3) does: a
// path, or an abstract socket when it starts with '@'. Without
// $NOTIFY_SOCKET (not run by systemd with Type=notify) it does nothing.
func Notify(state string) error {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return nil
	}
	// The net package maps a leading '@' to Linux's abstract namespace.
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("node: notify: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("node: notify: %w", err)
	}
	return nil
}

// NotifyReady tells the service manager the node is ready (READY=1: its
// store is open and its listeners up) and, once ctx ends, that it is
// stopping (STOPPING=1). A node's Run calls it after Start returns. A
// failure to notify is logged, never fatal: the node serves all the same.
func NotifyReady(ctx context.Context, log *slog.Logger) {
	if os.Getenv("NOTIFY_SOCKET") == "" {
		return
	}
	if err := Notify(stateReady); err != nil && log != nil {
		log.Warn("service manager not notified", "state", stateReady, "err", err)
	}
	go func() {
		<-ctx.Done()
		if err := Notify(stateStopping); err != nil && log != nil {
			log.Warn("service manager not notified", "state", stateStopping, "err", err)
		}
	}()
}
