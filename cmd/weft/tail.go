package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/weft-io/weft/api"
	"github.com/weft-io/weft/internal/apiclient"
)

// This file holds weft stream tail: follow a topic of a running node.

func newStreamTailCmd() *cobra.Command {
	var topic string
	var part int
	var from int64
	cmd := &cobra.Command{
		Use:   "tail /volume/stream --topic T",
		Short: "Follow a topic of a running node's stream, through its API",
		Long: `Follow one partition of a topic of a stream on a running node (see weft
login), printing each message as it is appended, until Ctrl-C. It starts
with the next message appended, or at --from. Unlike the other stream
commands it does not open a data directory: it reads the node's event
stream (GET /api/v1/streams/{volume}/{stream}/tail), reconnecting where it
left off when the node ends the stream.

Output is as weft stream read prints it: offset<TAB>key<TAB>value, or with
-o json one message object per line. Messages that retention removed
before they could be sent are reported on stderr.`,
		Example: `  weft stream tail /telemetry/by_device --topic pump-7
  weft stream tail /audit/events --topic core-1 --from 0 -o json`,
		Args: cobra.ExactArgs(1),
	}
	rf := addRemoteFlags(cmd)
	out := addOutputFlag(cmd)
	cmd.Flags().StringVar(&topic, "topic", "", "topic to follow (required)")
	cmd.Flags().IntVar(&part, "partition", 0, "partition to follow")
	cmd.Flags().Int64Var(&from, "from", -1, "first offset to print (default: the next message appended)")
	_ = cmd.MarkFlagRequired("topic")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		vol, name, ok := strings.Cut(strings.TrimPrefix(args[0], "/"), "/")
		if !ok || vol == "" || name == "" || strings.Contains(name, "/") {
			return fmt.Errorf("%q: want /volume/stream (the API tails streams whose name is one segment)", args[0])
		}
		c, err := rf.client()
		if err != nil {
			return err
		}
		ctx := cmd.Context()
		w := bufio.NewWriter(cmd.OutOrStdout())
		q := url.Values{"topic": {topic}, "partition": {strconv.Itoa(part)}}
		if from >= 0 {
			q.Set("from", strconv.FormatInt(from, 10))
		}
		path := "/api/v1/streams/" + url.PathEscape(vol) + "/" + url.PathEscape(name) + "/tail"
		for {
			heard := false
			err := c.Events(ctx, apiclient.Request{Path: path, Query: q}, func(ev apiclient.Event) error {
				heard = true
				switch ev.Type {
				case "message":
					var m api.Message
					if err := json.Unmarshal(ev.Data, &m); err != nil {
						return fmt.Errorf("event %s: %w", ev.ID, err)
					}
					if err := printTailed(w, *out, m, ev.Data); err != nil {
						return err
					}
					q.Set("from", strconv.FormatUint(m.Offset+1, 10))
				case "trimmed":
					var t struct {
						From         uint64 `json:"from"`
						LowWaterMark uint64 `json:"low_water_mark"`
					}
					if err := json.Unmarshal(ev.Data, &t); err == nil {
						fmt.Fprintf(cmd.ErrOrStderr(), "offsets %d to %d were removed by retention before they were sent\n", t.From, t.LowWaterMark-1)
						q.Set("from", strconv.FormatUint(t.LowWaterMark, 10))
					}
				}
				return w.Flush()
			})
			if err != nil || ctx.Err() != nil {
				return err
			}
			// The node ended the stream (it does after an hour, or when
			// it shuts down). Go on where it stopped, unless it ended
			// one that had not started.
			if !heard {
				return fmt.Errorf("the node ended the event stream of %s", args[0])
			}
		}
	}
	return cmd
}

// printTailed writes a tailed message as weft stream read does.
func printTailed(w *bufio.Writer, out outputFormat, m api.Message, raw []byte) error {
	if out.json() {
		_, err := fmt.Fprintf(w, "%s\n", raw)
		return err
	}
	sm, err := m.Decode()
	if err != nil {
		return err
	}
	k := "-"
	if len(sm.Key) > 0 {
		k = printable(sm.Key)
	}
	_, err = fmt.Fprintf(w, "%d\t%s\t%s\n", sm.Offset, k, printable(sm.Value))
	return err
}
