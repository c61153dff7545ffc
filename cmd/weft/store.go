package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/weft-io/weft/api"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/weft-io/weft/store"
)

// This file holds the commands that work on a store directly: ls, rm,
// volume, stream, table, fs and snapshot. Each opens the store in the data
// directory, makes its calls and prints; the store does the work.

// dataEnv names the data directory when --data is not given.
const dataEnv = "WEFT_DATA"

// "stream append" commits stdin in groups of at most appendLines lines and
// about appendBytes bytes.
const (
	appendLines = 1000
	appendBytes = 1 << 20
)

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
		return err
	}
	defer func() {
		if cerr := s.Close(); err == nil {
			err = cerr
		}
	}()
	return fn(cmd.Context(), s)
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

// ---- ls, rm ----

func newLsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ls [/volume[/dir]]",
		Short: "List volumes, or the objects of a volume or directory",
		Long: `List the children of a path: with no path (or "/") the volumes, with
/volume the top of a volume, with /volume/dir a directory. Objects deeper
down appear as their directory; a path naming an object lists just it.

Text output has the columns PATH, KIND, SIZE and MODIFIED. SIZE is the bytes
used by a volume, the size of a file, or the partition count of a stream.
MODIFIED is when a file was last written, or when the object was created
for kinds that do not record changes. -o json prints a JSON array of
objects as the store describes them (sizes in bytes, durations in
nanoseconds).`,
		Example: `  weft ls --data /var/lib/weft
  weft ls --data /var/lib/weft /telemetry
  weft ls --data /var/lib/weft /models/vision -o json`,
		Args: cobra.MaximumNArgs(1),
	}
	addDataFlag(cmd)
	out := addOutputFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		path := "/"
		if len(args) == 1 {
			path = args[0]
		}
		return withStore(cmd, func(ctx context.Context, s *store.Store) error {
			infos, err := s.List(ctx, path)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if out.json() {
				if infos == nil {
					infos = []store.Info{}
				}
				return printJSON(w, infos)
			}
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PATH\tKIND\tSIZE\tMODIFIED")
			for _, in := range infos {
				size := "-"
				switch in.Kind {
				case store.KindVolume:
					size = formatSize(in.Used)
				case store.KindFile:
					size = formatSize(in.Size)
				case store.KindStream:
					size = fmt.Sprintf("%d partitions", in.Partitions)
					if in.Partitions == 1 {
						size = "1 partition"
					}
					if in.Dropped > 0 {
						size += fmt.Sprintf(", %d dropped", in.Dropped)
					}
				}
				mod := in.Modified
				if mod.IsZero() {
					mod = in.Created
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", in.Path, in.Kind, size, formatTime(mod))
			}
			return tw.Flush()
		})
	}
	return cmd
}

func newRmCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rm /volume/path...",
		Short: "Delete objects",
		Long: `Delete each object named (stream, table, file or empty directory) with
all its data, in the order given, stopping at the first error. The object
disappears at once; its data is removed right after. Volumes and the
well-known objects every store has cannot be deleted.`,
		Example: `  weft rm --data /var/lib/weft /models/old.onnx
  weft rm --data /var/lib/weft /metrics/scratch /metrics/tmp`,
		Args: cobra.MinimumNArgs(1),
	}
	addDataFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return withStore(cmd, func(ctx context.Context, s *store.Store) error {
			for _, p := range args {
				if err := s.Delete(ctx, p); err != nil {
					return err
				}
			}
			return nil
		})
	}
	return cmd
}

// ---- volume ----

func newVolumeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "volume",
		Short: "Create volumes and set their retention and quota",
		Long: `A volume is the unit of policy of the store: the retention (TTL) of its
streams and the most bytes it may hold (quota). Every object lives in a
volume, as /volume/name.`,
	}
	addDataFlag(cmd)
	cmd.AddCommand(newVolumeCreateCmd(), newVolumeSetCmd(), newVolumeLsCmd())
	return cmd
}

// volumeFlags are the policy flags of volume create and set.
type volumeFlags struct {
	ttl        time.Duration
	quota      byteSize
	dropOldest bool
}

