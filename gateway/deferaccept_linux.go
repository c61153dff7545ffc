//go:build linux

package gateway

import (
	"syscall"
	"time"
)

// deferAccept returns a listener control that sets TCP_DEFER_ACCEPT: the
// kernel hands the gateway a connection only once its first bytes (a
// TLS ClientHello) arrived, or after about d (rounded up to seconds) if
// none did. A socket that sends nothing then costs the kernel a
// half-open entry instead of an accept, a pending slot and a goroutine,
// and a device's connection never waits in the accept queue behind
// thousands of silent ones. Those that come through after d meet the
// first-byte deadline as before.
func deferAccept(d time.Duration) func(network, address string, c syscall.RawConn) error {
	secs := int((d + time.Second - 1) / time.Second)
	return func(_, _ string, c syscall.RawConn) error {
		if secs <= 0 {
			return nil
		}
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_DEFER_ACCEPT, secs)
		})
		if err != nil {
			return err
		}
		return serr
	}
}
