package external

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
)

// Version is the protocol's version, in the WEFT_PROTOCOL variable of the
// program's environment.
const Version = 1

// MaxLine bounds a line the program writes; a longer one is garbage.
const MaxLine = 4096

// Request is one line to the program: one channel of one reading.
type Request struct {
	Seq     uint64    `json:"seq"`
	Device  string    `json:"device"`
	Channel string    `json:"channel"`
	T       time.Time `json:"t"`
	Value   float64   `json:"value"`
}

// Encode appends r as one line to b.
func Encode(b []byte, r Request) []byte {
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, r.Seq, 10)
	b = append(b, `,"device":`...)
	b = appendString(b, r.Device)
	b = append(b, `,"channel":`...)
	b = appendString(b, r.Channel)
	b = append(b, `,"t":"`...)
	b = r.T.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","value":`...)
	b = strconv.AppendFloat(b, r.Value, 'g', -1, 64)
	return append(b, "}\n"...)
}

func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x7f {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// Response is one line from the program.
type Response struct {
	Seq   uint64
	Score float64
	// Detected is the program's decision when it gave one.
	Detected *bool
}

// ErrGarbage is wrapped by every error about a line the program wrote.
var ErrGarbage = errors.New("external: garbage")

// Decode reads one line of the program (without its newline): an object
// with a positive "seq" and a "score" within [0, 1], and maybe
// "detected"; other members are ignored.
func Decode(line []byte) (Response, error) {
	line = bytes.TrimSpace(line)
	if len(line) > MaxLine {
		return Response{}, fmt.Errorf("%w: a line of %d bytes", ErrGarbage, len(line))
	}
	var w struct {
		Seq      *uint64  `json:"seq"`
		Score    *float64 `json:"score"`
		Detected *bool    `json:"detected"`
	}
	if len(line) == 0 || line[0] != '{' {
		return Response{}, fmt.Errorf("%w: not a JSON object: %.80q", ErrGarbage, line)
	}
	if err := json.Unmarshal(line, &w); err != nil {
		return Response{}, fmt.Errorf("%w: %v", ErrGarbage, err)
	}
	if w.Seq == nil || *w.Seq == 0 {
		return Response{}, fmt.Errorf("%w: no seq", ErrGarbage)
	}
	if w.Score == nil || math.IsNaN(*w.Score) || *w.Score < 0 || *w.Score > 1 {
		return Response{}, fmt.Errorf("%w: seq %d: no score within [0, 1]", ErrGarbage, *w.Seq)
	}
	return Response{Seq: *w.Seq, Score: *w.Score, Detected: w.Detected}, nil
}
