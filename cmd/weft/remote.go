package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/weft-io/weft/internal/apiclient"
)

// This file holds what the commands against a running node share: the
// contexts saved by weft login, the flags and environment variables that
// override them, and the -o json|yaml|table output of lists.

// addRemoteCmds adds the commands that call a running node's API to root:
// login and context, devices, edges, anomalies, audit, and tail to the
// stream group, and completion, the shell completion scripts.
func addRemoteCmds(root *cobra.Command) {
	root.AddCommand(newLoginCmd(), newContextCmd(), newDevicesCmd(), newEdgesCmd(), newAnomaliesCmd(), newAuditCmd(), newSigninLinkCmd(), newCompletionCmd())
	for _, c := range root.Commands() {
		if c.Name() == "stream" {
			c.AddCommand(newStreamTailCmd())
		}
	}
}

// newCompletionCmd prints cobra's completion scripts. It replaces cobra's
// own completion command, which writes to the output its root had when
// it was made rather than to the command's.
func newCompletionCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "completion",
		Short: "Print the shell completion script for bash, zsh, fish or powershell",
		Long: `Print a script that makes the shell complete weft's commands, flags,
and, against a running node, device ids and context names.`,
	}
	for _, sh := range []struct {
		name, load string
		gen        func(c *cobra.Command, w io.Writer) error
	}{
		{"bash", "source <(weft completion bash)   # needs the bash-completion package; or save it in /etc/bash_completion.d/weft",
			func(c *cobra.Command, w io.Writer) error { return c.Root().GenBashCompletionV2(w, true) }},
		{"zsh", "weft completion zsh > \"${fpath[1]}/_weft\"   # with compinit enabled; then start a new shell",
			func(c *cobra.Command, w io.Writer) error { return c.Root().GenZshCompletion(w) }},
		{"fish", "weft completion fish > ~/.config/fish/completions/weft.fish",
			func(c *cobra.Command, w io.Writer) error { return c.Root().GenFishCompletion(w, true) }},
		{"powershell", "weft completion powershell | Out-String | Invoke-Expression",
			func(c *cobra.Command, w io.Writer) error { return c.Root().GenPowerShellCompletionWithDesc(w) }},
	} {
		cmd.AddCommand(&cobra.Command{
			Use:               sh.name,
			Short:             "Print the completion script for " + sh.name,
			Example:           "  " + sh.load,
			Args:              cobra.NoArgs,
			ValidArgsFunction: cobra.NoFileCompletions,
			RunE:              func(c *cobra.Command, _ []string) error { return sh.gen(c, c.OutOrStdout()) },
		})
	}
	return cmd
}

// Environment variables that override the current context.
const (
	serverEnv = "WEFT_SERVER"
	tokenEnv  = "WEFT_TOKEN"
)

// cliConfig is the file weft login writes: the saved contexts and the
// current one.
type cliConfig struct {
	Current  string       `yaml:"current,omitempty"`
	Contexts []cliContext `yaml:"contexts,omitempty"`
}

// cliContext is a node to call and how: its URL, how to trust its TLS
// certificate, and the token to send.
type cliContext struct {
	Name        string `yaml:"name"`
	Server      string `yaml:"server"`
	CAFile      string `yaml:"ca_file,omitempty"`
	Fingerprint string `yaml:"fingerprint,omitempty"`
	Token       string `yaml:"token,omitempty"`
}

func (c *cliConfig) find(name string) *cliContext {
	for i := range c.Contexts {
		if c.Contexts[i].Name == name {
			return &c.Contexts[i]
		}
	}
	return nil
}

// configPath is where the contexts are saved:
// os.UserConfigDir()/weft/config.yaml.
func configPath() (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("no directory for the contexts: %w", err)
	}
	return filepath.Join(dir, "weft", "config.yaml"), nil
}