func (f *volumeFlags) add(cmd *cobra.Command) {
	cmd.Flags().DurationVar(&f.ttl, "ttl", 0, "retention of the volume's streams, like 72h (0: forever)")
	cmd.Flags().Var(&f.quota, "quota", "most bytes the volume may hold, like 10GiB (0: no quota)")
	cmd.Flags().BoolVar(&f.dropOldest, "drop-oldest", false, "at the quota, drop the oldest stream data (lowest stream priority first) instead of refusing writes")
}

func newVolumeCreateCmd() *cobra.Command {
	var f volumeFlags
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a volume",
		Long: `Create a volume with a retention for its streams (--ttl; 0 keeps data
forever) and a quota (--quota; 0 means none). Writes that would take the
volume past its quota fail, unless the volume drops its oldest data
(--drop-oldest): then the oldest batches of its streams go to make room,
those of the lowest stream priority first, and each stream counts what it
lost (weft ls -o json: "dropped", "dropped_bytes").`,
		Example: `  weft volume create --data /var/lib/weft sensors --ttl 72h --quota 10GiB
  weft volume create --data /var/lib/weft backlog --quota 2GiB --drop-oldest`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withStore(cmd, func(ctx context.Context, s *store.Store) error {
				return s.CreateVolume(ctx, volumeArg(args[0]), store.VolumeOptions{TTL: f.ttl, Quota: int64(f.quota), DropOldest: f.dropOldest})
			})
		},
	}
	f.add(cmd)
	return cmd
}

func newVolumeSetCmd() *cobra.Command {
	var f volumeFlags
	cmd := &cobra.Command{
		Use:   "set NAME",
		Short: "Change a volume's retention or quota",
		Long: `Change the policies of a volume. Only the flags given change; the others
keep their values. --ttl 0 keeps data forever, --quota 0 removes the
quota, --drop-oldest=false makes writes past the quota fail again.`,
		Example: `  weft volume set --data /var/lib/weft sensors --ttl 24h
  weft volume set --data /var/lib/weft uplink --quota 512MiB --drop-oldest`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			fl := cmd.Flags()
			if !fl.Changed("ttl") && !fl.Changed("quota") && !fl.Changed("drop-oldest") {
				return errors.New("nothing to change: give --ttl, --quota or --drop-oldest")
			}
			name := volumeArg(args[0])
			return withStore(cmd, func(ctx context.Context, s *store.Store) error {
				vi, err := s.Volume(name)
				if err != nil {
					return err
				}
				opts := store.VolumeOptions{TTL: vi.TTL, Quota: vi.Quota, DropOldest: vi.DropOldest}
				if fl.Changed("ttl") {
					opts.TTL = f.ttl
				}
				if fl.Changed("quota") {
					opts.Quota = int64(f.quota)
				}
				if fl.Changed("drop-oldest") {
					opts.DropOldest = f.dropOldest
				}
				return s.SetVolume(ctx, name, opts)
			})
		},
	}
	f.add(cmd)
	return cmd
}

func newVolumeLsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List volumes with their policies and usage",
		Long: `List the volumes with their retention (TTL), quota and the bytes they use.
-o json prints a JSON array of {"name", "ttl", "quota", "drop_oldest",
"created", "used"} with ttl in nanoseconds and sizes in bytes; ttl, quota and
drop_oldest are left out when zero (none).`,
		Example: `  weft volume ls --data /var/lib/weft
  weft volume ls --data /var/lib/weft -o json`,
		Args: cobra.NoArgs,
	}
	out := addOutputFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return withStore(cmd, func(ctx context.Context, s *store.Store) error {
			vols := s.Volumes()
			w := cmd.OutOrStdout()
			if out.json() {
				return printJSON(w, vols)
			}
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tTTL\tQUOTA\tUSED")
			for _, v := range vols {
				quota := "-"
				if v.Quota > 0 {
					quota = formatSize(v.Quota)
				}
				if v.DropOldest {
					quota += " (drop oldest)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", v.Name, formatTTL(v.TTL), quota, formatSize(v.Used))
			}
			return tw.Flush()
		})
	}
	return cmd
}

