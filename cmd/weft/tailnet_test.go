package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/weft-io/weft/core"
	"github.com/weft-io/weft/edge"
	"github.com/weft-io/weft/sync/link"
	"github.com/weft-io/weft/sync/tailnet"
)

// TestTailnetSettings: --tailnet (or tailnet: in the config file) gives
// weft core and weft edge a tailnet transport for their links; without it
// they have none. An auth key file that cannot be read is an error before
// the node starts.
func TestTailnetSettings(t *testing.T) {
	var got link.Transport
	oldCore, oldEdge := runCore, runEdge
	t.Cleanup(func() { runCore, runEdge = oldCore, oldEdge })
	runCore = func(_ context.Context, cfg core.Config) error { got = cfg.Transport; return nil }
	runEdge = func(_ context.Context, cfg edge.Config) error { got = cfg.Link.Transport; return nil }
	dir := t.TempDir()
	key, file := filepath.Join(dir, "key"), filepath.Join(dir, "node.yaml")
	if err := os.WriteFile(key, []byte("tskey-auth-x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	yaml := "tailnet: weft-x\ntailnet.authkey_file: " + key + "\ntailnet.control_url: http://127.0.0.1:1\n"
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, node := range []string{"core", "edge"} {
		for _, tc := range []struct {
			args []string
			want bool
		}{
			{nil, false},
			{[]string{"--tailnet", "weft-x", "--tailnet.authkey-file", key, "--tailnet.control-url", "http://127.0.0.1:1"}, true},
			{[]string{"--config", file}, true},
		} {
			got = nil
			must(t, append([]string{node, "--data", dir, "--certs", "C", "--name", "n1"}, tc.args...)...)
			if _, ok := got.(*tailnet.Node); ok != tc.want {
				t.Errorf("weft %s %v: transport %T, want a tailnet: %v", node, tc.args, got, tc.want)
			}
		}
		fails(t, "auth key", node, "--data", dir, "--certs", "C", "--name", "n1", "--tailnet", "weft-x", "--tailnet.authkey-file", filepath.Join(dir, "none"))
	}
}
