package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/weft-io/weft/store"
)

func newStoreBackupCmd() *cobra.Command {
	var out string
	var since uint64
	cmd := &cobra.Command{
		Use:   "backup DATA [-o FILE] [--since VERSION]",
		Short: "Write a backup of a stopped node's store",
		Long: `Write a backup of the store in DATA: every stream, table, file, volume
policy and snapshot, as Badger's backup stream, a consistent copy at the
store's last commit. -o names the file (written whole, then renamed into
place); without it the backup goes to standard output. The last line on
standard error gives the backup's version: pass it as --since to the next
backup to write only what changed after it (an incremental backup).
Restore with weft store restore. The node must be stopped. See
docs/operations.md#backup-and-restore.`,
		Example: `  weft store backup /var/lib/weft -o weft-full.bak
  weft store backup /var/lib/weft --since 48211 -o weft-incr-1.bak`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return openStore(args[0], func(ctx context.Context, s *store.Store) error {
				var version uint64
				write := func(w io.Writer) (err error) {
					version, err = s.Backup(w, since)
					return err
				}
				var err error
				if out == "" || out == "-" {
					err = write(cmd.OutOrStdout())
				} else {
					err = writeFileAtomic(out, write)
				}
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(cmd.ErrOrStderr(), "backed up %s to version %d (next: --since %d)\n", args[0], version, version)
				return err
			})
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "file to write the backup to (default: standard output)")
	cmd.Flags().Uint64Var(&since, "since", 0, "write only what changed after this version, printed by the previous backup (default: everything)")
	return cmd
}

// writeFileAtomic writes path through write: to a temporary file beside
// it, synced, then renamed over path, so that path is never half written.
func writeFileAtomic(path string, write func(io.Writer) error) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := write(f); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

func newStoreRestoreCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "restore DATA FILE [FILE...]",
		Short: "Restore a store from backups into an empty data directory",
		Long: `Restore the backups made by weft store backup into DATA, which must be
empty or absent: the full backup first, then the incremental ones in the
order they were made. "-" reads standard input. Start the node on DATA
afterwards; it finds its store as it was at the last backup. An edge
restored to a backup older than what its core holds sends nothing of a
partition until it passes the core's offsets (it logs "replica is ahead
of its source"). See docs/operations.md#backup-and-restore.`,
		Example: `  weft store restore /var/lib/weft weft-full.bak weft-incr-1.bak`,
		Args:    cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var rs []io.Reader
			for _, name := range args[1:] {
				if name == "-" {
					rs = append(rs, cmd.InOrStdin())
					continue
				}
				f, err := os.Open(name)
				if err != nil {
					return err
				}
				defer f.Close()
				rs = append(rs, f)
			}
			if err := store.Restore(args[0], rs...); err != nil {
				return err
			}
			_, err := fmt.Fprintf(cmd.ErrOrStderr(), "restored %d backup(s) into %s\n", len(rs), args[0])
			return err
		},
	}
}
