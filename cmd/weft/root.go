package main

import (
	"fmt"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "weft",
		Short:         "Weft: an edge-to-core IoT data fabric",
		Long:          "Weft connects devices over mutual-TLS MQTT to edge nodes that store,\nfilter and replicate their data over QUIC to core nodes.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newVersionCmd(),
		newLsCmd(), newRmCmd(), newVolumeCmd(), newStreamCmd(), newTableCmd(), newFsCmd(), newSnapshotCmd(),
		newCertsCmd(), newTokenCmd(), newEdgeCmd(), newCoreCmd(), newBenchCmd(), newDeviceCmd(), newUpCmd(), newMirrorCmd(), newStoreCmd())
	root.AddCommand(newAnomalyCmd())
	root.AddCommand(newConfigCmd())
	root.AddCommand(newFirmwareCmd())
	root.AddCommand(newModelCmd())
	addRemoteCmds(root)
	needSubcommand(root)
	// A command that only groups others shows no usage line of its own.
	root.SetUsageTemplate(strings.Replace(root.UsageTemplate(), "Usage:{{if .Runnable}}", "Usage:{{if and .Runnable (not .HasAvailableSubCommands)}}", 1))
	return root
}

// needSubcommand makes every command of the tree under cmd that only
// groups subcommands (weft, weft stream, weft volume...) print its help
// on stderr and fail when run without one, or with one it does not have;
// cobra would print the help and exit 0.
func needSubcommand(cmd *cobra.Command) {
	for _, c := range cmd.Commands() {
		needSubcommand(c)
	}
	if !cmd.HasSubCommands() || cmd.Run != nil || cmd.RunE != nil {
		return
	}
	// Any arguments reach needCommand, which names the unknown command.
	// It runs as PreRunE, which cobra calls before it checks the flags a
	// group makes required for its subcommands (weft certs --dir); RunE
	// makes the command runnable.
	cmd.Args = cobra.ArbitraryArgs
	cmd.PreRunE = needCommand
	cmd.RunE = needCommand
}

// needCommand prints cmd's help on stderr and fails.
func needCommand(cmd *cobra.Command, args []string) error {
	cmd.SetOut(cmd.ErrOrStderr())
	if err := cmd.Help(); err != nil {
		return err
	}
	if len(args) > 0 {
		return fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath())
	}
	return fmt.Errorf("%s needs a command", cmd.CommandPath())
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of this binary",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := version
			if bi, ok := debug.ReadBuildInfo(); ok && v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
				v = bi.Main.Version
			}
			fmt.Fprintf(cmd.OutOrStdout(), "weft %s\n", v)
			return nil
		},
	}
}
