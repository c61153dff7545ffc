package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/internal/node"
)

// This file holds "weft certs" and "weft token": they parse flags, call
// package certs and print what it returns.

// certsDir returns the --dir flag of cmd.
func certsDir(cmd *cobra.Command) string {
	dir, _ := cmd.Flags().GetString("dir")
	return dir
}

// loadCerts loads the certificate directory named by --dir.
func loadCerts(cmd *cobra.Command) (*certs.Authority, error) {
	return certs.Load(certsDir(cmd))
}

// addDaysFlag adds --days to cmd and returns a function giving the
// validity it asks for.
func addDaysFlag(cmd *cobra.Command) func() (time.Duration, error) {
	days := cmd.Flags().Int("days", 365, "validity in days (cut to the CA's own validity)")
	return func() (time.Duration, error) {
		if *days <= 0 {
			return 0, fmt.Errorf("--days must be positive, not %d", *days)
		}
		return time.Duration(*days) * 24 * time.Hour, nil
	}
}

// issueWith adds --days to cmd and makes it issue a certificate with
// issue and save it.
func issueWith(cmd *cobra.Command, issue func(a *certs.Authority, validity time.Duration) (*certs.Issued, error)) {
	withAuthority(cmd, func(a *certs.Authority, v time.Duration) error {
		iss, err := issue(a, v)
		if err != nil {
			return err
		}
		return saveIssued(cmd, a, iss)
	})
}

// withAuthority adds --days to cmd and makes it run with the loaded
// authority and the validity asked for.
func withAuthority(cmd *cobra.Command, run func(a *certs.Authority, validity time.Duration) error) {
	validity := addDaysFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		v, err := validity()
		if err != nil {
			return err
		}
		a, err := loadCerts(cmd)
		if err != nil {
			return err
		}
		return run(a, v)
	}
}

// saveIssued writes an issued certificate into the directory and says
// where.
func saveIssued(cmd *cobra.Command, a *certs.Authority, iss *certs.Issued) error {
	certFile, keyFile, err := a.Save(iss)
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "issued %s serial %s, valid until %s\n  %s\n  %s\n",
		iss.Subject(), iss.Serial, iss.NotAfter.Format(time.RFC3339), certFile, keyFile)
	return nil
}

func newCertsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "Manage the certificate directory: CAs, device, gateway and node certificates, revocation",
		Long: `Manage a certificate directory (--dir). It holds the device CA, which signs
devices, gateways and the CRL; the fabric CA, which signs edge and core
nodes; the API token key pair; the certificates issued, under devices/,
gateways/ and nodes/; crl.pem; and index.json, the list of certificates
issued. Private keys are written with mode 0600.`,
		Args: cobra.NoArgs,
	}
	cmd.PersistentFlags().String("dir", "", "certificate directory (required)")
	cmd.MarkPersistentFlagRequired("dir")
	cmd.AddCommand(newCertsInitCmd(), newCertsIssueCmd(), newCertsSignCSRCmd(), newCertsRevokeCmd(), newCertsLsCmd())
	return cmd
}

func newCertsInitCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create the device CA, the fabric CA and the API token key pair",
		Long: `Create a certificate directory: device-ca.crt/.key ("Weft Device CA"),
fabric-ca.crt/.key ("Weft Fabric CA"), both ECDSA P-256 and valid for 10
years, and the Ed25519 token key pair token.key/token.pub.

init refuses to touch a directory that already holds a CA, the token key,
index.json or crl.pem. With --force it replaces the CAs and the token key
and removes index.json and crl.pem: every certificate issued before stops
verifying.`,
		Args: cobra.NoArgs,
	}
	force := cmd.Flags().Bool("force", false, "replace existing CAs and token key")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := certs.Init(certsDir(cmd), *force); err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "created device CA, fabric CA and token key pair in %s\n", certsDir(cmd))
		return nil
	}
	return cmd
}

func newCertsIssueCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "issue",
		Short: "Issue a device, gateway or node certificate with a new key",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newCertsIssueDeviceCmd(), newCertsIssueGatewayCmd(), newCertsIssueNodeCmd(), newCertsIssueServerCmd())
	return cmd
}

func newCertsIssueDeviceCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "device",
		Short: "Issue a device certificate, signed by the device CA",
		Long: `Make a key and a device certificate, signed by the device CA, written to
devices/ID.crt and devices/ID.key. The certificate names the device with the
URI SAN weft://device/CLASS/ID and allows client authentication. ID and
CLASS are 1 to 128 characters from [A-Za-z0-9._-].`,
		Example: "  weft certs issue device --dir certs --id pump-0042 --class pump",
		Args:    cobra.NoArgs,
	}
	id := cmd.Flags().String("id", "", "device id (required)")
	class := cmd.Flags().String("class", "", "device class (required)")
	cmd.MarkFlagRequired("id")
	cmd.MarkFlagRequired("class")
	issueWith(cmd, func(a *certs.Authority, v time.Duration) (*certs.Issued, error) {
		return a.IssueDevice(*id, *class, v)
	})
	return cmd
}

func newCertsIssueGatewayCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "gateway",
		Short: "Issue a gateway server certificate, signed by the device CA",
		Long: `Make a key and a server certificate for a device gateway, signed by the
device CA (devices verify the gateway against the one CA they hold),
written to gateways/NAME.crt and gateways/NAME.key. It carries the URI SAN
weft://gateway/NAME and each --host as a DNS name or IP address SAN.`,
		Example: "  weft certs issue gateway --dir certs --name gw-1 --host gw-1.example.com,10.0.0.5",
		Args:    cobra.NoArgs,
	}
	name := cmd.Flags().String("name", "", "gateway name (required)")
	hosts := cmd.Flags().StringSlice("host", nil, "DNS name or IP address devices connect to; repeat or separate with commas (required)")
	cmd.MarkFlagRequired("name")
	cmd.MarkFlagRequired("host")
	issueWith(cmd, func(a *certs.Authority, v time.Duration) (*certs.Issued, error) {
		return a.IssueGateway(*name, *hosts, v)
	})
	return cmd
}

func newCertsIssueNodeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Issue an edge or core node certificate, signed by the fabric CA",
		Long: `Make a key and a certificate for an edge or core node, signed by the fabric
CA, written to nodes/NAME.crt and nodes/NAME.key. It allows both server
and client authentication (sync links are mutual TLS over QUIC) and
carries the URI SAN weft://node/ROLE/NAME and each --host as a DNS name or
IP address SAN.`,
		Example: "  weft certs issue node --dir certs --role edge --name truck-7 --host truck-7.example.com",
		Args:    cobra.NoArgs,
	}
	role := cmd.Flags().String("role", "", "node role: edge or core (required)")
	name := cmd.Flags().String("name", "", "node name (required)")
	hosts := cmd.Flags().StringSlice("host", nil, "DNS name or IP address the node is reached at; repeat or separate with commas (required)")
	cmd.MarkFlagRequired("role")
	cmd.MarkFlagRequired("name")
	cmd.MarkFlagRequired("host")
	issueWith(cmd, func(a *certs.Authority, v time.Duration) (*certs.Issued, error) {
		return a.IssueNode(*role, *name, *hosts, v)
	})
	return cmd
}

func newCertsIssueServerCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Issue an HTTPS certificate for a node's API and console, signed by the fabric CA",
		Long: `Make a key and a TLS server certificate for the HTTPS listener of weft core
or weft edge (--http-tls-cert, --http-tls-key), signed by the fabric CA, for
operators without a PKI of their own, written to servers/NAME.crt and
servers/NAME.key. It carries each --host as a DNS name or IP address SAN;
clients trust it with fabric-ca.crt (curl --cacert C/fabric-ca.crt, or the
CA added to the browser's or system's store). A node serving it reads the
files again when they change, so reissuing needs no restart.`,
		Example: "  weft certs issue server --dir certs --name core-1 --host core-1.example.com,10.0.0.5",
		Args:    cobra.NoArgs,
	}
	name := cmd.Flags().String("name", "", "server name, its certificate's common name (required)")
	hosts := cmd.Flags().StringSlice("host", nil, "DNS name or IP address clients reach the node at; repeat or separate with commas (required)")
	cmd.MarkFlagRequired("name")
	cmd.MarkFlagRequired("host")
	withAuthority(cmd, func(a *certs.Authority, v time.Duration) error {
		certPEM, keyPEM, err := node.IssueHTTPS(a.FabricCA, *name, *hosts, v, time.Now())
		if err != nil {
			return err
		}
		dir := filepath.Join(a.Dir, "servers")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		certFile, keyFile := filepath.Join(dir, *name+".crt"), filepath.Join(dir, *name+".key")
		// The key first: a node reloading sees a new pair only once the
		// certificate follows it.
		if err := writeAtomic(keyFile, keyPEM, 0o600); err != nil {
			return err
		}
		if err := writeAtomic(certFile, certPEM, 0o644); err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "issued HTTPS certificate %s for %s\n  %s\n  %s\n", *name, strings.Join(*hosts, ", "), certFile, keyFile)
		return nil
	})
	return cmd
}