// ---- stream ----

func newStreamCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "stream",
		Short: "Create, append to and read streams",
		Long: `A stream holds messages by topic; each topic has a fixed number of
partitions, and each partition numbers its messages with offsets 0, 1, 2...
Retention (TTL and a size cap per partition) trims the oldest messages and
moves the partition's low-water mark, the first offset still readable.`,
	}
	addDataFlag(cmd)
	cmd.AddCommand(newStreamCreateCmd(), newStreamAppendCmd(), newStreamReadCmd(), newStreamTopicsCmd())
	return cmd
}

func newStreamCreateCmd() *cobra.Command {
	var opts store.StreamOptions
	var maxBytes byteSize
	cmd := &cobra.Command{
		Use:   "create /volume/name",
		Short: "Create a stream",
		Long: `Create a stream with a number of partitions per topic (default 1), a
retention (--ttl; 0 uses the volume's), a size cap per partition
(--max-bytes; 0: none) and a priority: when its volume is full and drops
its oldest data (weft volume create --drop-oldest), streams of lower
--priority lose theirs first.`,
		Example: `  weft stream create --data /var/lib/weft /telemetry/vibration --partitions 4 --ttl 24h --max-bytes 1GiB`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.MaxBytes = int64(maxBytes)
			return withStore(cmd, func(ctx context.Context, s *store.Store) error {
				return s.CreateStream(ctx, args[0], opts)
			})
		},
	}
	cmd.Flags().IntVar(&opts.Partitions, "partitions", 1, "partitions per topic")
	cmd.Flags().DurationVar(&opts.TTL, "ttl", 0, "retention, like 24h (0: the volume's)")
	cmd.Flags().Var(&maxBytes, "max-bytes", "size cap of each partition, like 1GiB (0: none)")
	cmd.Flags().IntVar(&opts.Priority, "priority", 0, "keep this stream's data longer than lower priorities' in a volume that drops its oldest data")
	return cmd
}

func newStreamAppendCmd() *cobra.Command {
	var topic, key string
	var part int
	var headers []string
	cmd := &cobra.Command{
		Use:   "append /volume/name --topic TOPIC",
		Short: "Append the lines of stdin as messages",
		Long: `Append one message per line of standard input (without its line ending;
an empty line is an empty message) to a topic of the stream, and print
where each landed as "partition offset", or {"partition","offset"} JSON
lines with -o json.

Without --partition the partition is picked by the hash of --key, or in
turn for messages without a key. Lines are committed in groups of up to
1000 lines or about 1 MiB: each group is durable before its positions are
printed, and an error (such as the volume's quota) stops at the group that
failed.`,
		Example: `  printf 'a\nb\nc\n' | weft stream append --data /var/lib/weft /telemetry/events --topic dev1 --key dev1
  weft stream append --data /var/lib/weft /telemetry/events --topic dev1 --header unit=mm < readings.txt`,
		Args: cobra.ExactArgs(1),
	}
	out := addOutputFlag(cmd)
	cmd.Flags().StringVar(&topic, "topic", "", "topic to append to (required)")
	cmd.Flags().StringVar(&key, "key", "", "key of every message")
	cmd.Flags().IntVar(&part, "partition", -1, "partition to append to; -1 picks it by key")
	cmd.Flags().StringArrayVar(&headers, "header", nil, "header NAME=VALUE of every message (repeatable)")
	_ = cmd.MarkFlagRequired("topic")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		var hdr map[string]string
		for _, h := range headers {
			name, value, ok := strings.Cut(h, "=")
			if !ok || name == "" {
				return fmt.Errorf("header %q: want NAME=VALUE", h)
			}
			if hdr == nil {
				hdr = map[string]string{}
			}
			hdr[name] = value
		}
		var k []byte
		if key != "" {
			k = []byte(key)
		}
		return withStore(cmd, func(ctx context.Context, s *store.Store) error {
			r := bufio.NewReaderSize(cmd.InOrStdin(), 64<<10)
			w := bufio.NewWriter(cmd.OutOrStdout())
			defer w.Flush()
			for {
				msgs, rerr := readLines(r, k, hdr)
				if len(msgs) > 0 {
					req := store.AppendRequest{Path: args[0], Topic: topic, Partition: part, Messages: msgs}
					res, err := s.AppendMany(ctx, []store.AppendRequest{req})
					if err != nil {
						return err
					}
					for _, p := range res[0] {
						if out.json() {
							err = printJSON(w, p)
						} else {
							_, err = fmt.Fprintf(w, "%d %d\n", p.Partition, p.Offset)
						}
						if err != nil {
							return err
						}
					}
					if err := w.Flush(); err != nil {
						return err
					}
				}
				if rerr == io.EOF {
					return nil
				}
				if rerr != nil {
					return fmt.Errorf("read stdin: %w", rerr)
				}
			}
		})
	}
	return cmd
}

