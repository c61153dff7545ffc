package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/weft-io/weft/device"
	"github.com/weft-io/weft/firmware"
	"github.com/weft-io/weft/internal/apiclient"
)

func newFirmwareCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "firmware",
		Short: "Sign firmware offline, publish it to the core, list releases",
		Long: `Firmware releases are an image plus a manifest signed offline (COSE_Sign1,
Ed25519) with a key the core never holds. keygen makes a signing key, sign
writes a manifest, keyset writes a key set and its signed rotation, publish
uploads a release to the core, which verifies it before storing it under
/firmware; rollout sends a release to the fleet in waves; agent runs a
device's firmware agent. See docs/firmware.md.`,
	}
	cmd.AddCommand(newFirmwareKeygenCmd(), newFirmwareSignCmd(), newFirmwareKeysetCmd(), newFirmwarePublishCmd(), newFirmwareLsCmd(), newFirmwareAgentCmd(),
		newFirmwareRolloutCmd())
	return cmd
}

func newFirmwareKeygenCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "keygen --out DIR",
		Short: "Make an Ed25519 firmware signing key and print its key id",
		Long: `keygen writes DIR/firmware.key (the private key, PKCS#8 PEM, mode 0600; an
existing one is never overwritten) and DIR/firmware.pub.json (the public
key with its id), and prints the key id. Keep the private key offline: the
core needs only the public key, in its firmware-keys.json.`,
		Example: `  weft firmware keygen --out ~/offline/fw-key-1`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			priv, err := firmware.GenerateKey()
			if err != nil {
				return err
			}
			k, err := firmware.WriteKeyPair(out, priv)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), k.ID)
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "directory to write firmware.key and firmware.pub.json into (required)")
	cmd.MarkFlagRequired("out")
	return cmd
}

// parseNotAfter reads --not-after: a duration from now or an RFC 3339 time.
func parseNotAfter(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d <= 0 {
			return time.Time{}, fmt.Errorf("--not-after %s: want a positive duration", s)
		}
		return now.Add(d).Truncate(time.Second), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("--not-after %q: want a duration (720h) or an RFC 3339 time", s)
	}
	return t, nil
}