// writeAtomic writes data to path through a temporary file renamed over
// it, so that a reader sees the old file or the new one.
func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func newCertsSignCSRCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sign-csr",
		Short: "Sign a device's certificate request (the device keeps its key)",
		Long: `Sign a PEM certificate request made by a device, for a factory line where
the key never leaves the device. The device id is the request's subject
common name; the class is given with --class. If the request carries the
URI SAN weft://device/CLASS/ID it must name the same class and id; other
SANs in it are ignored. The key must be ECDSA P-256. The certificate is
written to --out ("-" for standard output) and recorded in index.json.`,
		Example: `  openssl ecparam -name prime256v1 -genkey -noout -out dev.key
  openssl req -new -key dev.key -subj /CN=pump-0042 -out dev.csr
  weft certs sign-csr --dir certs --csr dev.csr --class pump --out dev.crt`,
		Args: cobra.NoArgs,
	}
	csrFile := cmd.Flags().String("csr", "", "PEM certificate request file (required)")
	class := cmd.Flags().String("class", "", "device class (required)")
	out := cmd.Flags().String("out", "", `certificate file to write, "-" for standard output (required)`)
	cmd.MarkFlagRequired("csr")
	cmd.MarkFlagRequired("class")
	cmd.MarkFlagRequired("out")
	validity := addDaysFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		v, err := validity()
		if err != nil {
			return err
		}
		csr, err := os.ReadFile(*csrFile)
		if err != nil {
			return err
		}
		a, err := loadCerts(cmd)
		if err != nil {
			return err
		}
		iss, err := a.SignCSR(csr, *class, v)
		if err != nil {
			return err
		}
		if *out == "-" {
			_, err := cmd.OutOrStdout().Write(iss.CertPEM)
			return err
		}
		if err := os.WriteFile(*out, iss.CertPEM, 0o644); err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "signed %s serial %s, valid until %s\n  %s\n",
			iss.Subject(), iss.Serial, iss.NotAfter.Format(time.RFC3339), *out)
		return nil
	}
	return cmd
}

func newCertsRevokeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "revoke",
		Short: "Revoke a device's certificates or a certificate by serial, updating crl.pem",
		Long: `Revoke every certificate of a device (--device) or one certificate by
serial number (--serial, in hex, colons allowed), and rewrite crl.pem,
signed by the device CA, with a higher CRL number. Gateways and nodes that
watch this crl.pem reload it within a second and refuse the revoked
certificates from then on, resumed TLS sessions included. Copy crl.pem to
gateways and nodes that use another directory.`,
		Example: "  weft certs revoke --dir certs --device pump-0042\n  weft certs revoke --dir certs --serial 3f9a0c...",
		Args:    cobra.NoArgs,
	}
	device := cmd.Flags().String("device", "", "device id whose certificates to revoke")
	serial := cmd.Flags().String("serial", "", "serial number (hex) of the certificate to revoke")
	cmd.MarkFlagsOneRequired("device", "serial")
	cmd.MarkFlagsMutuallyExclusive("device", "serial")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		a, err := loadCerts(cmd)
		if err != nil {
			return err
		}
		var revoked []certs.Entry
		if *device != "" {
			if revoked, err = a.RevokeDevice(*device); err != nil {
				return err
			}
			if len(revoked) == 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "device %s: every certificate was already revoked\n", *device)
				return nil
			}
		} else {
			n, err := certs.ParseSerial(*serial)
			if err != nil {
				return err
			}
			e, err := a.Revoke(n)
			if err != nil {
				return err
			}
			revoked = []certs.Entry{e}
		}
		for _, e := range revoked {
			fmt.Fprintf(cmd.OutOrStdout(), "revoked %s %s\n", e.Serial, e.Subject())
		}
		fmt.Fprintf(cmd.OutOrStdout(), "wrote %s\n", a.CRLFile())
		return nil
	}
	return cmd
}

func newCertsLsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List the certificates issued from the directory",
		Long: `List every certificate recorded in index.json, in the order issued, with
its serial, kind, identity, expiry and status (valid, expired or revoked).
Serials revoked without having been issued here show kind and identity "-".`,
		Args: cobra.NoArgs,
	}
	output := cmd.Flags().StringP("output", "o", "table", "output format: table or json")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if *output != "table" && *output != "json" {
			return fmt.Errorf("--output must be table or json, not %q", *output)
		}
		a, err := loadCerts(cmd)
		if err != nil {
			return err
		}
		entries, err := a.List()
		if err != nil {
			return err
		}
		if *output == "json" {
			if entries == nil {
				entries = []certs.Entry{}
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(entries)
		}
		now := time.Now()
		w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "SERIAL\tKIND\tIDENTITY\tNOT AFTER\tSTATUS")
		for _, e := range entries {
			kind, notAfter := string(e.Kind), "-"
			if kind == "" {
				kind = "-"
			}
			if !e.NotAfter.IsZero() {
				notAfter = e.NotAfter.Format(time.RFC3339)
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", e.Serial, kind, e.Subject(), notAfter, e.Status(now))
		}
		return w.Flush()
	}
	return cmd
}

func newTokenCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Create API tokens offline, or issue, list and revoke them through the core's API",
		Long: `weft token create signs a token offline with the certificate directory's
token.key. weft token issue, ls and revoke call a running node's API (the
core) with an admin token, as the other commands against a running node do
(--server, --token, or the context saved by weft login).`,
		Args: cobra.NoArgs,
	}
	rf := &remoteFlags{}
	remote := []*cobra.Command{newTokenIssueCmd(rf), newTokenLsCmd(rf), newTokenRevokeCmd(rf)}
	for _, c := range remote {
		addRemoteFlagsTo(c, rf)
	}
	cmd.AddCommand(append([]*cobra.Command{newTokenCreateCmd()}, remote...)...)
	return cmd
}

func newTokenCreateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Print a signed API token (JWT)",
		Long: `Print an API token for the core's HTTP API: a JWT signed with EdDSA by the
directory's token.key, with iss "weft", aud "weft-api", the subject, the
role (viewer, operator or admin; each allows what the lower ones do), an
optional scope and an expiry. Scope keys are class, device, edge and site;
a scoped token applies only to the matching devices. Send it as
"Authorization: Bearer TOKEN".

The token goes to standard output; its id (the jti claim), by which
weft token revoke revokes it, to standard error.`,
		Example: "  weft token create --dir certs --role operator --subject alice --scope class=pump,edge=truck-7 --ttl 8h",
		Args:    cobra.NoArgs,
	}
	cmd.Flags().String("dir", "", "certificate directory holding token.key (required)")
	cmd.MarkFlagRequired("dir")
	role := cmd.Flags().String("role", "", "role: viewer, operator or admin (required)")
	ttl := cmd.Flags().Duration("ttl", 24*time.Hour, "how long the token is valid")
	subject := cmd.Flags().String("subject", "weft-cli", "who the token is for (its sub claim)")
	scope := cmd.Flags().StringToString("scope", nil, "restrict the token, as key=value pairs separated by commas (keys: class, device, edge, site)")
	cmd.MarkFlagRequired("role")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		a, err := loadCerts(cmd)
		if err != nil {
			return err
		}
		tok, err := certs.IssueToken(a.TokenKey, certs.TokenClaims{
			Subject: *subject,
			Role:    certs.Role(*role),
			Scope:   *scope,
		}, *ttl)
		if err != nil {
			return err
		}
		fmt.Fprintln(cmd.OutOrStdout(), tok)
		if claims, err := certs.VerifyToken(a.TokenPublicKey, tok, "", time.Now()); err == nil {
			fmt.Fprintf(cmd.ErrOrStderr(), "token id %s (revoke with: weft token revoke %s)\n", claims.ID, claims.ID)
		}
		return nil
	}
	return cmd
}