// readLines reads one group of lines from r as messages with key and
// headers. It returns io.EOF with the last lines when r ends.
func readLines(r *bufio.Reader, key []byte, hdr map[string]string) ([]store.Message, error) {
	var msgs []store.Message
	for size := 0; len(msgs) < appendLines && size < appendBytes; {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 {
			size += len(line)
			line = line[:len(line)-len(lineEnd(line))]
			msgs = append(msgs, store.Message{Key: key, Value: line, Headers: hdr})
		}
		if err != nil {
			return msgs, err
		}
	}
	return msgs, nil
}

// lineEnd is the line ending at the end of line: "\r\n", "\n" or "".
func lineEnd(line []byte) string {
	switch {
	case len(line) >= 2 && line[len(line)-2] == '\r' && line[len(line)-1] == '\n':
		return "\r\n"
	case len(line) >= 1 && line[len(line)-1] == '\n':
		return "\n"
	}
	return ""
}

func newStreamReadCmd() *cobra.Command {
	var topic string
	var part int
	var from uint64
	var limit int
	cmd := &cobra.Command{
		Use:   "read /volume/name --topic TOPIC",
		Short: "Read messages of one partition of a topic",
		Long: `Read up to --limit messages of a partition of a topic, from offset --from
on. Reading below the partition's low-water mark (messages already trimmed
by retention) is an error that names the first readable offset; reading at
or past the end prints nothing.

Text output prints "offset key value" per message, separated by tabs, with
"-" for a missing key and Go-quoted keys and values when they are not
printable on one line. -o json prints one JSON object per line:
{"offset","partition","key","value","headers","timestamp"} with the
timestamp in RFC 3339 with nanoseconds; a key or value that is not valid
UTF-8 appears base64-encoded as "key_b64" or "value_b64" instead.`,
		Example: `  weft stream read --data /var/lib/weft /telemetry/events --topic dev1 --from 0 --limit 10
  weft stream read --data /var/lib/weft /telemetry/events --topic dev1 --partition 2 --from 1500 -o json`,
		Args: cobra.ExactArgs(1),
	}
	out := addOutputFlag(cmd)
	cmd.Flags().StringVar(&topic, "topic", "", "topic to read (required)")
	cmd.Flags().IntVar(&part, "partition", 0, "partition to read")
	cmd.Flags().Uint64Var(&from, "from", 0, "first offset to read")
	cmd.Flags().IntVar(&limit, "limit", 100, "most messages to print")
	_ = cmd.MarkFlagRequired("topic")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if limit <= 0 {
			return fmt.Errorf("--limit %d: want at least 1", limit)
		}
		return withStore(cmd, func(ctx context.Context, s *store.Store) error {
			st := s.Stream(args[0])
			w := bufio.NewWriter(cmd.OutOrStdout())
			defer w.Flush()
			next := from
			// A read returns at most about 4 MiB; read on until the limit.
			for left := limit; left > 0; {
				msgs, err := st.Read(ctx, topic, part, next, store.ReadOptions{Limit: left})
				if err != nil {
					return err
				}
				if len(msgs) == 0 {
					break
				}
				for _, m := range msgs {
					if out.json() {
						err = printJSON(w, api.MessageJSON(m))
					} else {
						k := "-"
						if len(m.Key) > 0 {
							k = printable(m.Key)
						}
						_, err = fmt.Fprintf(w, "%d\t%s\t%s\n", m.Offset, k, printable(m.Value))
					}
					if err != nil {
						return err
					}
				}
				left -= len(msgs)
				next = msgs[len(msgs)-1].Offset + 1
			}
			return w.Flush()
		})
	}
	return cmd
}

