package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"
)

// What weft edge, weft core and weft up share: a YAML settings file that
// flags override, a log level, sizes given as text.

// readConfig reads the YAML file path, if set, into file and reports
// whether it did.
func readConfig(path string, file any) (bool, error) {
	if path == "" {
		return false, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return false, err
	}
	if err := yaml.Unmarshal(b, file); err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	return true, nil
}

// unlessFlag returns a setter that takes a value from the file unless its
// flag was given or the file leaves it empty.
func unlessFlag(cmd *cobra.Command) func(flag string, dst *string, v string) {
	return func(flag string, dst *string, v string) {
		if !cmd.Flags().Changed(flag) && v != "" {
			*dst = v
		}
	}
}

// logger returns a text logger to the command's standard error at level
// ("debug", "info", "warn", "error").
func logger(cmd *cobra.Command, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	return slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: l})), nil
}

// sizeSetting is a size given as text ("1MiB"), and where it goes; an
// empty text leaves it alone.
type sizeSetting struct {
	text string
	dst  func(int64)
}

func applySizes(settings ...sizeSetting) error {
	for _, sz := range settings {
		if sz.text == "" {
			continue
		}
		n, err := parseSize(sz.text)
		if err != nil {
			return err
		}
		sz.dst(n)
	}
	return nil
}
