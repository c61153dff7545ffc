package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/weft-io/weft/store"
)

// This file holds weft table: documents by key, with versions.

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

// docArg is the JSON given as the third argument, after the table and
// the key, or stdin; noun names it in the error when it is not valid JSON.
func docArg(cmd *cobra.Command, args []string, noun string) (json.RawMessage, error) {
	if len(args) == 3 {
		return json.RawMessage(args[2]), checkJSON(noun+" (argument 3)", []byte(args[2]))
	}
	b, err := io.ReadAll(cmd.InOrStdin())
	if err != nil {
		return nil, fmt.Errorf("read stdin: %w", err)
	}
	return json.RawMessage(b), checkJSON(noun+" on stdin", b)
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
	writeDoc(cmd, "the document", (*store.Table).Put)
	return cmd
}

// writeDoc adds --if-version to cmd and makes it write the document of its
// arguments (or stdin), called noun in errors, with write, printing the
// result.
func writeDoc(cmd *cobra.Command, noun string, write func(t *store.Table, ctx context.Context, key string, doc json.RawMessage, conds ...store.Cond) (store.Doc, error)) {
	conds := addIfVersion(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		doc, err := docArg(cmd, args, noun)
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
	writeDoc(cmd, "the merge patch", (*store.Table).Patch)
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