// loadConfig reads the contexts; no file is no contexts.
func loadConfig() (cliConfig, string, error) {
	var cfg cliConfig
	path, err := configPath()
	if err != nil {
		return cfg, "", err
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return cfg, path, nil
	}
	if err != nil {
		return cfg, path, err
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		return cfg, path, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, path, nil
}

// saveConfig writes cfg to path with mode 0600, in a directory of mode
// 0700: it holds tokens. The file is replaced whole, so a reader never
// sees half of it.
func saveConfig(path string, cfg cliConfig) error {
	b, err := yaml.Marshal(cfg)
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".config-*.yaml")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// remoteFlags select the node a command calls. Each overrides the saved
// context; --server and --token also come from WEFT_SERVER and
// WEFT_TOKEN, which the flags override in turn.
type remoteFlags struct {
	context, server, token, caFile, fingerprint string
}

// addRemoteFlags adds the flags to cmd and the commands under it.
func addRemoteFlags(cmd *cobra.Command) *remoteFlags {
	f := &remoteFlags{}
	addRemoteFlagsTo(cmd, f)
	return f
}

// addRemoteFlagsTo adds the flags of f to cmd and the commands under it.
func addRemoteFlagsTo(cmd *cobra.Command, f *remoteFlags) {
	fl := cmd.PersistentFlags()
	fl.StringVar(&f.context, "context", "", "saved context to use (default: the current one, see weft context ls)")
	fl.StringVar(&f.server, "server", "", "URL of the node's API (default: $"+serverEnv+", or the context's)")
	fl.StringVar(&f.token, "token", "", "API token (default: $"+tokenEnv+", or the context's)")
	fl.StringVar(&f.caFile, "ca-file", "", "PEM file of the CA of an HTTPS node (default: the context's, or the system's roots)")
	fl.StringVar(&f.fingerprint, "fingerprint", "", "SHA-256 fingerprint (sha256:HEX) of an HTTPS node's certificate to trust")
}

// client returns a client of the node the flags, the environment and the
// saved context name, in that order.
func (f *remoteFlags) client() (*apiclient.Client, error) {
	cfg, path, err := loadConfig()
	if err != nil {
		return nil, err
	}
	var c cliContext
	name := f.context
	if name == "" {
		name = cfg.Current
	}
	if name != "" {
		found := cfg.find(name)
		if found == nil {
			return nil, fmt.Errorf("no context %q in %s (weft context ls lists them)", name, path)
		}
		c = *found
	}
	server := firstOf(f.server, os.Getenv(serverEnv), c.Server)
	token := firstOf(f.token, os.Getenv(tokenEnv), c.Token)
	if server == "" {
		return nil, fmt.Errorf("no node to call: run weft login --server URL --token-file FILE, or pass --server or set %s", serverEnv)
	}
	ca, fp := c.CAFile, c.Fingerprint
	if server != c.Server { // the context's trust is for its own server
		ca, fp = "", ""
	}
	if f.caFile != "" {
		ca, fp = f.caFile, ""
	}
	if f.fingerprint != "" {
		ca, fp = "", f.fingerprint
	}
	return apiclient.New(apiclient.Config{Server: server, Token: token, CAFile: ca, Fingerprint: fp})
}

func firstOf(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// listFormat is the value of -o/--output of the commands against a node:
// table, json or yaml.
type listFormat string

func (o *listFormat) String() string { return string(*o) }
func (o *listFormat) Type() string   { return "format" }
func (o *listFormat) Set(v string) error {
	if v != "table" && v != "json" && v != "yaml" {
		return fmt.Errorf("output format %q: want table, json or yaml", v)
	}
	*o = listFormat(v)
	return nil
}

// addListOutput adds -o/--output to cmd, table by default.
func addListOutput(cmd *cobra.Command) *listFormat {
	o := listFormat("table")
	cmd.Flags().VarP(&o, "output", "o", "output format: table, json or yaml")
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"table", "json", "yaml"}, cobra.ShellCompDirectiveNoFileComp))
	return &o
}

// column is one column of a table: its heading and its cell of an item.
type column struct {
	head string
	cell func(item map[string]any) string
}

// field is the column showing the member key of an item; a dotted key
// names a member of a member.
func field(head, key string) column {
	return column{head, func(m map[string]any) string { return cell(lookup(m, key)) }}
}

