package store

import "errors"

// Errors returned by the store; compare with errors.Is. Wrapped errors carry
// the object and the detail.
var (
	ErrNotFound      = errors.New("store: not found")
	ErrExists        = errors.New("store: already exists")
	ErrBadPath       = errors.New("store: bad path")
	ErrWrongKind     = errors.New("store: wrong object kind")
	ErrQuotaExceeded = errors.New("store: volume quota exceeded")
	ErrDiskFull      = errors.New("store: disk full")
	ErrCorrupt       = errors.New("store: corrupt batch")
	ErrTrimmed       = errors.New("store: offset below the low-water mark")
	ErrBadPartition  = errors.New("store: no such partition")
	ErrVersion       = errors.New("store: version mismatch")
	ErrBadDocument   = errors.New("store: invalid JSON document")
	ErrReadOnly      = errors.New("store: snapshot views are read-only")
	ErrClosed        = errors.New("store: closed")
	ErrNotEmpty      = errors.New("store: not empty")
	ErrInvalid       = errors.New("store: invalid argument")
	ErrGap           = errors.New("store: replica batch leaves a gap")
)
