package store

import (
	"os"
	"syscall"
)

// fdatasync makes f's data durable, and of its metadata only what
// reading the data back needs (its size).
func fdatasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			return err
		}
	}
}