// lookup returns the member of m that the dotted key names, or nil.
func lookup(m map[string]any, key string) any {
	var v any = m
	for k := range strings.SplitSeq(key, ".") {
		o, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = o[k]
	}
	return v
}

// cell shows a JSON value in a table: "-" for nothing, strings as they
// are (quoted if they hold tabs or line breaks), objects and arrays as
// compact JSON.
func cell(v any) string {
	switch v := v.(type) {
	case nil:
		return "-"
	case string:
		if v == "" {
			return "-"
		}
		return printable([]byte(v))
	case json.Number:
		return v.String()
	case bool:
		return fmt.Sprint(v)
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Sprint(v)
		}
		return printable(b)
	}
}

// printItems writes items (decoded JSON objects) as a table with cols,
// or as a JSON or YAML array.
func printItems(w io.Writer, format listFormat, items []any, cols []column) error {
	if items == nil {
		items = []any{}
	}
	switch format {
	case "json":
		return printIndented(w, items)
	case "yaml":
		return printYAML(w, items)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	heads := make([]string, len(cols))
	for i, c := range cols {
		heads[i] = c.head
	}
	fmt.Fprintln(tw, strings.Join(heads, "\t"))
	for _, it := range items {
		m, _ := it.(map[string]any)
		cells := make([]string, len(cols))
		for i, c := range cols {
			cells[i] = c.cell(m)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

// printOne writes one item (a decoded JSON object) as a table of one
// row with cols, or as a JSON or YAML object.
func printOne(w io.Writer, format listFormat, item map[string]any, cols []column) error {
	switch format {
	case "json":
		return printIndented(w, item)
	case "yaml":
		return printYAML(w, item)
	}
	return printItems(w, format, []any{item}, cols)
}

// printIndented writes v as indented JSON.
func printIndented(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// printYAML writes v (decoded JSON) as YAML.
func printYAML(w io.Writer, v any) error {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(yamlNumbers(v)); err != nil {
		return err
	}
	if err := enc.Close(); err != nil {
		return err
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// yamlNumbers returns v with its JSON numbers as YAML numbers, written
// as they were (the YAML encoder would write a json.Number as a string).
func yamlNumbers(v any) any {
	switch v := v.(type) {
	case json.Number:
		tag := "!!int"
		if strings.ContainsAny(v.String(), ".eE") {
			tag = "!!float"
		}
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: v.String()}
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[k] = yamlNumbers(e)
		}
		return m
	case []any:
		s := make([]any, len(v))
		for i, e := range v {
			s[i] = yamlNumbers(e)
		}
		return s
	}
	return v
}

// sinceFlags are the time range of a list: --since, or --from and --to.
type sinceFlags struct {
	since    time.Duration
	from, to string
}

func addSinceFlags(cmd *cobra.Command) *sinceFlags {
	f := &sinceFlags{}
	cmd.Flags().DurationVar(&f.since, "since", 0, "from this long ago (1h, 30m); instead of --from")
	cmd.Flags().StringVar(&f.from, "from", "", "from this time on (RFC 3339)")
	cmd.Flags().StringVar(&f.to, "to", "", "up to this time, excluded (RFC 3339; default now)")
	cmd.MarkFlagsMutuallyExclusive("since", "from")
	return f
}

// query sets from and to in q; it reports whether the range has a start.
func (f *sinceFlags) query(q url.Values, now time.Time) (bool, error) {
	if f.since < 0 {
		return false, fmt.Errorf("--since %v: want a positive duration", f.since)
	}
	for _, t := range []struct{ name, v string }{{"from", f.from}, {"to", f.to}} {
		if t.v == "" {
			continue
		}
		ts, err := time.Parse(time.RFC3339Nano, t.v)
		if err != nil {
			return false, fmt.Errorf("--%s %q: want an RFC 3339 time such as 2026-03-01T10:00:00Z", t.name, t.v)
		}
		q.Set(t.name, ts.UTC().Format(time.RFC3339Nano))
	}
	if f.since > 0 {
		q.Set("from", now.Add(-f.since).UTC().Format(time.RFC3339Nano))
	}
	return q.Get("from") != "", nil
}
