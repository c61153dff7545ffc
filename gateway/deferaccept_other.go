//go:build !linux

package gateway

import (
	"syscall"
	"time"
)

// deferAccept is a no-op where TCP_DEFER_ACCEPT does not exist.
func deferAccept(time.Duration) func(network, address string, c syscall.RawConn) error {
	return nil
}
