// Command image builds Weft's OCI image from nothing, without a registry,
// a base image or a container daemon: it cross-builds a static cmd/weft
// (CGO_ENABLED=0, -trimpath) for each platform and writes an OCI image
// layout (https://github.com/opencontainers/image-spec/blob/main/image-layout.md)
// whose index.json lists one image manifest per platform, named
// TAG-ARCH (org.opencontainers.image.ref.name).
//
//	go run ./deploy/image --out DIR [--platform linux/amd64,linux/arm64] [--version V] [--tag T]
//
// Each image has one layer: /weft (root-owned, 0755), /etc/passwd and
// /etc/group with root and nonroot (65532), the CA certificates of the
// build host for outbound HTTPS such as OIDC keys (--ca-certs),
// /home/nonroot, /tmp and the data directory /var/lib/weft owned by
// nonroot. Its config runs /weft as
// 65532:65532 in /var/lib/weft, which is also a volume. There is no shell.
// File times are SOURCE_DATE_EPOCH (default 0), so the same binaries give
// the same digests. docs/deploy.md#the-image says how to load or push it.
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

const (
	mediaIndex    = "application/vnd.oci.image.index.v1+json"
	mediaManifest = "application/vnd.oci.image.manifest.v1+json"
	mediaConfig   = "application/vnd.oci.image.config.v1+json"
	mediaLayer    = "application/vnd.oci.image.layer.v1.tar+gzip"

	// nonroot is the uid and gid the image runs as: the Kubernetes
	// manifests' runAsUser.
	nonroot = 65532
	dataDir = "/var/lib/weft"
)

func main() {
	var (
		out       = flag.String("out", "", "directory to write the OCI image layout to (required; created, must be empty)")
		platforms = flag.String("platform", "linux/amd64,linux/arm64", "comma-separated os/arch list")
		version   = flag.String("version", "dev", "version the binary reports (weft version), set with -X main.version")
		tag       = flag.String("tag", "", "name of the images in the layout: each manifest's org.opencontainers.image.ref.name is TAG-ARCH (default: --version)")
		caCerts   = flag.String("ca-certs", "/etc/ssl/certs/ca-certificates.crt", "CA bundle copied to /etc/ssl/certs/ca-certificates.crt, for outbound HTTPS such as an OIDC provider's keys; empty: none")
		pkg       = flag.String("pkg", "github.com/weft-io/weft/cmd/weft", "main package to build")
	)
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "Usage: go run ./deploy/image --out DIR [flags]\n\nBuild the weft OCI image layout, one image per platform, from nothing.\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *out == "" || flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	if *tag == "" {
		*tag = *version
	}
	cfg := config{out: *out, version: *version, tag: *tag, pkg: *pkg, caCerts: *caCerts}
	for _, p := range strings.Split(*platforms, ",") {
		osName, arch, ok := strings.Cut(strings.TrimSpace(p), "/")
		if !ok || osName != "linux" || arch == "" {
			fmt.Fprintf(os.Stderr, "image: platform %q: want linux/<arch>\n", p)
			os.Exit(2)
		}
		cfg.platforms = append(cfg.platforms, platform{OS: osName, Architecture: arch})
	}
	if err := build(cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

type config struct {
	out, version, tag, pkg, caCerts string
	platforms                       []platform
}

type platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Variant      string `json:"variant,omitempty"`
}

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Platform    *platform         `json:"platform,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// build writes the layout: oci-layout, blobs/sha256/*, index.json.
func build(cfg config) error {
	if err := os.MkdirAll(filepath.Join(cfg.out, "blobs", "sha256"), 0o755); err != nil {
		return fmt.Errorf("image: %w", err)
	}
	if ents, _ := os.ReadDir(cfg.out); len(ents) > 1 {
		return fmt.Errorf("image: %s is not empty", cfg.out)
	}
	epoch, err := sourceDateEpoch()
	if err != nil {
		return err
	}
	var ca []byte
	if cfg.caCerts != "" {
		if ca, err = os.ReadFile(cfg.caCerts); err != nil {
			return fmt.Errorf("image: CA certificates (--ca-certs \"\" to leave them out): %w", err)
		}
	}
	bin, err := os.MkdirTemp("", "weft-image-")
	if err != nil {
		return fmt.Errorf("image: %w", err)
	}
	defer os.RemoveAll(bin)

	var manifests []descriptor
	for _, p := range cfg.platforms {
		if p.Architecture == "arm64" {
			p.Variant = "v8"
		}
		exe := filepath.Join(bin, "weft-"+p.Architecture)
		if err := goBuild(exe, p, cfg); err != nil {
			return err
		}
		layer, err := layerTar(exe, ca, epoch)
		if err != nil {
			return err
		}
		d, err := writeImage(cfg.out, p, layer, cfg, epoch)
		if err != nil {
			return err
		}
		manifests = append(manifests, d)
	}
	index, err := json.MarshalIndent(struct {
		SchemaVersion int          `json:"schemaVersion"`
		MediaType     string       `json:"mediaType"`
		Manifests     []descriptor `json:"manifests"`
	}{2, mediaIndex, manifests}, "", "  ")
	if err != nil {
		return fmt.Errorf("image: %w", err)
	}
	if err := os.WriteFile(filepath.Join(cfg.out, "index.json"), append(index, '\n'), 0o644); err != nil {
		return fmt.Errorf("image: %w", err)
	}
	return os.WriteFile(filepath.Join(cfg.out, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`+"\n"), 0o644)
}

func sourceDateEpoch() (time.Time, error) {
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		return time.Unix(0, 0).UTC(), nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("image: SOURCE_DATE_EPOCH: %w", err)
	}
	return time.Unix(n, 0).UTC(), nil
}

