package main

import (
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"
)

// What weft edge, weft core and weft up share besides their settings
// (settings.go): a log level, sizes given as text.

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
