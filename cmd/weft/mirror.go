package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	"github.com/weft-io/weft/store"
	"github.com/weft-io/weft/sync/mirror"
)

func newMirrorCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "mirror",
		Short: "Volume mirrors an edge keeps over its link to the core",
		Long: `A volume mirror keeps a volume at the edge a copy of the core's (models,
firmware), or a copy of an edge volume at the core (training data, which
lands in the core's volume <volume>.<edge>). The source snapshots the
volume and sends what changed since the last update; the edge stages it and
shows it all at once, so a reader never sees half an update. Mirrors
recorded here are started by 'weft edge' with --core; --mirror does the
same for one run.`,
	}
	var from, to string
	add := &cobra.Command{
		Use:     "add",
		Short:   "Record a volume mirror in an edge's data directory",
		Long:    "Record a volume mirror: --from core:/<volume> mirrors the core's volume down, --from up:/<volume> mirrors the edge's volume up. --to is the local volume, of the same name.",
		Example: "  weft mirror add --data D --from core:/models --to /models",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd, func(ctx context.Context, st *store.Store) error {
				spec, err := mirror.Add(ctx, st, from, to)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "mirror %s recorded\n", spec)
				return nil
			})
		},
	}
	add.Flags().StringVar(&from, "from", "", "core:/<volume> or up:/<volume> (required)")
	add.Flags().StringVar(&to, "to", "", "the local volume, /<volume>")
	add.MarkFlagRequired("from")
	ls := &cobra.Command{
		Use:     "ls",
		Short:   "List the volume mirrors recorded in an edge's data directory",
		Long:    "List the volume mirrors recorded in an edge's data directory, one per line.",
		Example: "  weft mirror ls --data D",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd, func(ctx context.Context, st *store.Store) error {
				specs, err := mirror.List(ctx, st)
				if err != nil {
					return err
				}
				for _, s := range specs {
					fmt.Fprintln(cmd.OutOrStdout(), s)
				}
				return nil
			})
		},
	}
	rm := &cobra.Command{
		Use:     "rm VOLUME",
		Short:   "Forget a volume mirror",
		Long:    "Forget the volume mirror of VOLUME; what was mirrored stays.",
		Example: "  weft mirror rm --data D /models",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withStore(cmd, func(ctx context.Context, st *store.Store) error { return mirror.Remove(ctx, st, args[0]) })
		},
	}
	for _, c := range []*cobra.Command{add, ls, rm} {
		addDataFlag(c)
		cmd.AddCommand(c)
	}
	return cmd
}