func newFirmwareSignCmd() *cobra.Command {
	var key, image, name, ver, class, notAfter, notBefore, out string
	var devices []string
	cmd := &cobra.Command{
		Use:   "sign --key KEY --image FILE --name NAME --version X.Y.Z --class CLASS --out FILE",
		Short: "Write a signed manifest for a firmware image",
		Long: `sign hashes the image and writes a manifest: a COSE_Sign1 over the
deterministic CBOR of name, version, class, device list, SHA-256 and size
of the image, validity times and key id. The image is not in the manifest;
publish both. --device (repeatable) restricts the release to those devices;
--not-after is a duration from now (720h) or an RFC 3339 time.`,
		Example: `  weft firmware sign --key ~/offline/fw-key-1/firmware.key --image sensor-1.2.0.bin \
    --name sensor-fw --version 1.2.0 --class thermo --not-after 2160h --out sensor-1.2.0.cose`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			priv, err := firmware.ReadPrivateKey(key)
			if err != nil {
				return err
			}
			v, err := firmware.ParseVersion(ver)
			if err != nil {
				return err
			}
			now := time.Now()
			na, err := parseNotAfter(notAfter, now)
			if err != nil {
				return err
			}
			var nb time.Time
			if notBefore != "" {
				if nb, err = time.Parse(time.RFC3339, notBefore); err != nil {
					return fmt.Errorf("--not-before %q: want an RFC 3339 time", notBefore)
				}
			}
			f, err := os.Open(image)
			if err != nil {
				return err
			}
			defer f.Close()
			h := sha256.New()
			size, err := io.Copy(h, f)
			if err != nil {
				return fmt.Errorf("read %s: %w", image, err)
			}
			m := firmware.Manifest{Name: name, Version: v, Class: class, Devices: devices, Size: size, NotBefore: nb, NotAfter: na}
			copy(m.SHA256[:], h.Sum(nil))
			b, err := firmware.Sign(m, priv)
			if err != nil {
				return err
			}
			if err := os.WriteFile(out, b, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s class %s: %d bytes sha256 %x, key %s -> %s\n", name, v, class, size, m.SHA256, firmware.KeyID(priv.Public().(ed25519.PublicKey)), out)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&key, "key", "", "private key file written by weft firmware keygen (required)")
	fl.StringVar(&image, "image", "", "firmware image file (required)")
	fl.StringVar(&name, "name", "", "firmware name (required)")
	fl.StringVar(&ver, "version", "", "version X.Y.Z (required)")
	fl.StringVar(&class, "class", "", "hardware class (required)")
	fl.StringSliceVar(&devices, "device", nil, "device id that may install it (repeatable; default: every device of the class)")
	fl.StringVar(&notAfter, "not-after", "", "expiry: a duration from now (720h) or an RFC 3339 time (default: none)")
	fl.StringVar(&notBefore, "not-before", "", "start of validity, RFC 3339 (default: none)")
	fl.StringVar(&out, "out", "", "manifest file to write (required)")
	for _, f := range []string{"key", "image", "name", "version", "class", "out"} {
		cmd.MarkFlagRequired(f)
	}
	return cmd
}

func newFirmwareKeysetCmd() *cobra.Command {
	var pubs, signers []string
	var ver uint64
	var threshold int
	var out, doc string
	cmd := &cobra.Command{
		Use:   "keyset --pub FILE... --version N --threshold T --out FILE [--sign KEY... --doc FILE]",
		Short: "Write a firmware key set, and the signed document that rotates devices to it",
		Long: `keyset writes the key set made of the public keys given (--pub, files
written by keygen) as JSON: the core's certs/firmware-keys.json, and what a
device pins first. With --sign it also writes --doc, the rotation document
devices accept: one signature per --sign key over the set. Devices accept
it only when it is signed by a threshold of the keys they pin and a
threshold of the new set, at a version above theirs; a key left out of the
new set is revoked.`,
		Example: `  weft firmware keyset --pub k1/firmware.pub.json --pub k3/firmware.pub.json --version 2 --threshold 1 \
    --out firmware-keys.json --sign k1/firmware.key --sign k2/firmware.key --doc keyset-2.cbor`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			set := firmware.KeySet{Version: ver, Threshold: threshold}
			for _, p := range pubs {
				k, err := firmware.ReadPublicKey(p)
				if err != nil {
					return err
				}
				set.Keys = append(set.Keys, k)
			}
			if err := set.Check(); err != nil {
				return err
			}
			if err := firmware.WriteKeySet(out, set); err != nil {
				return err
			}
			if len(signers) > 0 {
				if doc == "" {
					return fmt.Errorf("--sign needs --doc, the file to write the rotation document to")
				}
				var privs []ed25519.PrivateKey
				for _, s := range signers {
					k, err := firmware.ReadPrivateKey(s)
					if err != nil {
						return err
					}
					privs = append(privs, k)
				}
				b, err := firmware.SignKeySet(set, privs...)
				if err != nil {
					return err
				}
				if err := os.WriteFile(doc, b, 0o644); err != nil {
					return err
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "key set version %d, %d keys, threshold %d -> %s\n", set.Version, len(set.Keys), set.Threshold, out)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&pubs, "pub", nil, "public key file (firmware.pub.json) of the set (repeatable, required)")
	fl.Uint64Var(&ver, "version", 1, "version of the set; a rotation must be above the pinned one")
	fl.IntVar(&threshold, "threshold", 1, "signatures of this set the next rotation needs")
	fl.StringVar(&out, "out", "", "JSON key set file to write (required)")
	fl.StringArrayVar(&signers, "sign", nil, "private key to sign the rotation document with (repeatable)")
	fl.StringVar(&doc, "doc", "", "rotation document to write (with --sign)")
	cmd.MarkFlagRequired("pub")
	cmd.MarkFlagRequired("out")
	return cmd
}

// publishBody is the multipart body of POST /api/v1/firmware/releases.
// apiclient sends bodies from memory, so the image is read whole.
func publishBody(manifest []byte, imagePath string) (string, []byte, error) {
	img, err := os.Open(imagePath)
	if err != nil {
		return "", nil, err
	}
	defer img.Close()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	w, _ := mw.CreateFormFile("manifest", "manifest.cose")
	w.Write(manifest)
	w, _ = mw.CreateFormFile("image", filepath.Base(imagePath))
	if _, err := io.Copy(w, img); err != nil {
		return "", nil, fmt.Errorf("read %s: %w", imagePath, err)
	}
	if err := mw.Close(); err != nil {
		return "", nil, err
	}
	return mw.FormDataContentType(), buf.Bytes(), nil
}

func newFirmwarePublishCmd() *cobra.Command {
	var rf *remoteFlags
	cmd := &cobra.Command{
		Use:   "publish IMAGE MANIFEST",
		Short: "Upload a signed release to the core",
		Long: `publish uploads an image and its signed manifest (POST
/api/v1/firmware/releases, admin role). The core verifies the manifest
against its trusted keys and the image against the manifest before storing
either; a refusal names its reason (unknown_key, bad_signature,
hash_mismatch, not_newer...). Edges receive the release as a mirror of
/firmware.`,
		Example: `  weft firmware publish --server https://core:8443 --token "$TOKEN" sensor-1.2.0.bin sensor-1.2.0.cose`,
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := rf.client()
			if err != nil {
				return err
			}
			manifest, err := os.ReadFile(args[1])
			if err != nil {
				return err
			}
			ct, body, err := publishBody(manifest, args[0])
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
			defer stop()
			var rel firmware.Release
			if _, err := c.Do(ctx, apiclient.Request{Method: http.MethodPost, Path: "/api/v1/firmware/releases",
				Header: http.Header{"Content-Type": {ct}}, Body: body}, &rel); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "published %s %s class %s (%d bytes, key %s) at %s\n", rel.Name, rel.Version, rel.Class, rel.Size, rel.KeyID, strings.TrimSuffix(rel.ManifestPath, "/"+firmware.ManifestFile))
			return nil
		},
	}
	rf = addRemoteFlags(cmd)
	return cmd
}

func newFirmwareLsCmd() *cobra.Command {
	var rf *remoteFlags
	var format *listFormat
	cmd := &cobra.Command{
		Use:     "ls",
		Short:   "List the firmware releases of a node",
		Long:    `ls lists the releases a node holds (GET /api/v1/firmware/releases): at the core what was published, at an edge its mirror.`,
		Example: `  weft firmware ls -o json`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := rf.client()
			if err != nil {
				return err
			}
			var resp struct {
				Releases []map[string]any `json:"releases"`
			}
			if err := c.Get(cmd.Context(), "/api/v1/firmware/releases", nil, &resp); err != nil {
				return err
			}
			items := make([]any, len(resp.Releases))
			for i, r := range resp.Releases {
				items[i] = r
			}
			return printItems(cmd.OutOrStdout(), *format, items, []column{
				field("NAME", "name"), field("VERSION", "version"), field("CLASS", "class"), field("SIZE", "size"),
				field("KEY", "key_id"), field("NOT-AFTER", "not_after"), field("PUBLISHED", "published"),
			})
		},
	}
	rf = addRemoteFlags(cmd)
	format = addListOutput(cmd)
	return cmd
}

