package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/weft-io/weft/internal/apiclient"
)

// This file holds weft edges, weft anomalies and weft audit: the fleet's
// edges, detections and audit trail through a node's API.

func newEdgesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "edges",
		Short: "List the edges of the fleet, through a node's API",
	}
	rf := addRemoteFlags(cmd)
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List the edges: their devices and, on a node that has them, sync links",
		Long: `List the edges of the devices the token may see, with how many of their
devices are connected, out of sync and anomalous; on a node that runs sync
links (the core), also the link's state, replication lag in seconds,
backlog and dropped messages.`,
		Args: cobra.NoArgs,
	}
	out := addListOutput(ls)
	ls.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := rf.client()
		if err != nil {
			return err
		}
		var resp struct {
			Edges []any `json:"edges"`
		}
		if err := c.Get(cmd.Context(), "/api/v1/edges", nil, &resp); err != nil {
			return err
		}
		return printItems(cmd.OutOrStdout(), *out, resp.Edges, []column{
			field("NAME", "name"), field("DEVICES", "devices"), field("CONNECTED", "connected"),
			field("OUT-OF-SYNC", "out_of_sync"), field("ANOMALOUS", "anomalous"),
			field("LINK", "link.state"), field("LAG-S", "link.lag_seconds"), field("BACKLOG", "link.backlog"),
			field("DROPPED", "link.dropped"), field("LAST-CONTACT", "link.last_contact"),
		})
	}
	cmd.AddCommand(ls)
	return cmd
}

func newAnomaliesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "anomalies",
		Short: "List the anomalies the edges detected, through a node's API",
	}
	rf := addRemoteFlags(cmd)
	var device, edge string
	var limit int
	ls := &cobra.Command{
		Use:   "ls [--since 1h | --from TIME [--to TIME]] [--device ID] [--edge NAME]",
		Short: "List anomalies, newest first",
		Long: `List the anomalies the edges detected and sent up, newest first: the
latest --limit (at most 1000) of the range, of one device or one edge if
given. When the range holds more, a line on stderr says so; narrow the
range (--to the oldest time listed) to see the rest.`,
		Example: `  weft anomalies ls --since 24h --edge truck-7`,
		Args:    cobra.NoArgs,
	}
	rng := addSinceFlags(ls)
	ls.Flags().StringVar(&device, "device", "", "anomalies of this device")
	ls.Flags().StringVar(&edge, "edge", "", "anomalies detected by this edge")
	ls.Flags().IntVar(&limit, "limit", 100, "most anomalies to list, 1 to 1000")
	out := addListOutput(ls)
	ls.RunE = func(cmd *cobra.Command, _ []string) error {
		if limit < 1 || limit > 1000 {
			return fmt.Errorf("--limit %d: want 1 to 1000", limit)
		}
		q := url.Values{"limit": {strconv.Itoa(limit)}}
		if _, err := rng.query(q, time.Now()); err != nil {
			return err
		}
		if device != "" {
			q.Set("device", device)
		}
		if edge != "" {
			q.Set("edge", edge)
		}
		c, err := rf.client()
		if err != nil {
			return err
		}
		var resp struct {
			Anomalies []any `json:"anomalies"`
			More      bool  `json:"more"`
		}
		if err := c.Get(cmd.Context(), "/api/v1/anomalies", q, &resp); err != nil {
			return err
		}
		if err := printItems(cmd.OutOrStdout(), *out, resp.Anomalies, []column{
			field("AT", "at"), field("DEVICE", "device"), field("CLASS", "class"), field("EDGE", "edge"),
			field("CHANNEL", "channel"), field("DETECTOR", "detector"), field("SCORE", "score"), field("VALUE", "value"),
		}); err != nil {
			return err
		}
		if resp.More {
			fmt.Fprintf(cmd.ErrOrStderr(), "the range holds more anomalies than the %d listed\n", len(resp.Anomalies))
		}
		return nil
	}
	cmd.AddCommand(ls)
	return cmd
}

// auditColumns are the columns of an audit record in a table.
var auditColumns = []column{
	field("TIME", "ts"), field("NODE", "node"), field("SUBJECT", "subject"),
	field("ACTION", "action"), field("OBJECT", "object"), field("DETAIL", "detail"),
}

// auditFlags select audit records.
type auditFlags struct {
	subject, object string
	limit           int
}

func (f *auditFlags) add(cmd *cobra.Command, limit int) {
	cmd.Flags().StringVar(&f.subject, "subject", "", "records of this caller (a token's subject)")
	cmd.Flags().StringVar(&f.object, "object", "", "records of objects under this path (/shadows for every shadow change)")
	cmd.Flags().IntVar(&f.limit, "limit", limit, "most records to list")
}

func (f *auditFlags) query() url.Values {
	q := url.Values{}
	if f.subject != "" {
		q.Set("subject", f.subject)
	}
	if f.object != "" {
		q.Set("object", f.object)
	}
	return q
}

// auditReader reads audit records page after page: each page starts at
// the time of the last record read, and skips the records of that instant
// it has already returned.
type auditReader struct {
	c    *apiclient.Client
	q    url.Values
	last string          // the time of the last record returned
	seen map[string]bool // the records returned at that time
}

