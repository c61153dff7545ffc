package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"time"

	"github.com/spf13/cobra"

	"github.com/weft-io/weft/internal/apiclient"
)

// This file holds the token commands that call a running node (weft token
// issue, ls, revoke) and weft signin-link.

// tokenColumns are the columns of weft token ls.
var tokenColumns = []column{
	field("ID", "id"), field("SUBJECT", "subject"), field("ROLE", "role"), field("SCOPE", "scope"),
	field("EXPIRES", "expires"), field("LAST-USED", "last_used"), field("REVOKED", "revoked"),
}

func newTokenIssueCmd(rf *remoteFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "issue --role ROLE --subject S [--ttl 8h] [--scope k=v,...]",
		Short: "Have the core issue a token (POST /api/v1/tokens; admin)",
		Long: `Ask the node (the core, which holds token.key) to issue a token, and print
it. Unlike weft token create, which signs offline where the key is, the
token is listed by weft token ls from the start. Needs an admin token.`,
		Example: "  weft token issue --role viewer --subject dashboards --ttl 720h",
		Args:    cobra.NoArgs,
	}
	role := cmd.Flags().String("role", "", "role: viewer, operator or admin (required)")
	subject := cmd.Flags().String("subject", "", "who the token is for (required)")
	ttl := cmd.Flags().Duration("ttl", 24*time.Hour, "how long the token is valid")
	scope := cmd.Flags().StringToString("scope", nil, "restrict the token, as key=value pairs separated by commas (keys: class, device, edge, site)")
	cmd.MarkFlagRequired("role")
	cmd.MarkFlagRequired("subject")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := rf.client()
		if err != nil {
			return err
		}
		body, err := json.Marshal(map[string]any{"role": *role, "subject": *subject, "ttl": ttl.String(), "scope": *scope})
		if err != nil {
			return err
		}
		var out struct {
			ID      string    `json:"id"`
			Token   string    `json:"token"`
			Expires time.Time `json:"expires"`
		}
		if _, err := c.Do(cmd.Context(), apiclient.Request{Method: "POST", Path: "/api/v1/tokens", Body: body}, &out); err != nil {
			return err
		}
		fmt.Fprintln(cmd.OutOrStdout(), out.Token)
		fmt.Fprintf(cmd.ErrOrStderr(), "token id %s, valid until %s (revoke with: weft token revoke %s)\n", out.ID, out.Expires.Format(time.RFC3339), out.ID)
		return nil
	}
	return cmd
}

func newTokenLsCmd(rf *remoteFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List the tokens the node issued and revoked (GET /api/v1/tokens; admin)",
		Long: `List the tokens the node knows of, without their secret: those issued by
the core (weft token issue, sign-in links) and those revoked (including
tokens made offline by weft token create). LAST-USED is the last request
the node saw with the token since it started. Needs an admin token.`,
		Example: "  weft token ls\n  weft token ls -o json",
		Args:    cobra.NoArgs,
	}
	out := addListOutput(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := rf.client()
		if err != nil {
			return err
		}
		var list struct {
			Tokens []any `json:"tokens"`
		}
		if err := c.Get(cmd.Context(), "/api/v1/tokens", nil, &list); err != nil {
			return err
		}
		return printItems(cmd.OutOrStdout(), *out, list.Tokens, tokenColumns)
	}
	return cmd
}

func newTokenRevokeCmd(rf *remoteFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "revoke ID...",
		Short: "Revoke tokens by id (DELETE /api/v1/tokens/ID; admin)",
		Long: `Revoke tokens by their id: one the core issued, or one made offline by
weft token create (which prints its id). From then on the core refuses the
token with 401 reason revoked, and every edge does once the revocation has
come down its link (within a second or two while the link is up). Needs an
admin token.`,
		Example: "  weft token revoke Q3ZK7XW2JMB4TPLR",
		Args:    cobra.MinimumNArgs(1),
	}
	cmd.RunE = func(cmd *cobra.Command, ids []string) error {
		c, err := rf.client()
		if err != nil {
			return err
		}
		for _, id := range ids {
			if _, err := c.Do(cmd.Context(), apiclient.Request{Method: "DELETE", Path: "/api/v1/tokens/" + url.PathEscape(id)}, nil); err != nil {
				return fmt.Errorf("revoke %s: %w", id, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked %s\n", id)
		}
		return nil
	}
	return cmd
}

func newSigninLinkCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "signin-link",
		Short: "Print a fresh one-time sign-in link to the node's console (admin)",
		Long: `Ask the node for a fresh one-time link to its web console (POST
/api/v1/signin-links) and print it. Opened in a browser, the link shows a
Sign in button that signs in once; it is valid 24 hours. With the core's
token key the link carries a new token with the caller's subject and role
(listed by weft token ls, revocable); otherwise the caller's own token.
The link's host is the --server's. Needs an admin token.`,
		Example: "  weft signin-link --server http://127.0.0.1:8080 --token $ADMIN",
		Args:    cobra.NoArgs,
	}
	rf := addRemoteFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := rf.client()
		if err != nil {
			return err
		}
		var out struct {
			URL string `json:"url"`
		}
		if _, err := c.Do(cmd.Context(), apiclient.Request{Method: "POST", Path: "/api/v1/signin-links"}, &out); err != nil {
			return err
		}
		fmt.Fprintln(cmd.OutOrStdout(), out.URL)
		return nil
	}
	return cmd
}
