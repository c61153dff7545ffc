package deploy

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

type ociDescriptor struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
	Platform  *struct {
		OS           string `json:"os"`
		Architecture string `json:"architecture"`
		Variant      string `json:"variant"`
	} `json:"platform"`
	Annotations map[string]string `json:"annotations"`
}

// layerFile is one tar entry of an image layer.
type layerFile struct {
	hdr  *tar.Header
	body []byte
}

// TestImage builds the OCI image layout for linux/amd64 and linux/arm64
// with the program docs/deploy.md#the-image gives (one build of each, so
// it is skipped with -short) and checks what a registry or runtime would
// get: the index's platforms, every blob's digest and size, each config
// (non-root user, entrypoint, working directory and volume, os/arch, the
// layer's diff id), each layer's files (no shell; /weft a static ELF of
// the platform's machine, owned by root; the data directory owned by the
// non-root user) and, for this machine's platform, that /weft runs.
func TestImage(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-builds cmd/weft twice")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	out := filepath.Join(t.TempDir(), "layout")
	const version = "v0.0.0-imagetest"
	args := []string{"run", "./image", "--out", out, "--platform", "linux/amd64,linux/arm64", "--version", version}
	const caPath = "/etc/ssl/certs/ca-certificates.crt"
	_, err = os.Stat(caPath)
	withCA := err == nil
	if !withCA {
		args = append(args, "--ca-certs", "")
	}
	cmd := exec.Command(goBin, args...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, b)
	}

	if b, err := os.ReadFile(filepath.Join(out, "oci-layout")); err != nil || !strings.Contains(string(b), `"imageLayoutVersion":"1.0.0"`) {
		t.Errorf("oci-layout: %q, %v", b, err)
	}
	var index struct {
		SchemaVersion int             `json:"schemaVersion"`
		MediaType     string          `json:"mediaType"`
		Manifests     []ociDescriptor `json:"manifests"`
	}
	readJSON(t, filepath.Join(out, "index.json"), &index)
	if index.SchemaVersion != 2 || index.MediaType != "application/vnd.oci.image.index.v1+json" {
		t.Errorf("index.json: schemaVersion %d, mediaType %q", index.SchemaVersion, index.MediaType)
	}
	var platforms []string
	machines := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
	for _, m := range index.Manifests {
		if m.Platform == nil {
			t.Fatalf("manifest %s has no platform", m.Digest)
		}
		arch := m.Platform.Architecture
		platforms = append(platforms, m.Platform.OS+"/"+arch)
		if got, want := m.Annotations["org.opencontainers.image.ref.name"], version+"-"+arch; got != want {
			t.Errorf("%s: ref.name %q, want %q", arch, got, want)
		}
		if m.MediaType != "application/vnd.oci.image.manifest.v1+json" {
			t.Errorf("%s: manifest media type %q", arch, m.MediaType)
		}
		var manifest struct {
			SchemaVersion int             `json:"schemaVersion"`
			Config        ociDescriptor   `json:"config"`
			Layers        []ociDescriptor `json:"layers"`
		}
		if err := json.Unmarshal(readBlob(t, out, m), &manifest); err != nil || manifest.SchemaVersion != 2 {
			t.Fatalf("%s: manifest: %v (schemaVersion %d)", arch, err, manifest.SchemaVersion)
		}
		var config struct {
			OS           string `json:"os"`
			Architecture string `json:"architecture"`
			Config       struct {
				User       string
				Entrypoint []string
				Cmd        []string
				WorkingDir string
				Volumes    map[string]struct{}
			} `json:"config"`
			RootFS struct {
				Type    string   `json:"type"`
				DiffIDs []string `json:"diff_ids"`
			} `json:"rootfs"`
		}
		if err := json.Unmarshal(readBlob(t, out, manifest.Config), &config); err != nil {
			t.Fatalf("%s: config: %v", arch, err)
		}
		c := config.Config
		if config.OS != "linux" || config.Architecture != arch {
			t.Errorf("%s: config says %s/%s", arch, config.OS, config.Architecture)
		}
		if c.User != "65532:65532" {
			t.Errorf("%s: user %q, want 65532:65532 (non-root)", arch, c.User)
		}
		if !slices.Equal(c.Entrypoint, []string{"/weft"}) || len(c.Cmd) != 0 {
			t.Errorf("%s: entrypoint %q cmd %q, want [/weft] and none (the manifests give args)", arch, c.Entrypoint, c.Cmd)
		}
		if _, ok := c.Volumes["/var/lib/weft"]; c.WorkingDir != "/var/lib/weft" || !ok {
			t.Errorf("%s: working dir %q volumes %v, want /var/lib/weft for both", arch, c.WorkingDir, c.Volumes)
		}
		if len(manifest.Layers) != 1 || len(config.RootFS.DiffIDs) != 1 {
			t.Fatalf("%s: %d layers, %d diff ids; want one", arch, len(manifest.Layers), len(config.RootFS.DiffIDs))
		}
		if manifest.Layers[0].MediaType != "application/vnd.oci.image.layer.v1.tar+gzip" {
			t.Errorf("%s: layer media type %q", arch, manifest.Layers[0].MediaType)
		}
		files := readLayer(t, readBlob(t, out, manifest.Layers[0]), config.RootFS.DiffIDs[0])

		var names []string
		for name := range files {
			names = append(names, name)
		}
		slices.Sort(names)
		want := []string{"etc/", "etc/group", "etc/passwd", "home/", "home/nonroot/", "tmp/", "var/", "var/lib/", "var/lib/weft/", "weft"}
		if withCA {
			want = append(want, "etc/ssl/", "etc/ssl/certs/", "etc/ssl/certs/ca-certificates.crt")
			slices.Sort(want)
		}
		if !slices.Equal(names, want) {
			t.Errorf("%s: layer holds %q, want %q (no shell, nothing else)", arch, names, want)
		}
		owners := map[string]struct {
			uid  int
			mode int64
		}{
			"weft":          {0, 0o755},
			"etc/passwd":    {0, 0o644},
			"var/lib/weft/": {65532, 0o700},
			"home/nonroot/": {65532, 0o700},
			"tmp/":          {0, 0o1777},
		}
		for name, w := range owners {
			if f, ok := files[name]; ok && (f.hdr.Uid != w.uid || f.hdr.Gid != w.uid || f.hdr.Mode != w.mode) {
				t.Errorf("%s: %s is %d:%d %o, want %d:%d %o", arch, name, f.hdr.Uid, f.hdr.Gid, f.hdr.Mode, w.uid, w.uid, w.mode)
			}
		}
		if f := files["etc/passwd"]; f.hdr != nil && !strings.Contains(string(f.body), "\nnonroot:x:65532:65532:") {
			t.Errorf("%s: /etc/passwd has no nonroot 65532: %q", arch, f.body)
		}
		if f := files["etc/group"]; f.hdr != nil && !strings.Contains(string(f.body), "\nnonroot:x:65532:") {
			t.Errorf("%s: /etc/group has no nonroot 65532: %q", arch, f.body)
		}
		weft := files["weft"]
		if weft.hdr == nil {
			continue
		}
		checkStaticELF(t, arch, weft.body, machines[arch])
		if arch == runtime.GOARCH && runtime.GOOS == "linux" {
			exe := filepath.Join(t.TempDir(), "weft")
			if err := os.WriteFile(exe, weft.body, 0o755); err != nil {
				t.Fatal(err)
			}
			b, err := exec.Command(exe, "version").CombinedOutput()
			if err != nil || strings.TrimSpace(string(b)) != "weft "+version {
				t.Errorf("%s: /weft version: %q, %v; want %q", arch, b, err, "weft "+version)
			}
		}
	}
	slices.Sort(platforms)
	if !slices.Equal(platforms, []string{"linux/amd64", "linux/arm64"}) {
		t.Errorf("index platforms %q, want linux/amd64 and linux/arm64", platforms)
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// readBlob reads the blob d names and checks its size and digest.
func readBlob(t *testing.T, layout string, d ociDescriptor) []byte {
	t.Helper()
	hexSum, ok := strings.CutPrefix(d.Digest, "sha256:")
	if !ok {
		t.Fatalf("digest %q is not sha256", d.Digest)
	}
	b, err := os.ReadFile(filepath.Join(layout, "blobs", "sha256", hexSum))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	if hex.EncodeToString(sum[:]) != hexSum || int64(len(b)) != d.Size {
		t.Fatalf("blob %s: size %d (descriptor %d), digest sha256:%x", d.Digest, len(b), d.Size, sum)
	}
	return b
}

// readLayer gunzips and untars a layer, checking the uncompressed digest
// against the config's diff id.
func readLayer(t *testing.T, gz []byte, diffID string) map[string]layerFile {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(raw); "sha256:"+hex.EncodeToString(sum[:]) != diffID {
		t.Errorf("layer diff id sha256:%x, config says %s", sum, diffID)
	}
	files := map[string]layerFile{}
	tr := tar.NewReader(bytes.NewReader(raw))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg && h.Typeflag != tar.TypeDir {
			t.Errorf("%s: tar type %q: only files and directories expected", h.Name, h.Typeflag)
		}
		if base := filepath.Base(h.Name); base == "sh" || base == "bash" || base == "busybox" {
			t.Errorf("layer holds a shell: %s", h.Name)
		}
		files[h.Name] = layerFile{hdr: h, body: body}
	}
	return files
}

// checkStaticELF: an executable for machine with no interpreter and no
// shared libraries.
func checkStaticELF(t *testing.T, arch string, b []byte, machine elf.Machine) {
	t.Helper()
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		t.Errorf("%s: /weft is not ELF: %v", arch, err)
		return
	}
	defer f.Close()
	if f.Machine != machine || f.Type != elf.ET_EXEC {
		t.Errorf("%s: /weft is %v %v, want %v ET_EXEC", arch, f.Machine, f.Type, machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("%s: /weft has %v: not static", arch, p.Type)
		}
	}
}
