package layout

import (
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/weft-io/weft"

// tier of each package: a package may import Weft packages of a lower tier
// only, plus the exceptions in allowedSameTier. A new package must be given
// a tier here.
var tier = map[string]int{
	"store": 0,
	"certs": 0,

	"internal/testenv/wait": 0,
	"internal/signed":       0,

	"gateway":         1,
	"api":             1,
	"sync/wire":       1,
	"sync/replicate":  1,
	"sync/mirror":     1,
	"sync/history":    1,
	"sync/link":       1,
	"sync/bench":      1,
	"sync/tailnet":    1,
	"cluster":         1,
	"anomaly":         1,
	"firmware":        1,
	"models":          1,
	"models/external": 1,
	"device":          1,
	"shadow":          1,
	"console":         1,
	"alarm":           1,

	"internal/plainmqtt": 1,
	"internal/apiclient": 1,
	"internal/node":      1,

	"edge": 2,
	"core": 2,

	"internal/testenv": 3,
	"up":               3,
	"internal/layout":  3,
	"deploy":           3,
	"cmd/weft":         4,
	"deploy/image":     4,
}

// allowedSameTier lists imports between packages of the same tier.
var allowedSameTier = map[string][]string{
	"gateway":         {"shadow"},
	"internal/node":   {"api"},
	"sync/replicate":  {"sync/wire", "sync/mirror"},
	"sync/mirror":     {"sync/wire"},
	"sync/history":    {"sync/wire"},
	"sync/link":       {"sync/wire", "sync/replicate", "sync/mirror", "sync/history"},
	"sync/bench":      {"sync/wire", "sync/replicate", "sync/mirror", "sync/link"},
	"api":             {"shadow", "sync/replicate", "anomaly", "firmware", "alarm", "models", "models/external"},
	"models":          {"anomaly", "firmware"},
	"models/external": {"models", "anomaly"},
	"console":         {"api", "shadow", "firmware", "alarm", "cluster"},
	"alarm":           {"shadow", "anomaly"},
	"device":          {"firmware"},
}

type pkg struct {
	ImportPath   string
	Name         string
	Doc          string
	Imports      []string
	TestImports  []string
	XTestImports []string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	out, err := exec.Command("go", "list", "-json", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	var pkgs []pkg
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 3 {
		t.Fatalf("go list found %d packages", len(pkgs))
	}
	return pkgs
}

func rel(path string) string { return strings.TrimPrefix(strings.TrimPrefix(path, module), "/") }

func TestEveryPackageHasADocComment(t *testing.T) {
	for _, p := range listPackages(t) {
		if strings.TrimSpace(p.Doc) == "" {
			t.Errorf("package %s has no doc comment", rel(p.ImportPath))
		}
	}
}

func TestImportDirection(t *testing.T) {
	for _, p := range listPackages(t) {
		from := rel(p.ImportPath)
		ft, ok := tier[from]
		if !ok {
			t.Errorf("package %s has no place in the layout: add it to tier in internal/layout", from)
			continue
		}
		for _, imp := range p.Imports {
			if !strings.HasPrefix(imp, module+"/") {
				continue
			}
			to := rel(imp)
			tt, ok := tier[to]
			if !ok {
				continue // reported as its own package
			}
			if tt < ft {
				continue
			}
			if tt == ft && contains(allowedSameTier[from], to) {
				continue
			}
			t.Errorf("%s imports %s: imports must point down the layout of DESIGN.md §3", from, to)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
