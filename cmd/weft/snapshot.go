package main

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/weft-io/weft/store"
)

// This file holds weft snapshot, and the --snapshot flag of the commands
// that read.

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
