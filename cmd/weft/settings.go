package main

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"
)

// Settings of weft edge, weft core and weft up: every flag is a setting.
// A YAML file (--config) gives settings by the flags' names (a key may use
// underscores for dashes, and nested maps join their keys with dots:
// gateway: {max_packet_size: 1MiB} is --gateway.max-packet-size); the
// environment variable WEFT_<NAME> (upper case, dashes and dots as
// underscores: WEFT_GATEWAY_MAX_PACKET_SIZE) overrides the file, and a flag
// on the command line overrides both.

// settingAliases are file keys kept from before every flag was a setting.
var settingAliases = map[string]string{"mirrors": "mirror"}

// envName is the environment variable of the flag named name.
func envName(name string) string {
	return "WEFT_" + strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(name))
}

// loadSettings fills the flags of cmd not given on its command line from
// the environment and then from the YAML file path (if not empty). A key
// of the file that names no flag is an error: a typo must not pass
// silently.
func loadSettings(cmd *cobra.Command, path string) error {
	fs := cmd.Flags()
	fromEnv := map[string]bool{}
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		v, ok := os.LookupEnv(envName(f.Name))
		if err != nil || f.Changed || !ok || f.Name == "config" {
			return
		}
		if e := setFlag(f, v); e != nil {
			err = fmt.Errorf("%s: %w", envName(f.Name), e)
		}
		fromEnv[f.Name] = true
	})
	if err != nil || path == "" {
		return err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	flat := map[string]any{}
	flatten("", doc, flat)
	keys := make([]string, 0, len(flat))
	for k := range flat {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, key := range keys {
		name := strings.ReplaceAll(key, "_", "-")
		if alias, ok := settingAliases[name]; ok {
			name = alias
		}
		f := fs.Lookup(name)
		if f == nil || name == "config" || name == "help" {
			return fmt.Errorf("%s: unknown setting %q (see weft %s --help)", path, key, cmd.Name())
		}
		if f.Changed || fromEnv[name] {
			continue
		}
		if err := setFlag(f, flat[key]); err != nil {
			return fmt.Errorf("%s: %s: %w", path, key, err)
		}
	}
	return nil
}

// flatten puts the leaves of the YAML map m into out, their keys joined
// with dots.
func flatten(prefix string, m map[string]any, out map[string]any) {
	for k, v := range m {
		if prefix != "" {
			k = prefix + "." + k
		}
		if sub, ok := v.(map[string]any); ok {
			flatten(k, sub, out)
			continue
		}
		out[k] = v
	}
}

// setFlag sets f to v: a list for a repeatable flag (a YAML list, or text
// separated by commas), else the text of v.
func setFlag(f *pflag.Flag, v any) error {
	if sv, ok := f.Value.(pflag.SliceValue); ok {
		var items []string
		switch x := v.(type) {
		case []any:
			for _, it := range x {
				items = append(items, fmt.Sprint(it))
			}
		case string:
			if x != "" {
				items = strings.Split(x, ",")
			}
		default:
			items = []string{fmt.Sprint(x)}
		}
		return sv.Replace(items)
	}
	if v == nil {
		return nil
	}
	return f.Value.Set(fmt.Sprint(v))
}

// settingsYAML is the effective settings of cmd as YAML, by flag name.
func settingsYAML(cmd *cobra.Command) ([]byte, error) {
	out := map[string]any{}
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Name == "config" || f.Name == "help" {
			return
		}
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			out[f.Name] = sv.GetSlice()
			return
		}
		out[f.Name] = f.Value.String()
	})
	return yaml.Marshal(out)
}

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Show the settings a node command would run with",
	}
	print := &cobra.Command{
		Use:   "print edge|core|up [FLAGS]",
		Short: "Print the effective settings of weft edge, core or up as YAML",
		Long: `Print, as YAML keyed by flag name, the settings weft edge, weft core or
weft up would run with given the same flags, --config file and WEFT_*
environment variables: a flag wins over the environment, which wins over
the file, which wins over the default.`,
		Example: `  weft config print edge --config edge.yaml
  WEFT_LOG_LEVEL=debug weft config print core --name core-1`,
		DisableFlagParsing: true,
		Args:               cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var node *cobra.Command
			switch args[0] {
			case "edge":
				node = newEdgeCmd()
			case "core":
				node = newCoreCmd()
			case "up":
				node = newUpCmd()
			case "-h", "--help", "help":
				return cmd.Help()
			default:
				return fmt.Errorf("config print: no node command %q: edge, core or up", args[0])
			}
			if err := node.ParseFlags(args[1:]); err != nil {
				return err
			}
			path, _ := node.Flags().GetString("config")
			if err := loadSettings(node, path); err != nil {
				return err
			}
			b, err := settingsYAML(node)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	}
	cmd.AddCommand(print)
	return cmd
}
