package main

import (
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/weft-io/weft/internal/apiclient"
)

// This file holds login and context: save the nodes to call and pick one.

func newLoginCmd() *cobra.Command {
	var c cliContext
	var tokenFile string
	cmd := &cobra.Command{
		Use:   "login --server URL (--token-file FILE | --token TOKEN)",
		Short: "Save a node's API and token as a context, and make it current",
		Long: `Check that the node at --server accepts the token, then save them as a
context in the user's config directory (` + "`os.UserConfigDir()/weft/config.yaml`" + `,
mode 0600) and make it the current one: the commands against a running node
(weft devices, edges, anomalies, audit, stream tail) then call it.

An HTTPS node's certificate is trusted if the system's roots sign it, the CA
of --ca-file does, or its SHA-256 fingerprint is the one of --fingerprint.
When it is not, login fails and names the fingerprint the node showed; check
it against the certificate on the node (openssl x509 -noout -fingerprint
-sha256 -in node.crt prints it with colons, which --fingerprint accepts)
before pinning it.

The context is named --name, by default the server's host and port; a
context of that name is replaced.`,
		Example: `  weft login --server https://core.example.com:8443 --ca-file certs/ca.pem --token-file alice.jwt
  weft token create --dir certs --role viewer --subject bob | weft login --server http://127.0.0.1:8080 --token-file - --name lab`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (c.Token == "") == (tokenFile == "") {
				return fmt.Errorf("give the token with --token-file FILE or --token TOKEN")
			}
			if tokenFile != "" {
				tok, err := readToken(cmd.InOrStdin(), tokenFile)
				if err != nil {
					return err
				}
				c.Token = tok
			}
			u, err := url.Parse(c.Server)
			if err != nil || u.Host == "" {
				return fmt.Errorf("--server %q: want http://host[:port] or https://host[:port]", c.Server)
			}
			if c.Name == "" {
				c.Name = u.Host
			}
			if c.CAFile != "" {
				if c.CAFile, err = filepath.Abs(c.CAFile); err != nil {
					return err
				}
			}
			client, err := apiclient.New(apiclient.Config{Server: c.Server, Token: c.Token, CAFile: c.CAFile, Fingerprint: c.Fingerprint})
			if err != nil {
				return err
			}
			// Any valid token may list devices (a scoped one, its own).
			if err := client.Get(cmd.Context(), "/api/v1/devices", url.Values{"limit": {"1"}}, nil); err != nil {
				return fmt.Errorf("login to %s: %w", c.Server, err)
			}
			cfg, path, err := loadConfig()
			if err != nil {
				return err
			}
			if old := cfg.find(c.Name); old != nil {
				*old = c
			} else {
				cfg.Contexts = append(cfg.Contexts, c)
			}
			cfg.Current = c.Name
			if err := saveConfig(path, cfg); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "context %q (%s) saved in %s and made current\n", c.Name, c.Server, path)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&c.Server, "server", "", "URL of the node's API, such as https://core.example.com:8443 (required)")
	fl.StringVar(&c.Token, "token", "", "the API token (it shows in the process list: prefer --token-file)")
	fl.StringVar(&tokenFile, "token-file", "", "file holding the API token (- for stdin)")
	fl.StringVar(&c.Name, "name", "", "name of the context (default: the server's host:port)")
	fl.StringVar(&c.CAFile, "ca-file", "", "PEM file of the CA that signs an HTTPS node's certificate")
	fl.StringVar(&c.Fingerprint, "fingerprint", "", "SHA-256 fingerprint (sha256:HEX) of an HTTPS node's certificate to trust instead")
	_ = cmd.MarkFlagRequired("server")
	cmd.MarkFlagsMutuallyExclusive("token", "token-file")
	cmd.MarkFlagsMutuallyExclusive("ca-file", "fingerprint")
	return cmd
}

// readToken reads a token from the file name, or from stdin for "-".
func readToken(stdin io.Reader, name string) (string, error) {
	var b []byte
	var err error
	if name == "-" {
		b, err = io.ReadAll(io.LimitReader(stdin, 1<<20))
	} else {
		b, err = os.ReadFile(name)
	}
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" || strings.ContainsAny(tok, " \t\r\n") {
		return "", fmt.Errorf("%s holds no token: want one line", name)
	}
	return tok, nil
}

func newContextCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "context",
		Short: "List the saved contexts (nodes to call), or pick the current one",
	}
	cmd.AddCommand(newContextLsCmd(), newContextUseCmd())
	return cmd
}

func newContextLsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List the saved contexts; * marks the current one",
		Long: `List the contexts weft login saved, with their server and how an HTTPS
server's certificate is trusted. Tokens are not shown.`,
		Args: cobra.NoArgs,
	}
	out := addListOutput(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, _, err := loadConfig()
		if err != nil {
			return err
		}
		items := []any{}
		for _, c := range cfg.Contexts {
			m := map[string]any{"name": c.Name, "server": c.Server, "current": c.Name == cfg.Current}
			if c.CAFile != "" {
				m["ca_file"] = c.CAFile
			}
			if c.Fingerprint != "" {
				m["fingerprint"] = c.Fingerprint
			}
			items = append(items, m)
		}
		return printItems(cmd.OutOrStdout(), *out, items, []column{
			{"CURRENT", func(m map[string]any) string {
				if m["current"] == true {
					return "*"
				}
				return ""
			}},
			field("NAME", "name"), field("SERVER", "server"),
			{"TRUST", func(m map[string]any) string {
				switch {
				case m["fingerprint"] != nil:
					return m["fingerprint"].(string)
				case m["ca_file"] != nil:
					return "ca " + m["ca_file"].(string)
				}
				return "-"
			}},
		})
	}
	return cmd
}

func newContextUseCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "use NAME",
		Short: "Make a saved context the current one",
		Args:  cobra.ExactArgs(1),
		ValidArgsFunction: func(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
			cfg, _, _ := loadConfig()
			var names []cobra.Completion
			for _, c := range cfg.Contexts {
				names = append(names, c.Name)
			}
			return names, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, path, err := loadConfig()
			if err != nil {
				return err
			}
			if cfg.find(args[0]) == nil {
				return fmt.Errorf("no context %q (weft context ls lists them)", args[0])
			}
			cfg.Current = args[0]
			if err := saveConfig(path, cfg); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "context %q is current\n", args[0])
			return nil
		},
	}
}