func newStreamTopicsCmd() *cobra.Command {
	var prefix, after string
	var limit int
	cmd := &cobra.Command{
		Use:   "topics /volume/name",
		Short: "List the topics of a stream",
		Long: `List the stream's topics in order, those starting with --prefix, after
the topic --after, at most --limit. Text output prints one topic per line
and, when there are more, the --after value of the next page on stderr.
-o json prints {"topics": [...], "next": "..."} where next, present only
when there are more topics, is the value to pass as --after.`,
		Example: `  weft stream topics --data /var/lib/weft /telemetry/events --prefix dev --limit 100
  weft stream topics --data /var/lib/weft /telemetry/events --limit 100 --after dev0099 -o json`,
		Args: cobra.ExactArgs(1),
	}
	out := addOutputFlag(cmd)
	cmd.Flags().StringVar(&prefix, "prefix", "", "list only topics starting with this")
	cmd.Flags().StringVar(&after, "after", "", "start after this topic (for paging)")
	cmd.Flags().IntVar(&limit, "limit", 1000, "most topics to list")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if limit <= 0 {
			return fmt.Errorf("--limit %d: want at least 1", limit)
		}
		return withStore(cmd, func(ctx context.Context, s *store.Store) error {
			topics, err := s.Stream(args[0]).Topics(ctx, prefix, after, limit+1)
			if err != nil {
				return err
			}
			next := ""
			if len(topics) > limit {
				topics = topics[:limit]
				next = topics[limit-1]
			}
			w := cmd.OutOrStdout()
			if out.json() {
				page := struct {
					Topics []string `json:"topics"`
					Next   string   `json:"next,omitempty"`
				}{append([]string{}, topics...), next}
				return printJSON(w, page)
			}
			for _, t := range topics {
				if _, err := fmt.Fprintln(w, t); err != nil {
					return err
				}
			}
			if next != "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "more topics: continue with --after %s\n", strconv.Quote(next))
			}
			return nil
		})
	}
	return cmd
}

// ---- table ----

func newTableCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "table",
		Short: "Create tables and put, get, patch, delete and scan documents",
		Long: `A table holds JSON documents by key, in key order. Every document has a
version, 1 when first written and one more at each change, that
--if-version makes a precondition (compare-and-set). A table can have a
change stream that receives a record of every change.

Commands that return a document print it as one line of JSON:
{"key", "version", "updated", "doc"}.`,
	}
	addDataFlag(cmd)
	cmd.AddCommand(newTableCreateCmd(), newTablePutCmd(), newTableGetCmd(), newTablePatchCmd(),
		newTableDeleteCmd(), newTableScanCmd())
	return cmd
}

func newTableCreateCmd() *cobra.Command {
	var opts store.TableOptions
	cmd := &cobra.Command{
		Use:   "create /volume/table",
		Short: "Create a table",
		Long: `Create a table. With --change-stream every put, patch and delete also
appends a change record to that stream (created if missing, in any volume)
in the same commit.`,
		Example: `  weft table create --data /var/lib/weft /shadows/gateways --change-stream /shadows/gateway_changes`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withStore(cmd, func(ctx context.Context, s *store.Store) error {
				return s.CreateTable(ctx, args[0], opts)
			})
		},
	}
	cmd.Flags().StringVar(&opts.ChangeStream, "change-stream", "", "stream that receives a record of every change")
	return cmd
}

// addIfVersion adds --if-version to cmd; conds returns the condition when
// the flag was given.
func addIfVersion(cmd *cobra.Command) (conds func() []store.Cond) {
	v := cmd.Flags().Uint64("if-version", 0, "apply only if the document has this version (0: does not exist)")
	return func() []store.Cond {
		if !cmd.Flags().Changed("if-version") {
			return nil
		}
		return []store.Cond{store.IfVersion(*v)}
	}
}

