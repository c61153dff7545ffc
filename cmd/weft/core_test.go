package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/weft-io/weft/core"
	"github.com/weft-io/weft/edge"
)

// TestAuditRetentionSetting: --audit.retention, or audit: {retention: ...}
// in the config file, is the AuditRetention weft core and weft edge run
// with; unset, it is 0 (the API's default of 400 days).
func TestAuditRetentionSetting(t *testing.T) {
	var got time.Duration
	oldCore, oldEdge := runCore, runEdge
	t.Cleanup(func() { runCore, runEdge = oldCore, oldEdge })
	runCore = func(_ context.Context, cfg core.Config) error { got = cfg.AuditRetention; return nil }
	runEdge = func(_ context.Context, cfg edge.Config) error { got = cfg.AuditRetention; return nil }
	file := filepath.Join(t.TempDir(), "node.yaml")
	if err := os.WriteFile(file, []byte("audit:\n  retention: 2160h\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, node := range []string{"core", "edge"} {
		for _, tc := range []struct {
			args []string
			want time.Duration
		}{
			{nil, 0},
			{[]string{"--audit.retention", "72h"}, 72 * time.Hour},
			{[]string{"--audit.retention", "-1s"}, -time.Second},
			{[]string{"--config", file}, 2160 * time.Hour},
		} {
			got = 1
			must(t, append([]string{node, "--data", "D", "--certs", "C", "--name", "n1"}, tc.args...)...)
			if got != tc.want {
				t.Errorf("weft %s %v: AuditRetention %s, want %s", node, tc.args, got, tc.want)
			}
		}
	}
}
