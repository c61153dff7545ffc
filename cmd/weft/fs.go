package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/weft-io/weft/store"
)

// This file holds weft fs: copy files into and out of the store.

func newFsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "fs",
		Short: "Copy files into and out of the store",
		Long: `Files in the store are stored in chunks with their size and SHA-256, which
is checked when they are read. They are streamed in both directions, never
held whole in memory.`,
	}
	addDataFlag(cmd)
	cmd.AddCommand(newFsPutCmd(), newFsGetCmd())
	return cmd
}

func newFsPutCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "put LOCALFILE /volume/path",
		Short: "Copy a local file into the store",
		Long: `Copy LOCALFILE ("-" for stdin) to a file in the store, creating it or
replacing its content; readers see the old content until the new one is
complete. Prints the path, size in bytes and SHA-256 of what was stored
(-o json: the file's description).`,
		Example: `  weft fs put --data /var/lib/weft model.onnx /models/vision/v3.onnx
  tar c config | weft fs put --data /var/lib/weft - /firmware/config.tar`,
		Args: cobra.ExactArgs(2),
	}
	out := addOutputFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		var src io.Reader = cmd.InOrStdin()
		if args[0] != "-" {
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			src = f
		}
		return withStore(cmd, func(ctx context.Context, s *store.Store) error {
			info, err := s.File(args[1]).Write(ctx, src)
			if err != nil {
				return err
			}
			if out.json() {
				return printJSON(cmd.OutOrStdout(), info)
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s\t%d\t%s\n", info.Path, info.Size, info.SHA256)
			return err
		})
	}
	return cmd
}

func newFsGetCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "get /volume/path LOCALFILE",
		Short: "Copy a file out of the store",
		Long: `Copy a file of the store to LOCALFILE ("-" for stdout). The content is
checked against the recorded size and SHA-256 as it is read; on a mismatch
the command fails and removes LOCALFILE. --snapshot NAME copies the file as
it was in that snapshot of its volume.`,
		Example: `  weft fs get --data /var/lib/weft /models/vision/v3.onnx model.onnx
  weft fs get --data /var/lib/weft --snapshot nightly /firmware/config.tar - | tar t`,
		Args: cobra.ExactArgs(2),
	}
	view := addSnapshotFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return withStore(cmd, func(ctx context.Context, s *store.Store) error {
			r, err := view(s, args[0])
			if err != nil {
				return err
			}
			rc, _, err := r.File(args[0]).Open(ctx)
			if err != nil {
				return err
			}
			defer rc.Close()
			if args[1] == "-" {
				_, err := io.Copy(cmd.OutOrStdout(), rc)
				return err
			}
			f, err := os.Create(args[1])
			if err != nil {
				return err
			}
			_, err = io.Copy(f, rc)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				os.Remove(args[1])
			}
			return err
		})
	}
	return cmd
}
