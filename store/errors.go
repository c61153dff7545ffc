package store

import (
	"errors"
	"fmt"
	"strings"
)

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

// ErrQuarantined is matched by a *GapError: the offsets were quarantined.
var ErrQuarantined = errors.New("store: offsets quarantined")

// CorruptError names a range of a stream partition that cannot be read:
// a batch that fails its checksum or cannot be decoded, or offsets for
// which no batch is found (a batch lost with a damaged table). It matches
// ErrCorrupt. To is 0 when the end of the range is not known.
type CorruptError struct {
	Path      string
	Topic     string
	Partition int
	From, To  uint64 // offsets [From, To)
	Err       error  // what was found, if anything
}

func (e *CorruptError) Error() string {
	rng := fmt.Sprintf("offsets %d-%d", e.From, e.To-1)
	if e.To == 0 {
		rng = fmt.Sprintf("offsets from %d", e.From)
	} else if e.To == e.From+1 {
		rng = fmt.Sprintf("offset %d", e.From)
	}
	msg := fmt.Sprintf("%v: %s topic %q partition %d %s", ErrCorrupt, e.Path, e.Topic, e.Partition, rng)
	if e.Err != nil {
		msg += ": " + strings.TrimPrefix(e.Err.Error(), ErrCorrupt.Error()+": ")
	}
	return msg
}

func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }
func (e *CorruptError) Unwrap() error        { return e.Err }

// GapError reports that a read reached offsets [From, To) of a partition
// that were quarantined (Stream.Quarantine): they will never be read. A
// reader steps over them by reading again from To, and says so (a
// Consumer reports them as Batch.Lost). It matches ErrQuarantined.
type GapError struct {
	Path      string
	Topic     string
	Partition int
	From, To  uint64
}

func (e *GapError) Error() string {
	return fmt.Sprintf("%v: %s topic %q partition %d offsets %d-%d; read on from %d", ErrQuarantined, e.Path, e.Topic, e.Partition, e.From, e.To-1, e.To)
}

func (e *GapError) Is(target error) bool { return target == ErrQuarantined }
