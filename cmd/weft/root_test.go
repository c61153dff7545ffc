package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestNeedSubcommand runs every command that groups others without a
// subcommand, and with one it does not have: each prints its help on
// stderr and fails.
func TestNeedSubcommand(t *testing.T) {
	var parents []string
	walk(newRootCmd(), func(c *cobra.Command) {
		if c.HasSubCommands() {
			parents = append(parents, c.CommandPath())
		}
	})
	if len(parents) < 8 {
		t.Fatalf("only %d commands with subcommands: %v", len(parents), parents)
	}
	for _, path := range parents {
		for _, extra := range []string{"", "nosuchcommand"} {
			if path == "weft" && extra != "" {
				continue // cobra refuses it before running weft, with the same error
			}
			args := append(strings.Fields(path)[1:], strings.Fields(extra)...)
			root := newRootCmd()
			var stdout, stderr bytes.Buffer
			root.SetOut(&stdout)
			root.SetErr(&stderr)
			root.SetArgs(args)
			err := root.Execute()
			name := strings.TrimSpace(path + " " + extra)
			switch {
			case err == nil:
				t.Errorf("%s: succeeded, want an error", name)
			case extra == "" && err.Error() != path+" needs a command":
				t.Errorf("%s: error %q", name, err)
			case extra != "" && !strings.Contains(err.Error(), `unknown command "nosuchcommand"`):
				t.Errorf("%s: error %q", name, err)
			}
			if stdout.Len() != 0 {
				t.Errorf("%s: wrote to stdout:\n%s", name, stdout.String())
			}
			if help := stderr.String(); !strings.Contains(help, "Available Commands:") || strings.Contains(help, path+" [flags]") {
				t.Errorf("%s: help on stderr:\n%s", name, help)
			}
		}
	}
	// The binary exits non-zero; --help still succeeds.
	step{args: []string{"stream"}, noData: true, fail: true, stderr: "weft stream needs a command"}.run(t, t.TempDir())
	step{args: []string{"stream", "--help"}, noData: true}.run(t, t.TempDir())
}
