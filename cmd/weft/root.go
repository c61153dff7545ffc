package main

import (
	"fmt"
	"runtime/debug"

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
		newCertsCmd(), newTokenCmd(), newEdgeCmd(), newCoreCmd(), newBenchCmd(), newDeviceCmd(), newUpCmd(), newMirrorCmd())
	return root
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