func newFirmwareAgentCmd() *cobra.Command {
	var cfg device.AgentConfig
	var certsDir, gw, apiURL, token, keys, ver string
	var mtls bool
	cmd := &cobra.Command{
		Use:   "agent --certs DIR --id ID --class CLASS --dir DIR --keys FILE --gateway ADDR --api URL",
		Short: "Run a device's firmware agent against its edge",
		Long: `agent connects as device ID (its certificate from --certs, issued there if
the directory holds the device CA key) to the gateway, and installs the
firmware it is sent: it verifies each manifest against the keys it pins
(--keys on first start, then its own state in --dir), fetches the release
from the edge's API (--api, with --token), from the edge's device firmware
listener with its certificate as credential (--api with --mtls), or,
without --api, over its MQTT connection in 64 KiB chunks from the edge,
writes it to the inactive slot
under --dir, boots it on trial and commits. It reports every step to
devices/<id>/firmware/status and its running version to the shadow. This is
the reference agent the tests run; a real device does the same on its own
hardware.`,
		Example: `  weft firmware agent --certs certs --id therm-1 --class thermo --dir /var/lib/fw-agent \
    --keys firmware-keys.json --gateway edge-1:8883 --api https://edge-1:8443 --token "$TOKEN"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if ver != "" {
				v, err := firmware.ParseVersion(ver)
				if err != nil {
					return err
				}
				cfg.Version = v
			}
			if keys != "" {
				set, err := firmware.ReadKeySet(keys)
				if err != nil {
					return err
				}
				cfg.Keys = set
			}
			if mtls && apiURL == "" {
				return errors.New("--mtls needs --api: the URL of the edge's device firmware listener")
			}
			// With --mtls, the device's certificate and the device CA,
			// loaded below, go into this configuration before any request.
			var mtlsConfig *tls.Config
			if apiURL != "" {
				src := &device.HTTPSource{Base: apiURL, Token: token}
				if mtls {
					mtlsConfig = &tls.Config{MinVersion: tls.VersionTLS12}
					src.Client = &http.Client{Transport: &http.Transport{TLSClientConfig: mtlsConfig}}
				}
				cfg.Source = src
			}
			cfg.Logger = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			a, err := device.NewAgent(cfg)
			if err != nil {
				return err
			}
			creds, pool, err := device.Credentials(certsDir, []string{cfg.ID}, cfg.Class)
			if err != nil {
				return err
			}
			if mtlsConfig != nil {
				mtlsConfig.RootCAs, mtlsConfig.Certificates = pool, creds[:1]
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			fmt.Fprintf(cmd.OutOrStdout(), "device %s runs firmware %s; Ctrl-C stops the agent\n", cfg.ID, a.Version())
			return a.Run(ctx, device.DialConfig{Addr: gw, Roots: pool}, creds[0])
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&certsDir, "certs", "", "certificate directory holding the device's certificate or the device CA (required)")
	fl.StringVar(&cfg.ID, "id", "", "device id (required)")
	fl.StringVar(&cfg.Class, "class", "", "device class (required)")
	fl.StringVar(&cfg.Dir, "dir", "", "the agent's state and slots (required)")
	fl.StringVar(&keys, "keys", "", "key set to pin on first start (JSON, as weft firmware keyset writes)")
	fl.StringVar(&ver, "version", "", "version running on first start (default 0.0.0)")
	fl.StringVar(&gw, "gateway", "127.0.0.1:8883", "gateway address")
	fl.StringVar(&apiURL, "api", "", "URL of the edge's API to fetch releases from (default: over MQTT in chunks)")
	fl.StringVar(&token, "token", "", "API token to fetch releases with (viewer role)")
	fl.BoolVar(&mtls, "mtls", false, "fetch from --api with the device's certificate, verifying the server against the device CA (the edge's device firmware listener)")
	fl.Int64Var(&cfg.MaxImageSize, "max-image", device.DefaultMaxImageSize, "largest image the device takes, in bytes")
	for _, f := range []string{"certs", "id", "class", "dir"} {
		cmd.MarkFlagRequired(f)
	}
	return cmd
}
