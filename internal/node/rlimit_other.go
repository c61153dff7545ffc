//go:build !linux

package node

// raiseFileLimit does nothing outside Linux.
func raiseFileLimit() (soft, hard uint64, err error) { return 0, 0, nil }

// openFileLimit is 0: unknown.
func openFileLimit() uint64 { return 0 }
