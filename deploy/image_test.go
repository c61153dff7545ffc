package deploy

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestImageConfig: the image build (.ko.yaml) makes a static binary of
// cmd/weft for linux/amd64 and linux/arm64 on a base without a shell that
// runs as a non-root user. Building the image itself needs the base
// image's registry (docs/deploy.md#the-image).
func TestImageConfig(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", ".ko.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var ko struct {
		DefaultBaseImage string   `yaml:"defaultBaseImage"`
		DefaultPlatforms []string `yaml:"defaultPlatforms"`
		Builds           []struct {
			ID      string   `yaml:"id"`
			Main    string   `yaml:"main"`
			Env     []string `yaml:"env"`
			Flags   []string `yaml:"flags"`
			Ldflags []string `yaml:"ldflags"`
		} `yaml:"builds"`
	}
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&ko); err != nil {
		t.Fatalf(".ko.yaml: %v", err)
	}
	// Static bases that run as uid 65532 and hold no shell.
	if !strings.HasPrefix(ko.DefaultBaseImage, "cgr.dev/chainguard/static") && !strings.HasPrefix(ko.DefaultBaseImage, "gcr.io/distroless/static") {
		t.Errorf("base image %q: want a static, non-root base", ko.DefaultBaseImage)
	}
	if strings.HasPrefix(ko.DefaultBaseImage, "gcr.io/distroless/static") && !strings.Contains(ko.DefaultBaseImage, "nonroot") {
		t.Errorf("base image %q runs as root", ko.DefaultBaseImage)
	}
	for _, p := range []string{"linux/amd64", "linux/arm64"} {
		if !slices.Contains(ko.DefaultPlatforms, p) {
			t.Errorf("platforms %v lack %s", ko.DefaultPlatforms, p)
		}
	}
	if len(ko.Builds) != 1 || ko.Builds[0].Main != "./cmd/weft" || !slices.Contains(ko.Builds[0].Env, "CGO_ENABLED=0") || !slices.Contains(ko.Builds[0].Flags, "-trimpath") {
		t.Errorf("builds %+v: want one static, trimmed build of ./cmd/weft", ko.Builds)
	}
	if _, err := os.Stat(filepath.Join("..", filepath.FromSlash(ko.Builds[0].Main), "main.go")); err != nil {
		t.Errorf("main package: %v", err)
	}
}
