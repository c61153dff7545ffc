package main

import (
	"context"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/weft-io/weft/store"
)

// This file holds weft volume: create volumes and change their policies.

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
keep their values, read and written in one transaction so that a change
made meanwhile is not undone. --ttl 0 keeps data forever, --quota 0
removes the quota, --drop-oldest=false makes writes past the quota fail
again.`,
		Example: `  weft volume set --data /var/lib/weft sensors --ttl 24h
  weft volume set --data /var/lib/weft uplink --quota 512MiB --drop-oldest`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			fl := cmd.Flags()
			if !fl.Changed("ttl") && !fl.Changed("quota") && !fl.Changed("drop-oldest") {
				return errors.New("nothing to change: give --ttl, --quota or --drop-oldest")
			}
			var change store.VolumeChange
			if fl.Changed("ttl") {
				change.TTL = &f.ttl
			}
			if fl.Changed("quota") {
				change.Quota = (*int64)(&f.quota)
			}
			if fl.Changed("drop-oldest") {
				change.DropOldest = &f.dropOldest
			}
			return withStore(cmd, func(ctx context.Context, s *store.Store) error {
				_, err := s.ChangeVolume(ctx, volumeArg(args[0]), change)
				return err
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
