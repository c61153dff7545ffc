package main

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"
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

// TestDeployConfigs: the example configurations of deploy/systemd and
// those in the ConfigMaps of deploy/kubernetes name only settings weft
// edge and weft core have (a typo fails here, as it would fail the node).
func TestDeployConfigs(t *testing.T) {
	files := map[string]string{
		filepath.Join("..", "..", "deploy", "systemd", "edge.yaml"): "edge",
		filepath.Join("..", "..", "deploy", "systemd", "core.yaml"): "core",
	}
	manifests, _ := filepath.Glob(filepath.Join("..", "..", "deploy", "kubernetes", "*.yaml"))
	for _, m := range manifests {
		f, err := os.Open(m)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(f)
		for {
			var obj struct {
				Kind string
				Data map[string]string
			}
			if err := dec.Decode(&obj); err != nil {
				if !errors.Is(err, io.EOF) {
					t.Fatalf("%s: %v", m, err)
				}
				break
			}
			for key, text := range obj.Data {
				if node, ok := strings.CutSuffix(key, ".yaml"); ok && obj.Kind == "ConfigMap" {
					file := filepath.Join(t.TempDir(), key)
					os.WriteFile(file, []byte(text), 0o600)
					files[file] = node
				}
			}
		}
		f.Close()
	}
	if len(files) < 4 {
		t.Fatalf("configurations found: %v", files)
	}
	for file, node := range files {
		newCmd := map[string]func() *cobra.Command{"edge": newEdgeCmd, "core": newCoreCmd}[node]
		if newCmd == nil {
			t.Fatalf("%s: configuration of %q", file, node)
		}
		cmd := newCmd()
		if err := loadSettings(cmd, file); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		b, err := settingsYAML(cmd)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := yaml.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		if m["data"] != "/var/lib/weft" || m["log-format"] != "json" {
			t.Errorf("%s: effective settings %v", file, m)
		}
		if _, err := logger(cmd, m["log-level"].(string)); err != nil {
			t.Errorf("%s: %v", file, err)
		}
	}
}
