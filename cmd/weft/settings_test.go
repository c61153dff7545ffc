package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestSettings: a flag wins over WEFT_* variables, which win over the
// --config file, which wins over the default; file keys are the flags'
// names (underscores for dashes, nested maps joined with dots, and the
// older key mirrors); an unknown key is an error.
func TestSettings(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "edge.yaml")
	os.WriteFile(file, []byte(`
name: truck-7
log_level: debug
rate_limit: 1MiB
mirrors: [core:/models]
gateway:
  max_packet_size: 64KiB
  connect_timeout: 3s
store:
  min_free: 1GiB
`), 0o600)
	print := func(args ...string) map[string]any {
		t.Helper()
		cmd := newConfigCmd()
		var out strings.Builder
		cmd.SetOut(&out)
		cmd.SetArgs(append([]string{"print"}, args...))
		if err := cmd.Execute(); err != nil {
			t.Fatalf("config print %v: %v", args, err)
		}
		var m map[string]any
		if err := yaml.Unmarshal([]byte(out.String()), &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	m := print("edge", "--config", file)
	for k, want := range map[string]any{"name": "truck-7", "log-level": "debug", "rate-limit": "1MiB", "gateway.max-packet-size": "64KiB",
		"gateway.connect-timeout": "3s", "store.min-free": "1GiB", "mqtt": "127.0.0.1:8883"} {
		if m[k] != want {
			t.Errorf("%s = %v, want %v", k, m[k], want)
		}
	}
	if got, _ := m["mirror"].([]any); len(got) != 1 || got[0] != "core:/models" {
		t.Errorf("mirror = %v", m["mirror"])
	}

	t.Setenv("WEFT_LOG_LEVEL", "warn")
	t.Setenv("WEFT_GATEWAY_MAX_PACKET_SIZE", "32KiB")
	m = print("edge", "--config", file)
	if m["log-level"] != "warn" || m["gateway.max-packet-size"] != "32KiB" || m["name"] != "truck-7" {
		t.Errorf("with the environment: %v", m)
	}
	m = print("edge", "--config", file, "--log-level", "error")
	if m["log-level"] != "error" {
		t.Errorf("a flag must win: %v", m["log-level"])
	}

	os.WriteFile(file, []byte("nmae: typo\n"), 0o600)
	cmd := newConfigCmd()
	cmd.SetArgs([]string{"print", "edge", "--config", file})
	cmd.SetOut(&strings.Builder{})
	if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), `unknown setting "nmae"`) {
		t.Fatalf("unknown key: %v", err)
	}
}
