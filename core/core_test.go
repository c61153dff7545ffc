package core

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weft-io/weft/certs"
)

func TestStartChecksConfig(t *testing.T) {
	dir := t.TempDir()
	cd := filepath.Join(dir, "certs")
	if err := certs.Init(cd, false); err != nil {
		t.Fatal(err)
	}
	auth, err := certs.Load(cd)
	if err != nil {
		t.Fatal(err)
	}
	edgeCert, err := auth.IssueNode(certs.EdgeNode, "edge1", []string{"127.0.0.1"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := auth.Save(edgeCert); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no name", Config{DataDir: dir, CertsDir: cd}, "required"},
		{"bad name", Config{DataDir: dir, CertsDir: cd, Name: "a/b"}, "invalid name"},
		{"no certificate", Config{DataDir: filepath.Join(dir, "d1"), CertsDir: cd, Name: "core9"}, "weft certs issue node --role core --name core9"},
		{"edge certificate", Config{DataDir: filepath.Join(dir, "d2"), CertsDir: cd, Name: "edge1", Listen: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"}, "certificate names weft://node/edge/edge1"},
	} {
		n, err := Start(context.Background(), tc.cfg)
		if err == nil {
			n.Shutdown(context.Background())
			t.Errorf("%s: started", tc.name)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}
