// Package external runs external models: programs in any language that
// an edge starts as child processes and asks for scores over a line
// protocol (docs/models.md#external-models).
//
// Protocol, version 1. The edge writes one JSON object per line to the
// program's standard input for each channel of a reading that the model
// takes:
//
//	{"seq":17,"device":"th-1","channel":"temp","t":"2026-03-01T10:00:00Z","value":20.5}
//
// and reads one JSON object per line from its standard output for each,
// in the same order:
//
//	{"seq":17,"score":0.12}
//
// seq rises by one per line, from 1 in each process; score is within
// [0, 1]; "detected" (true or false) may be added, else a score at or
// above the model's threshold is a detection. The reading's answer is the
// highest score of its channels, a detection when any of them is. The
// program must flush each line; anything it writes to standard error is
// logged.
//
// Process (the models.Process of a version) is the shell around one
// program: it starts it when launched, after checking the executable's
// SHA-256 against the signed manifest, waits for an answer at most the
// deadline it is given (the first answer after a start at least
// StartGrace; a late answer is dropped), kills the program when it writes
// garbage and starts it again after a backoff when it exited or was
// killed. Encode and Decode are the protocol's pure
// halves.
package external
