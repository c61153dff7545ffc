package deploy

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// unit is a systemd unit file: section -> key -> values, in order.
type unit map[string]map[string][]string

func parseUnit(t *testing.T, file string) unit {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unit{}
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not a key=value line in a section: %q", file, n, line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return u
}

// TestSystemdUnits: each node's unit runs weft as a dedicated user with
// its state directory, a high open-file limit, readiness through
// sd_notify, a restart on failure and the sandboxing of docs/deploy.md;
// where systemd-analyze exists, it verifies the units too (an unknown or
// misspelt directive fails).
func TestSystemdUnits(t *testing.T) {
	for _, node := range []string{"edge", "core"} {
		file := filepath.Join("systemd", "weft-"+node+".service")
		u := parseUnit(t, file)
		svc := u["Service"]
		want := map[string]string{
			"Type":                   "notify",
			"NotifyAccess":           "main",
			"ExecStart":              "/usr/local/bin/weft " + node + " --config /etc/weft/" + node + ".yaml",
			"User":                   "weft",
			"Group":                  "weft",
			"StateDirectory":         "weft",
			"ConfigurationDirectory": "weft",
			"Restart":                "on-failure",
			"NoNewPrivileges":        "true",
			"ProtectSystem":          "strict",
			"ReadWritePaths":         "/var/lib/weft",
			"ProtectHome":            "true",
			"PrivateTmp":             "true",
			"PrivateDevices":         "true",
			"CapabilityBoundingSet":  "",
			"KillSignal":             "SIGTERM",
		}
		for k, v := range want {
			if got := svc[k]; len(got) != 1 || got[0] != v {
				t.Errorf("%s: [Service] %s = %q, want %q", file, k, got, v)
			}
		}
		if got := svc["LimitNOFILE"]; len(got) != 1 || got[0] == "" {
			t.Errorf("%s: want LimitNOFILE", file)
		}
		if got := u["Install"]["WantedBy"]; len(got) != 1 || got[0] != "multi-user.target" {
			t.Errorf("%s: [Install] WantedBy = %q", file, got)
		}
		if _, err := os.Stat(filepath.Join("systemd", node+".yaml")); err != nil {
			t.Errorf("%s: no example configuration: %v", file, err)
		}

		analyze, err := exec.LookPath("systemd-analyze")
		if err != nil {
			continue
		}
		// verify wants the binary of ExecStart to exist: point it at one.
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		bin, err := exec.LookPath("true")
		if err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(t.TempDir(), filepath.Base(file))
		if err := os.WriteFile(tmp, []byte(strings.ReplaceAll(string(b), "/usr/local/bin/weft", bin)), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(analyze, "verify", tmp).CombinedOutput()
		if err != nil || len(strings.TrimSpace(string(out))) > 0 {
			t.Errorf("systemd-analyze verify %s: %v\n%s", file, err, out)
		}
	}
}
