package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/weft-io/weft/api"
	"github.com/weft-io/weft/store"
)

// This file holds weft stream: create, append to, read and list the
// topics of streams.

// "stream append" commits stdin in groups of at most appendLines lines and
// about appendBytes bytes.
const (
	appendLines = 1000
	appendBytes = 1 << 20
)

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
