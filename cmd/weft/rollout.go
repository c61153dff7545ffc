package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/weft-io/weft/firmware"
	"github.com/weft-io/weft/internal/apiclient"
)

// This file holds weft firmware rollout: firmware rollouts through a
// node's API. weft firmware adds it with newFirmwareRolloutCmd.

func newFirmwareRolloutCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rollout",
		Short: "Roll a firmware release out in waves, and pause, resume or abort it",
		Long: `A rollout sends a release to its target's devices in cumulative waves (such
as 1%, 10%, 50%, 100%) and halts on its own, with a reason, when failed,
timed-out and rejected devices exceed the failure threshold once enough
have finished. These commands call /api/v1/firmware/rollouts on the core;
every one takes -o json. See docs/firmware.md#rollouts.`,
	}
	rf := addRemoteFlags(cmd)
	cmd.AddCommand(newRolloutCreateCmd(rf), newRolloutLsCmd(rf), newRolloutGetCmd(rf))
	for _, action := range []struct{ name, short string }{
		{"pause", "Pause a running rollout: nothing more is sent until resume"},
		{"resume", "Resume a paused or halted rollout"},
		{"abort", "Abort a rollout: devices that have not started are canceled"},
	} {
		cmd.AddCommand(newRolloutActionCmd(rf, action.name, action.short))
	}
	return cmd
}

// rolloutPath is the route of a rollout, and what follows it.
func rolloutPath(id, rest string) string {
	return "/api/v1/firmware/rollouts/" + url.PathEscape(id) + rest
}

// rolloutColumns are the columns of a rollout in a table.
var rolloutColumns = []column{
	field("ID", "id"), field("RELEASE", "release"), field("TARGET", "target"), field("STATE", "state"),
	field("DEVICES", "devices"), field("SUCCEEDED", "counts.succeeded"), field("FAILED", "counts.failed"),
	field("TIMED-OUT", "counts.timed_out"), field("REJECTED", "counts.rejected"), field("CREATED", "created"),
}