// goBuild cross-builds the static binary for p.
func goBuild(exe string, p platform, cfg config) error {
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version="+cfg.version, "-o", exe, cfg.pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Architecture)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("image: build %s for %s/%s: %w", cfg.pkg, p.OS, p.Architecture, err)
	}
	return nil
}

// layerTar is the image's only layer, uncompressed.
func layerTar(exe string, ca []byte, epoch time.Time) ([]byte, error) {
	weft, err := os.ReadFile(exe)
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	type entry struct {
		name     string
		mode     int64
		uid      int
		body     []byte
		dir      bool
		optional bool
	}
	entries := []entry{
		{name: "etc/", mode: 0o755, dir: true},
		{name: "etc/passwd", mode: 0o644, body: []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		{name: "etc/group", mode: 0o644, body: []byte("root:x:0:\nnonroot:x:65532:\n")},
		{name: "etc/ssl/", mode: 0o755, dir: true, optional: true},
		{name: "etc/ssl/certs/", mode: 0o755, dir: true, optional: true},
		{name: "etc/ssl/certs/ca-certificates.crt", mode: 0o644, body: ca, optional: true},
		{name: "home/", mode: 0o755, dir: true},
		{name: "home/nonroot/", mode: 0o700, uid: nonroot, dir: true},
		{name: "tmp/", mode: 0o1777, dir: true},
		{name: "var/", mode: 0o755, dir: true},
		{name: "var/lib/", mode: 0o755, dir: true},
		{name: strings.TrimPrefix(dataDir, "/") + "/", mode: 0o700, uid: nonroot, dir: true},
		{name: "weft", mode: 0o755, body: weft},
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		if e.optional && ca == nil {
			continue
		}
		h := &tar.Header{
			Name: e.name, Mode: e.mode, Uid: e.uid, Gid: e.uid,
			ModTime: epoch, Format: tar.FormatPAX,
			Typeflag: tar.TypeReg, Size: int64(len(e.body)),
		}
		if e.uid == nonroot {
			h.Uname, h.Gname = "nonroot", "nonroot"
		} else {
			h.Uname, h.Gname = "root", "root"
		}
		if e.dir {
			h.Typeflag, h.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("image: layer: %w", err)
		}
		if _, err := tw.Write(e.body); err != nil {
			return nil, fmt.Errorf("image: layer: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("image: layer: %w", err)
	}
	return buf.Bytes(), nil
}

// writeImage writes the layer, config and manifest blobs of one platform
// and returns the manifest's descriptor for index.json.
func writeImage(dir string, p platform, layer []byte, cfg config, epoch time.Time) (descriptor, error) {
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if err != nil {
		return descriptor{}, err
	}
	if _, err := zw.Write(layer); err != nil {
		return descriptor{}, fmt.Errorf("image: gzip: %w", err)
	}
	if err := zw.Close(); err != nil {
		return descriptor{}, fmt.Errorf("image: gzip: %w", err)
	}
	layerDesc, err := writeBlob(dir, mediaLayer, gz.Bytes())
	if err != nil {
		return descriptor{}, err
	}
	diffID := sha256.Sum256(layer)
	created := epoch.Format(time.RFC3339)
	user := strconv.Itoa(nonroot) + ":" + strconv.Itoa(nonroot)
	c := map[string]any{
		"created":      created,
		"architecture": p.Architecture,
		"os":           p.OS,
		"config": map[string]any{
			"User":       user,
			"Entrypoint": []string{"/weft"},
			"WorkingDir": dataDir,
			"Volumes":    map[string]struct{}{dataDir: {}},
			"Env":        []string{"HOME=/home/nonroot"},
			"Labels": map[string]string{
				"org.opencontainers.image.title":   "weft",
				"org.opencontainers.image.version": cfg.version,
				"org.opencontainers.image.source":  "https://github.com/weft-io/weft",
			},
		},
		"rootfs": map[string]any{
			"type":     "layers",
			"diff_ids": []string{"sha256:" + hex.EncodeToString(diffID[:])},
		},
		"history": []map[string]string{{
			"created":    created,
			"created_by": "go run ./deploy/image (static " + cfg.pkg + ")",
		}},
	}
	if p.Variant != "" {
		c["variant"] = p.Variant
	}
	imgConfig, err := json.Marshal(c)
	if err != nil {
		return descriptor{}, err
	}
	configDesc, err := writeBlob(dir, mediaConfig, imgConfig)
	if err != nil {
		return descriptor{}, err
	}
	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     mediaManifest,
		"config":        configDesc,
		"layers":        []descriptor{layerDesc},
		"annotations": map[string]string{
			"org.opencontainers.image.version": cfg.version,
		},
	})
	if err != nil {
		return descriptor{}, err
	}
	d, err := writeBlob(dir, mediaManifest, manifest)
	if err != nil {
		return descriptor{}, err
	}
	d.Platform = &p
	// One name per platform: tools that read a layout (skopeo, umoci,
	// podman) refuse a name that several manifests carry.
	d.Annotations = map[string]string{"org.opencontainers.image.ref.name": cfg.tag + "-" + p.Architecture}
	return d, nil
}

func writeBlob(dir, mediaType string, b []byte) (descriptor, error) {
	sum := sha256.Sum256(b)
	hexSum := hex.EncodeToString(sum[:])
	path := filepath.Join(dir, "blobs", "sha256", hexSum)
	if err := os.WriteFile(path, b, 0o644); err != nil && !errors.Is(err, os.ErrExist) {
		return descriptor{}, fmt.Errorf("image: %w", err)
	}
	return descriptor{MediaType: mediaType, Digest: "sha256:" + hexSum, Size: int64(len(b))}, nil
}
