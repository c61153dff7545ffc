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
// models/external runs one as a child process. The runner sends a
// reading to every external version of the class before it waits for
// any, so that their programs work on it together.
type Process interface {
	// Send sends the reading of device at t (the values of the model's
	// channels it holds); its answer is due within. ok is false when the
	// reading holds none of the model's channels; fault is "" or
	// FaultSlow or FaultCrash when it could not be sent.
	Send(device string, t time.Time, values map[string]float64, within time.Duration) (ok bool, fault string)
	// Await waits for the answer to the last Send until its deadline;
	// fault is "" or FaultSlow, FaultCrash or FaultGarbage.
	Await() (res anomaly.Result, fault string)
	// Close stops the program and waits for it to end.
	Close() error
}

// Launch makes the Process of a running external version. It need not
// start the program yet; it must run only bytes whose digest is the
// manifest's ExecSHA256.
type Launch func(m Manifest, p ExternalParams, exec Exec) Process