// printRollout writes a rollout: its row, its waves with a progress bar
// each, and its halt reason; or the whole object as JSON or YAML.
func printRollout(w io.Writer, format listFormat, m map[string]any) error {
	if err := printOne(w, format, m, rolloutColumns); err != nil || format != "table" {
		return err
	}
	var r firmware.Summary
	b, _ := json.Marshal(m)
	if err := json.Unmarshal(b, &r); err != nil {
		return err
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WAVE\tPERCENT\tDEVICES\tSTATE\tPROGRESS\tCOUNTS")
	for i, wv := range r.Waves {
		fmt.Fprintf(tw, "%d\t%d%%\t%d\t%s\t%s\t%s\n", i+1, wv.Percent, wv.Devices, wv.State, progressBar(wv.Counts, 20), countsText(wv.Counts))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if r.HaltReason != "" {
		fmt.Fprintf(w, "\nhalted: %s\n", r.HaltReason)
	}
	return nil
}

// progressBar draws the finished share of counts in width cells: '#' for
// succeeded, 'x' for failed, timed out or rejected, '-' for canceled, '.'
// for the rest.
func progressBar(c firmware.Counts, width int) string {
	total := c.Total()
	if total == 0 {
		return "[" + strings.Repeat(" ", width) + "]"
	}
	cells := func(n int) int { return (n*width + total/2) / total }
	ok, bad, canceled := cells(c.Succeeded), cells(c.Failures()), cells(c.Canceled)
	ok = min(ok, width)
	bad = min(bad, width-ok)
	canceled = min(canceled, width-ok-bad)
	return "[" + strings.Repeat("#", ok) + strings.Repeat("x", bad) + strings.Repeat("-", canceled) +
		strings.Repeat(".", width-ok-bad-canceled) + "]"
}

// countsText lists the counts that are not zero, "-" if none.
func countsText(c firmware.Counts) string {
	var parts []string
	for _, p := range []struct {
		name string
		n    int
	}{{"queued", c.Queued}, {"downloading", c.Downloading}, {"installing", c.Installing}, {"succeeded", c.Succeeded},
		{"failed", c.Failed}, {"timed_out", c.TimedOut}, {"rejected", c.Rejected}, {"canceled", c.Canceled}} {
		if p.n > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", p.name, p.n))
		}
	}
	if parts == nil {
		return "-"
	}
	return strings.Join(parts, " ")
}

func newRolloutCreateCmd(rf *remoteFlags) *cobra.Command {
	var f struct {
		release, target, waves, threshold, timeout, soak string
		minExecuted                                      int
	}
	cmd := &cobra.Command{
		Use:   "create --release NAME@VERSION --target all|class:CLASS|device:ID[,ID...]",
		Short: "Start a rollout of a published release",
		Long: `create starts a rollout (POST /api/v1/firmware/rollouts, operator role) and
prints it with its id. The target is narrowed to the devices of the
release's class (and device list). Wave i takes the first --waves[i]
percent of them, in an order fixed by the rollout's id; a wave starts when
the previous one has finished and soaked for --wave-soak. A device not
finished --device-timeout after its announcement counts as timed out. Once
--min-executed devices have finished, the rollout halts when failed +
timed out + rejected exceed --failure-threshold of them.`,
		Example: `  weft firmware rollout create --release sensor-fw@1.2.0 --target class:pump \
      --waves 1,10,50,100 --failure-threshold 10% --min-executed 5 --device-timeout 15m --wave-soak 10m`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			waves, err := firmware.ParseWaves(f.waves)
			if err != nil {
				return fmt.Errorf("--waves: %w", err)
			}
			if _, err := firmware.ParseThreshold(f.threshold); err != nil {
				return fmt.Errorf("--failure-threshold: %w", err)
			}
			if _, err := firmware.ParseTarget(f.target); err != nil {
				return fmt.Errorf("--target: %w", err)
			}
			if _, _, err := firmware.ParseRelease(f.release); err != nil {
				return fmt.Errorf("--release: %w", err)
			}
			body, err := json.Marshal(map[string]any{"release": f.release, "target": f.target, "waves": waves,
				"failure_threshold": f.threshold, "min_executed": f.minExecuted, "device_timeout": f.timeout, "wave_soak": f.soak})
			if err != nil {
				return err
			}
			c, err := rf.client()
			if err != nil {
				return err
			}
			var out map[string]any
			if _, err := c.Do(cmd.Context(), apiclient.Request{Method: http.MethodPost, Path: "/api/v1/firmware/rollouts", Body: body}, &out); err != nil {
				return err
			}
			return printRollout(cmd.OutOrStdout(), *outputOf(cmd), out)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.release, "release", "", "release to roll out, NAME@VERSION (required)")
	fl.StringVar(&f.target, "target", "", "devices: all, class:CLASS or device:ID[,ID...] (required)")
	fl.StringVar(&f.waves, "waves", "1,10,50,100", "cumulative percentages of the target, the last 100")
	fl.StringVar(&f.threshold, "failure-threshold", "10%", "percentage of executed devices that may fail before the rollout halts")
	fl.IntVar(&f.minExecuted, "min-executed", 1, "devices that must finish before the threshold applies")
	fl.StringVar(&f.timeout, "device-timeout", "1h", "how long a device may take from its announcement before it counts as timed out")
	fl.StringVar(&f.soak, "wave-soak", "0s", "how long a finished wave waits before the next starts")
	cmd.MarkFlagRequired("release")
	cmd.MarkFlagRequired("target")
	addListOutput(cmd)
	return cmd
}

// outputOf is the -o of cmd.
func outputOf(cmd *cobra.Command) *listFormat {
	return cmd.Flags().Lookup("output").Value.(*listFormat)
}

func newRolloutLsCmd(rf *remoteFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "ls",
		Short:   "List rollouts, newest first",
		Example: `  weft firmware rollout ls -o json`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := rf.client()
			if err != nil {
				return err
			}
			var resp struct {
				Rollouts []any `json:"rollouts"`
			}
			if err := c.Get(cmd.Context(), "/api/v1/firmware/rollouts", nil, &resp); err != nil {
				return err
			}
			return printItems(cmd.OutOrStdout(), *outputOf(cmd), resp.Rollouts, rolloutColumns)
		},
	}
	addListOutput(cmd)
	return cmd
}

func newRolloutGetCmd(rf *remoteFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "get ID",
		Short:   "Print a rollout: its waves, counts by state and halt reason",
		Example: `  weft firmware rollout get k3x7q2m9b4d8n6vt`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := rf.client()
			if err != nil {
				return err
			}
			var out map[string]any
			if err := c.Get(cmd.Context(), rolloutPath(args[0], ""), nil, &out); err != nil {
				return err
			}
			return printRollout(cmd.OutOrStdout(), *outputOf(cmd), out)
		},
	}
	addListOutput(cmd)
	return cmd
}

func newRolloutActionCmd(rf *remoteFlags, action, short string) *cobra.Command {
	cmd := &cobra.Command{
		Use:     action + " ID",
		Short:   short,
		Example: "  weft firmware rollout " + action + " k3x7q2m9b4d8n6vt",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := rf.client()
			if err != nil {
				return err
			}
			var out map[string]any
			if _, err := c.Do(cmd.Context(), apiclient.Request{Method: http.MethodPost, Path: rolloutPath(args[0], "/"+action)}, &out); err != nil {
				return err
			}
			return printRollout(cmd.OutOrStdout(), *outputOf(cmd), out)
		},
	}
	addListOutput(cmd)
	return cmd
}
