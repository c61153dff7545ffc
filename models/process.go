package models

import (
	"time"

	"github.com/weft-io/weft/anomaly"
)

// ExecFile is the file of a KindExternal version's executable, beside its
// manifest and parameters under /models/<name>/<version>/.
const ExecFile = "exec"

// FaultCrash is the fault of an external model whose program exited, could
// not be started, or is waiting to be started again after it did.
const FaultCrash = "crash"

// Exec is an external model's executable as the edge unpacked it from its
// copy of /models.
type Exec struct {
	// Path is the file on disk.
	Path string
	// SHA256 and Size are those of the bytes written at Path.
	SHA256 [32]byte
	Size   int64
}

// Process is an external model's program as the Runner asks it; package
// models/external runs one as a child process.
type Process interface {
	// Score sends the reading of device at t (the values of the model's
	// channels it holds) and waits at most within for the answer. ok is
	// false when the reading holds none of the model's channels; fault
	// is "" or FaultSlow, FaultCrash or FaultGarbage.
	Score(device string, t time.Time, values map[string]float64, within time.Duration) (res anomaly.Result, ok bool, fault string)
	// Close stops the program and waits for it to end.
	Close() error
}

// Launch makes the Process of a running external version. It need not
// start the program yet; it must run only bytes whose digest is the
// manifest's ExecSHA256.
type Launch func(m Manifest, p ExternalParams, exec Exec) Process
