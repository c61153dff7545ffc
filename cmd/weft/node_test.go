package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestLogFormat: --log-format json gives one JSON object a line, text
// (the default) key=value lines, anything else an error; the setting
// comes from the file and the environment like any other.
func TestLogFormat(t *testing.T) {
	for _, tc := range []struct {
		format string
		check  func(line string) bool
	}{
		{"", func(l string) bool { return strings.HasPrefix(l, "time=") && strings.Contains(l, `msg=hello k=v`) }},
		{"text", func(l string) bool { return strings.HasPrefix(l, "time=") }},
		{"json", func(l string) bool {
			var m map[string]any
			return json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "hello" && m["k"] == "v" && m["level"] == "INFO"
		}},
	} {
		for _, newCmd := range []func() *cobra.Command{newEdgeCmd, newCoreCmd, newUpCmd} {
			cmd := newCmd()
			if tc.format != "" {
				if err := cmd.ParseFlags([]string{"--log-format", tc.format}); err != nil {
					t.Fatalf("%s: %v", cmd.Name(), err)
				}
			}
			var out strings.Builder
			cmd.SetErr(&out)
			log, err := logger(cmd, "info")
			if err != nil {
				t.Fatalf("%s --log-format %q: %v", cmd.Name(), tc.format, err)
			}
			log.Debug("hidden")
			log.Info("hello", "k", "v")
			if line := strings.TrimSpace(out.String()); !tc.check(line) {
				t.Errorf("%s --log-format %q wrote %q", cmd.Name(), tc.format, line)
			}
		}
	}

	cmd := newEdgeCmd()
	t.Setenv("WEFT_LOG_FORMAT", "xml")
	if err := loadSettings(cmd, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := logger(cmd, "info"); err == nil || !strings.Contains(err.Error(), "--log-format") {
		t.Errorf("--log-format xml: %v, want an error naming the flag", err)
	}
}