// docArg is the JSON given as the argument after the key, or stdin.
func docArg(cmd *cobra.Command, args []string) (json.RawMessage, error) {
	if len(args) == 2 {
		return json.RawMessage(args[1]), nil
	}
	b, err := io.ReadAll(cmd.InOrStdin())
	if err != nil {
		return nil, fmt.Errorf("read stdin: %w", err)
	}
	return json.RawMessage(b), nil
}

func newTablePutCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "put /volume/table KEY [JSON]",
		Short: "Store a document",
		Long: `Store a JSON document at KEY, replacing the one there, and print the new
document with its version. The JSON comes from the argument or, without
it, from stdin. With --if-version N the put happens only if the document
has version N (0: only if there is none), otherwise it fails.`,
		Example: `  weft table put --data /var/lib/weft /shadows/gateways gw1 '{"fw":"1.2.0"}'
  weft table put --data /var/lib/weft /shadows/gateways gw1 --if-version 3 < gw1.json`,
		Args: cobra.RangeArgs(2, 3),
	}
	writeDoc(cmd, (*store.Table).Put)
	return cmd
}

// writeDoc adds --if-version to cmd and makes it write the document of its
// arguments (or stdin) with write, printing the result.
func writeDoc(cmd *cobra.Command, write func(t *store.Table, ctx context.Context, key string, doc json.RawMessage, conds ...store.Cond) (store.Doc, error)) {
	conds := addIfVersion(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		doc, err := docArg(cmd, args[1:])
		if err != nil {
			return err
		}
		return withStore(cmd, func(ctx context.Context, s *store.Store) error {
			d, err := write(s.Table(args[0]), ctx, args[1], doc, conds()...)
			if err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), d)
		})
	}
}

func newTablePatchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "patch /volume/table KEY [JSON]",
		Short: "Apply a JSON merge patch to a document",
		Long: `Apply a JSON merge patch (RFC 7386) to the document at KEY, creating it
if absent, and print the new document with its version: members of the
patch replace those of the document, null members remove them. The patch
comes from the argument or, without it, from stdin. --if-version N makes
the document's version a precondition.`,
		Example: `  weft table patch --data /var/lib/weft /shadows/gateways gw1 '{"fw":"1.3.0","rollback":null}'`,
		Args:    cobra.RangeArgs(2, 3),
	}
	writeDoc(cmd, (*store.Table).Patch)
	return cmd
}

func newTableDeleteCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "delete /volume/table KEY",
		Short: "Delete a document",
		Long: `Delete the document at KEY; deleting a missing document is an error.
--if-version N deletes only if the document has version N.`,
		Example: `  weft table delete --data /var/lib/weft /shadows/gateways gw1 --if-version 4`,
		Args:    cobra.ExactArgs(2),
	}
	conds := addIfVersion(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return withStore(cmd, func(ctx context.Context, s *store.Store) error {
			return s.Table(args[0]).Delete(ctx, args[1], conds()...)
		})
	}
	return cmd
}

// addSnapshotFlag adds --snapshot to cmd; view returns a read handle on
// the store as of that snapshot of path's volume, or of now without it.
func addSnapshotFlag(cmd *cobra.Command) (view func(s *store.Store, path string) (reader, error)) {
	name := cmd.Flags().String("snapshot", "", "read as of this snapshot of the object's volume")
	return func(s *store.Store, path string) (reader, error) {
		if *name == "" {
			return s, nil
		}
		vol, _, err := store.SplitPath(path)
		if err != nil {
			return nil, err
		}
		return s.At(vol, *name)
	}
}

// reader is what *store.Store and *store.View share for reading.
type reader interface {
	Table(path string) *store.Table
	File(path string) *store.File
}

var (
	_ reader = (*store.Store)(nil)
	_ reader = (*store.View)(nil)
)

func newTableGetCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "get /volume/table KEY",
		Short: "Print a document",
		Long: `Print the document at KEY with its version. With --snapshot NAME, print it
as it was in that snapshot of the table's volume.`,
		Example: `  weft table get --data /var/lib/weft /shadows/gateways gw1
  weft table get --data /var/lib/weft --snapshot before-upgrade /shadows/gateways gw1`,
		Args: cobra.ExactArgs(2),
	}
	view := addSnapshotFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return withStore(cmd, func(ctx context.Context, s *store.Store) error {
			r, err := view(s, args[0])
			if err != nil {
				return err
			}
			d, err := r.Table(args[0]).Get(ctx, args[1])
			if err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), d)
		})
	}
	return cmd
}

func newTableScanCmd() *cobra.Command {
	var prefix, after string
	var limit int
	cmd := &cobra.Command{
		Use:   "scan /volume/table",
		Short: "List documents in key order",
		Long: `List the documents whose key starts with --prefix, in key order, after
the key --after, at most --limit. Text output has the columns KEY, VERSION,
UPDATED and DOC and, when there are more documents, prints the --after
value of the next page on stderr. -o json prints {"docs": [...],
"next": "..."} where next, present only when there are more documents, is
the value to pass as --after. --snapshot NAME scans the table as it was in
that snapshot of its volume.`,
		Example: `  weft table scan --data /var/lib/weft /shadows/devices --prefix plant1/ --limit 50 -o json
  weft table scan --data /var/lib/weft /shadows/devices --limit 50 --after plant1/dev0049`,
		Args: cobra.ExactArgs(1),
	}
	out := addOutputFlag(cmd)
	view := addSnapshotFlag(cmd)
	cmd.Flags().StringVar(&prefix, "prefix", "", "list only keys starting with this")
	cmd.Flags().StringVar(&after, "after", "", "start after this key (for paging)")
	cmd.Flags().IntVar(&limit, "limit", 1000, "most documents to list")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if limit <= 0 {
			return fmt.Errorf("--limit %d: want at least 1", limit)
		}
		return withStore(cmd, func(ctx context.Context, s *store.Store) error {
			r, err := view(s, args[0])
			if err != nil {
				return err
			}
			docs, next, err := r.Table(args[0]).Scan(ctx, prefix, after, limit)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if out.json() {
				page := struct {
					Docs []store.Doc `json:"docs"`
					Next string      `json:"next,omitempty"`
				}{append([]store.Doc{}, docs...), next}
				return printJSON(w, page)
			}
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "KEY\tVERSION\tUPDATED\tDOC")
			for _, d := range docs {
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", printable([]byte(d.Key)), d.Version, formatTime(d.Updated), d.Value)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if next != "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "more documents: continue with --after %s\n", strconv.Quote(next))
			}
			return nil
		})
	}
	return cmd
}

// ---- fs ----

func newFsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "fs",
		Short: "Copy files into and out of the store",
		Long: `Files in the store are stored in chunks with their size and SHA-256, which
is checked when they are read. They are streamed in both directions, never
held whole in memory.`,
	}
	addDataFlag(cmd)
	cmd.AddCommand(newFsPutCmd(), newFsGetCmd())
	return cmd
}

func newFsPutCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "put LOCALFILE /volume/path",
		Short: "Copy a local file into the store",
		Long: `Copy LOCALFILE ("-" for stdin) to a file in the store, creating it or
replacing its content; readers see the old content until the new one is
complete. Prints the path, size in bytes and SHA-256 of what was stored
(-o json: the file's description).`,
		Example: `  weft fs put --data /var/lib/weft model.onnx /models/vision/v3.onnx
  tar c config | weft fs put --data /var/lib/weft - /firmware/config.tar`,
		Args: cobra.ExactArgs(2),
	}
	out := addOutputFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		var src io.Reader = cmd.InOrStdin()
		if args[0] != "-" {
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			src = f
		}
		return withStore(cmd, func(ctx context.Context, s *store.Store) error {
			info, err := s.File(args[1]).Write(ctx, src)
			if err != nil {
				return err
			}
			if out.json() {
				return printJSON(cmd.OutOrStdout(), info)
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s\t%d\t%s\n", info.Path, info.Size, info.SHA256)
			return err
		})
	}
	return cmd
}

func newFsGetCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "get /volume/path LOCALFILE",
		Short: "Copy a file out of the store",
		Long: `Copy a file of the store to LOCALFILE ("-" for stdout). The content is
checked against the recorded size and SHA-256 as it is read; on a mismatch
the command fails and removes LOCALFILE. --snapshot NAME copies the file as
it was in that snapshot of its volume.`,
		Example: `  weft fs get --data /var/lib/weft /models/vision/v3.onnx model.onnx
  weft fs get --data /var/lib/weft --snapshot nightly /firmware/config.tar - | tar t`,
		Args: cobra.ExactArgs(2),
	}
	view := addSnapshotFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return withStore(cmd, func(ctx context.Context, s *store.Store) error {
			r, err := view(s, args[0])
			if err != nil {
				return err
			}
			rc, _, err := r.File(args[0]).Open(ctx)
			if err != nil {
				return err
			}
			defer rc.Close()
			if args[1] == "-" {
				_, err := io.Copy(cmd.OutOrStdout(), rc)
				return err
			}
			f, err := os.Create(args[1])
			if err != nil {
				return err
			}
			_, err = io.Copy(f, rc)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				os.Remove(args[1])
			}
			return err
		})
	}
	return cmd
}

// ---- snapshot ----

func newSnapshotCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "snapshot",
		Short: "Create, list and delete snapshots of volumes",
		Long: `A snapshot is a named, read-only point in time of a volume. Commands that
read take --snapshot NAME to read as of one (table get, table scan,
fs get). A snapshot keeps the data it sees until it is deleted.`,
	}
	addDataFlag(cmd)
	cmd.AddCommand(newSnapshotCreateCmd(), newSnapshotLsCmd(), newSnapshotDeleteCmd())
	return cmd
}

func printSnapshots(cmd *cobra.Command, out *outputFormat, snaps []store.Snapshot) error {
	w := cmd.OutOrStdout()
	if out.json() {
		return printJSON(w, snaps)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tVOLUME\tCREATED")
	for _, sn := range snaps {
		fmt.Fprintf(tw, "%s\t/%s\t%s\n", sn.Name, sn.Volume, formatTime(sn.Created))
	}
	return tw.Flush()
}

func newSnapshotCreateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "create VOLUME NAME",
		Short:   "Snapshot a volume",
		Long:    `Name the current state of VOLUME as snapshot NAME and print it (-o json: {"name", "volume", "ts", "created"}).`,
		Example: `  weft snapshot create --data /var/lib/weft shadows before-upgrade`,
		Args:    cobra.ExactArgs(2),
	}
	out := addOutputFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return withStore(cmd, func(ctx context.Context, s *store.Store) error {
			sn, err := s.CreateSnapshot(ctx, volumeArg(args[0]), args[1])
			if err != nil {
				return err
			}
			if out.json() {
				return printJSON(cmd.OutOrStdout(), sn)
			}
			return printSnapshots(cmd, out, []store.Snapshot{sn})
		})
	}
	return cmd
}

func newSnapshotLsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "ls VOLUME",
		Short:   "List a volume's snapshots",
		Long:    `List the snapshots of VOLUME, oldest first (-o json: a JSON array of {"name", "volume", "ts", "created"}).`,
		Example: `  weft snapshot ls --data /var/lib/weft shadows`,
		Args:    cobra.ExactArgs(1),
	}
	out := addOutputFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return withStore(cmd, func(ctx context.Context, s *store.Store) error {
			snaps, err := s.Snapshots(ctx, volumeArg(args[0]))
			if err != nil {
				return err
			}
			return printSnapshots(cmd, out, snaps)
		})
	}
	return cmd
}

func newSnapshotDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "delete VOLUME NAME",
		Short:   "Delete a snapshot",
		Long:    `Delete snapshot NAME of VOLUME; the data only it kept becomes garbage.`,
		Example: `  weft snapshot delete --data /var/lib/weft shadows before-upgrade`,
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withStore(cmd, func(ctx context.Context, s *store.Store) error {
				return s.DeleteSnapshot(ctx, volumeArg(args[0]), args[1])
			})
		},
	}
}