// page reads up to limit records after those already read. more says
// that the range holds more than were returned.
func (r *auditReader) page(ctx context.Context, limit int) (recs []any, more bool, err error) {
	r.q.Set("limit", strconv.Itoa(min(limit, 10000)))
	if r.last != "" {
		r.q.Set("from", r.last)
	}
	var resp struct {
		Records []json.RawMessage `json:"records"`
		More    bool              `json:"more"`
	}
	if err := r.c.Get(ctx, "/api/v1/audit", r.q, &resp); err != nil {
		return nil, false, err
	}
	for _, raw := range resp.Records {
		var rec map[string]any
		if err := decodeNumbers(raw, &rec); err != nil {
			return nil, false, fmt.Errorf("audit record %s: %w", raw, err)
		}
		ts, _ := rec["ts"].(string)
		if ts == r.last && r.seen[string(raw)] {
			continue
		}
		if ts != r.last {
			r.last, r.seen = ts, map[string]bool{}
		}
		r.seen[string(raw)] = true
		recs = append(recs, rec)
	}
	return recs, resp.More, nil
}

// decodeNumbers decodes JSON keeping numbers as they are written.
func decodeNumbers(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	return dec.Decode(v)
}

func newAuditCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Read the audit trail, through a node's API (admin)",
	}
	rf := addRemoteFlags(cmd)
	cmd.AddCommand(newAuditLsCmd(rf), newAuditTailCmd(rf))
	return cmd
}

func newAuditLsCmd(rf *remoteFlags) *cobra.Command {
	var f auditFlags
	cmd := &cobra.Command{
		Use:   "ls [--since 1h | --from TIME [--to TIME]] [--subject S] [--object PATH]",
		Short: "List audit records, oldest first",
		Long: `List the node's audit records (every node's, on a core), oldest first.
With --since or --from, the first --limit records of the range, read page
after page (0: all); without, the latest --limit before --to (or now).
Needs an admin token.`,
		Example: `  weft audit ls --since 24h --object /shadows
  weft audit ls --subject alice -o yaml`,
		Args: cobra.NoArgs,
	}
	rng := addSinceFlags(cmd)
	f.add(cmd, 100)
	out := addListOutput(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		q := f.query()
		hasFrom, err := rng.query(q, time.Now())
		if err != nil {
			return err
		}
		if f.limit < 0 || (!hasFrom && (f.limit == 0 || f.limit > 10000)) {
			return fmt.Errorf("--limit %d: want 1 to 10000 (0, all, or more need --since or --from)", f.limit)
		}
		c, err := rf.client()
		if err != nil {
			return err
		}
		r := &auditReader{c: c, q: q}
		var items []any
		for {
			n := 10000
			if f.limit > 0 {
				n = f.limit - len(items)
			}
			recs, more, err := r.page(cmd.Context(), n)
			if err != nil {
				return err
			}
			items = append(items, recs...)
			if !more || !hasFrom || len(recs) == 0 || (f.limit > 0 && len(items) >= f.limit) {
				break
			}
		}
		return printItems(cmd.OutOrStdout(), *out, items, auditColumns)
	}
	return cmd
}

func newAuditTailCmd(rf *remoteFlags) *cobra.Command {
	var f auditFlags
	var follow bool
	var interval time.Duration
	cmd := &cobra.Command{
		Use:   "tail [-f] [--subject S] [--object PATH]",
		Short: "Print the latest audit records, and with -f the new ones as they come",
		Long: `Print the latest --limit audit records; with --follow, go on asking the
node every --interval for newer ones and print them as they come, until
Ctrl-C. Text output is one record per line: time, node, subject, action,
object and detail; -o json prints one JSON object per line. Needs an admin
token.`,
		Example: `  weft audit tail -f --object /shadows`,
		Args:    cobra.NoArgs,
	}
	f.add(cmd, 10)
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "print new records as they come, until Ctrl-C")
	cmd.Flags().DurationVar(&interval, "interval", 2*time.Second, "how often --follow asks for new records")
	var out outputFormat = "text"
	cmd.Flags().VarP(&out, "output", "o", "output format: text or json (one object per line)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if f.limit < 1 {
			return fmt.Errorf("--limit %d: want at least 1", f.limit)
		}
		if interval <= 0 {
			return fmt.Errorf("--interval %v: want a positive duration", interval)
		}
		c, err := rf.client()
		if err != nil {
			return err
		}
		ctx := cmd.Context()
		w := cmd.OutOrStdout()
		r := &auditReader{c: c, q: f.query()}
		recs, _, err := r.page(ctx, f.limit)
		if err != nil {
			return err
		}
		print := func(recs []any) error {
			for _, rec := range recs {
				m, _ := rec.(map[string]any)
				if out.json() {
					if err := printJSON(w, rec); err != nil {
						return err
					}
					continue
				}
				cells := make([]any, len(auditColumns))
				for i, col := range auditColumns {
					cells[i] = col.cell(m)
				}
				if _, err := fmt.Fprintf(w, "%s  %s  %s  %s  %s  %s\n", cells...); err != nil {
					return err
				}
			}
			return nil
		}
		if err := print(recs); err != nil || !follow {
			return err
		}
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
			}
			for {
				recs, more, err := r.page(ctx, 1000)
				if ctx.Err() != nil {
					return nil
				}
				if err != nil {
					return err
				}
				if err := print(recs); err != nil {
					return err
				}
				if !more || len(recs) == 0 {
					break
				}
			}
		}
	}
	return cmd
}
