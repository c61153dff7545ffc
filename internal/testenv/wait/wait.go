// Package wait is the one way Weft's tests wait for something to happen:
// poll a condition with a deadline, never a bare sleep. It imports nothing
// of Weft, so the tests of every package can use it.
package wait

import (
	"testing"
	"time"
)

// Timeout is how long For waits by default: long enough for a loaded
// machine, short enough for a stuck test to fail on its own.
const Timeout = 30 * time.Second

// For polls cond every few milliseconds until it is true, failing the
// test if it is not within timeout (Timeout if 0).
func For(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !poll(timeout, cond) {
		t.Fatalf("timed out after %s waiting for %s", orDefault(timeout), what)
	}
}

// ForNil is For with a condition that says why it does not hold yet: it
// polls until check returns nil, and a timeout reports the last error.
func ForNil(t testing.TB, timeout time.Duration, what string, check func() error) {
	t.Helper()
	var last error
	if !poll(timeout, func() bool { last = check(); return last == nil }) {
		t.Fatalf("timed out after %s waiting for %s: %v", orDefault(timeout), what, last)
	}
}

func orDefault(timeout time.Duration) time.Duration {
	if timeout <= 0 {
		return Timeout
	}
	return timeout
}

// poll reports whether cond became true within timeout.
func poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(orDefault(timeout))
	for pause := time.Millisecond; !cond(); pause = min(2*pause, 20*time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pause) // polling with a deadline
	}
	return true
}
