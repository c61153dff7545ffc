package main

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/weft-io/weft/store"
)

// This file holds ls and rm: list and delete the objects of a store.

func newLsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ls [/volume[/dir]]",
		Short: "List volumes, or the objects of a volume or directory",
		Long: `List the children of a path: with no path (or "/") the volumes, with
/volume the top of a volume, with /volume/dir a directory. Objects deeper
down appear as their directory; a path naming an object lists just it.

Text output has the columns PATH, KIND, SIZE, TTL and MODIFIED. SIZE is the
bytes used by a volume, the size of a file, or the partition count of a
stream. TTL is the retention of a volume or stream ("-" for none: kept for
ever); the audit volume keeps 400 days unless set otherwise. MODIFIED is
when a file was last written, or when the object was created for kinds that
do not record changes. -o json prints a JSON array of
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
			fmt.Fprintln(tw, "PATH\tKIND\tSIZE\tTTL\tMODIFIED")
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
				ttl := "-"
				if in.Kind == store.KindVolume || in.Kind == store.KindStream {
					ttl = formatTTL(in.TTL)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", in.Path, in.Kind, size, ttl, formatTime(mod))
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
