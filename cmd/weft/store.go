package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/weft-io/weft/store"
)

// The commands that work on a store directly are ls and rm (ls.go), volume
// (volume.go), stream (stream.go), table (table.go), fs (fs.go) and
// snapshot (snapshot.go). Each opens the store in the data directory with
// withStore, makes its calls and prints; the store does the work. This
// file holds what they share: the store, the flags and the printing.

// dataEnv names the data directory when --data is not given.
const dataEnv = "WEFT_DATA"

// addDataFlag adds the --data flag to cmd and its subcommands.
func addDataFlag(cmd *cobra.Command) {
	cmd.PersistentFlags().String("data", "", "data directory of the store (default $"+dataEnv+")")
}

// withStore opens the store named by --data (or $WEFT_DATA), runs fn and
// closes the store.
func withStore(cmd *cobra.Command, fn func(ctx context.Context, s *store.Store) error) (err error) {
	dir, _ := cmd.Flags().GetString("data")
	if dir == "" {
		dir = os.Getenv(dataEnv)
	}
	if dir == "" {
		return fmt.Errorf("no data directory: pass --data DIR or set %s", dataEnv)
	}
	s, err := store.Open(store.Config{Dir: dir})
	if err != nil {
		if heldByAnother(err) {
			return fmt.Errorf("%s is in use by a running node (weft edge or weft core) or another weft command; stop it, or use the node's HTTP API", dir)
		}
		return err
	}
	defer func() {
		if cerr := s.Close(); err == nil {
			err = cerr
		}
	}()
	return fn(cmd.Context(), s)
}

// heldByAnother reports whether err is Badger refusing a data directory
// that another process holds open. Badger says so only in words (its
// error keeps no sentinel), so the words are what is matched.
func heldByAnother(err error) bool {
	return strings.Contains(err.Error(), "Cannot acquire directory lock")
}

// outputFormat is the value of -o/--output: "text" or "json".
type outputFormat string

func (o *outputFormat) String() string { return string(*o) }
func (o *outputFormat) Type() string   { return "format" }
func (o *outputFormat) Set(v string) error {
	if v != "text" && v != "json" {
		return fmt.Errorf("output format %q: want text or json", v)
	}
	*o = outputFormat(v)
	return nil
}

func (o *outputFormat) json() bool { return *o == "json" }

// addOutputFlag adds -o/--output to cmd.
func addOutputFlag(cmd *cobra.Command) *outputFormat {
	o := outputFormat("text")
	cmd.Flags().VarP(&o, "output", "o", "output format: text or json")
	return &o
}

// byteSize is a flag holding a size such as 10GiB, 512MiB, 100KB or 1234.
type byteSize int64

func (b *byteSize) String() string { return strconv.FormatInt(int64(*b), 10) }
func (b *byteSize) Type() string   { return "size" }
func (b *byteSize) Set(v string) error {
	n, err := parseSize(v)
	if err != nil {
		return err
	}
	*b = byteSize(n)
	return nil
}

var _ pflag.Value = (*byteSize)(nil)

var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
}

// parseSize parses a byte count with an optional unit: KiB, MiB, GiB and
// TiB are powers of 1024, KB, MB, GB and TB powers of 1000, B or no unit
// bytes. Units are case-insensitive; the number may have a fraction.
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := strings.IndexFunc(t, unicode.IsLetter)
	if i < 0 {
		i = len(t)
	}
	num, unit := strings.TrimSpace(t[:i]), strings.ToLower(t[i:])
	mult, ok := sizeUnits[unit]
	if !ok {
		return 0, fmt.Errorf("size %q: unknown unit %q (use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)", s, t[i:])
	}
	if num == "" || num[0] == '-' || num[0] == '+' {
		return 0, fmt.Errorf("size %q: want a non-negative number with an optional unit, like 512MiB", s)
	}
	if strings.Contains(num, ".") {
		f, err := strconv.ParseFloat(num, 64)
		if err != nil {
			return 0, fmt.Errorf("size %q: bad number %q", s, num)
		}
		v := math.Round(f * float64(mult))
		if v >= math.MaxInt64 {
			return 0, fmt.Errorf("size %q is too large", s)
		}
		return int64(v), nil
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil {
		if errors.Is(err, strconv.ErrRange) {
			return 0, fmt.Errorf("size %q is too large", s)
		}
		return 0, fmt.Errorf("size %q: bad number %q", s, num)
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return n * mult, nil
}

// formatSize prints n bytes for people: 512 B, 1.5 KiB, 10 GiB.
func formatSize(n int64) string {
	const units = "KMGTPE"
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n)/1024, 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	s := strconv.FormatFloat(v, 'f', 1, 64)
	return strings.TrimSuffix(s, ".0") + " " + units[i:i+1] + "iB"
}

// formatTTL prints a retention for people: 72h, 90m, "-" for none.
func formatTTL(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// volumeArg accepts a volume as "name" or "/name".
func volumeArg(s string) string { return strings.TrimPrefix(s, "/") }

// printJSON writes v as one line of JSON.
func printJSON(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// printable shows b on one line of text output: as is when it is UTF-8
// without tabs or line breaks, Go-quoted otherwise.
func printable(b []byte) string {
	if utf8.Valid(b) && !strings.ContainsAny(string(b), "\t\r\n") {
		return string(b)
	}
	return strconv.Quote(string(b))
}
