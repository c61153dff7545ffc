package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/weft-io/weft/store"
)

// This file holds weft store: checks and repairs of a stopped node's data
// directory. See docs/operations.md.

func newStoreCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "store",
		Short: "Check, repair, back up and restore a stopped node's store",
		Long: `Check a stopped node's data directory for damage (verify), give up
damaged stream batches so that readers go on past them (quarantine), and
back it up and restore it (backup, restore). The node must be stopped:
the store is opened directly. See docs/operations.md for what to do with
a damaged store.`,
	}
	cmd.AddCommand(newStoreVerifyCmd(), newStoreQuarantineCmd(), newStoreBackupCmd(), newStoreRestoreCmd())
	return cmd
}

// errDamaged makes weft store verify exit non-zero once it has printed
// the damage.
var errDamaged = errors.New("the store is damaged")

func newStoreVerifyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "verify DATA",
		Short: "Check every table, stream batch and file of a store",
		Long: `Open the store in DATA and check it whole: the checksum of every block of
Badger's tables, every batch of every stream partition (its CRC32C, and
that offsets are dense from the low-water mark to the end) and the size
and SHA-256 of every file. Prints one line per damaged table, range of
offsets ("corrupt") and file, and each quarantined range ("quarantined",
which is not damage), then a summary; exits non-zero if anything is
damaged. -o json prints the report as one JSON object.`,
		Example: `  weft store verify /var/lib/weft`,
		Args:    cobra.ExactArgs(1),
	}
	out := addOutputFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return openStore(args[0], func(ctx context.Context, s *store.Store) error {
			r, err := s.Verify(ctx)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if out.json() {
				type rng struct {
					Stream    string `json:"stream"`
					Topic     string `json:"topic"`
					Partition int    `json:"partition"`
					From      uint64 `json:"from"`
					To        uint64 `json:"to,omitempty"`
					Error     string `json:"error,omitempty"`
				}
				j := struct {
					OK          bool     `json:"ok"`
					Tables      string   `json:"tables,omitempty"`
					Corrupt     []rng    `json:"corrupt"`
					Files       []string `json:"files"`
					Quarantined []rng    `json:"quarantined"`
					Partitions  int64    `json:"partitions"`
					Messages    int64    `json:"messages"`
				}{OK: r.OK(), Corrupt: []rng{}, Files: []string{}, Quarantined: []rng{}, Partitions: r.Partitions, Messages: r.Messages}
				if r.Tables != nil {
					j.Tables = r.Tables.Error()
				}
				for _, d := range r.Damaged {
					j.Corrupt = append(j.Corrupt, rng{d.Path, d.Topic, d.Partition, d.From, d.To, d.Error()})
				}
				for _, f := range r.Files {
					j.Files = append(j.Files, f.Error())
				}
				for _, g := range r.Quarantined {
					j.Quarantined = append(j.Quarantined, rng{Stream: g.Path, Topic: g.Topic, Partition: g.Partition, From: g.From, To: g.To})
				}
				if err := printJSON(w, j); err != nil {
					return err
				}
			} else {
				if r.Tables != nil {
					fmt.Fprintf(w, "table\t%v\n", r.Tables)
				}
				for _, d := range r.Damaged {
					fmt.Fprintf(w, "corrupt\t%s\t%s\t%d\t%s\t%v\n", d.Path, d.Topic, d.Partition, offsetRange(d.From, d.To), d)
				}
				for _, f := range r.Files {
					fmt.Fprintf(w, "file\t%v\n", f)
				}
				for _, g := range r.Quarantined {
					fmt.Fprintf(w, "quarantined\t%s\t%s\t%d\t%s\n", g.Path, g.Topic, g.Partition, offsetRange(g.From, g.To))
				}
				fmt.Fprintf(w, "%d partitions, %d messages read; %d corrupt ranges, %d damaged files, %d quarantined ranges\n",
					r.Partitions, r.Messages, len(r.Damaged), len(r.Files), len(r.Quarantined))
			}
			if !r.OK() {
				return errDamaged
			}
			return nil
		})
	}
	return cmd
}

func offsetRange(from, to uint64) string {
	if to == 0 {
		return fmt.Sprintf("%d-?", from)
	}
	return fmt.Sprintf("%d-%d", from, to-1)
}

func newStoreQuarantineCmd() *cobra.Command {
	var path, topic string
	var part int
	var from uint64
	cmd := &cobra.Command{
		Use:   "quarantine DATA --stream PATH --topic TOPIC --from OFFSET",
		Short: "Give up a damaged range of a stream partition",
		Long: `Give up the damaged batch of a stream partition that starts at --from, or
the missing offsets that start there, as weft store verify or a failed
read named them: the range up to the next batch found is recorded as a
gap, the batches in it are deleted, the stream counts the offsets
("quarantined" in its description) and /audit/events records it. Readers
then go on past the gap and report it (a consumer as lost messages). A
readable batch cannot be quarantined. Prints the range given up.`,
		Example: `  weft store quarantine /var/lib/weft --stream /telemetry/events --topic edge1 --from 3469`,
		Args:    cobra.ExactArgs(1),
	}
	cmd.Flags().StringVar(&path, "stream", "", "path of the stream (required)")
	cmd.Flags().StringVar(&topic, "topic", "", "topic (required)")
	cmd.Flags().IntVar(&part, "partition", 0, "partition")
	cmd.Flags().Uint64Var(&from, "from", 0, "first offset of the damaged range (required)")
	for _, f := range []string{"stream", "topic", "from"} {
		_ = cmd.MarkFlagRequired(f)
	}
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return openStore(args[0], func(ctx context.Context, s *store.Store) error {
			g, err := s.Stream(path).Quarantine(ctx, topic, part, from)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "quarantined\t%s\t%s\t%d\t%s\n", path, topic, part, offsetRange(g.From, g.To))
			return err
		})
	}
	return cmd
}

// openStore opens the store in dir, runs fn and closes the store.
func openStore(dir string, fn func(ctx context.Context, s *store.Store) error) (err error) {
	if _, err := os.Stat(dir); err != nil {
		return err
	}
	s, err := store.Open(store.Config{Dir: dir, RetentionInterval: -1})
	if err != nil {
		if heldByAnother(err) {
			return fmt.Errorf("%s is in use by a running node or another weft command; stop it first", dir)
		}
		return err
	}
	defer func() {
		if cerr := s.Close(); err == nil {
			err = cerr
		}
	}()
	return fn(context.Background(), s)
}
