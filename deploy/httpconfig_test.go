package deploy

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"gopkg.in/yaml.v3"
	corev1 "k8s.io/api/core/v1"
)

// nodeConfigs are the example node configurations: deploy/systemd's files
// and the node configurations in the Kubernetes ConfigMaps, by where they
// are.
func nodeConfigs(t *testing.T) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, node := range []string{"edge", "core"} {
		file := filepath.Join("systemd", node+".yaml")
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		out[file] = b
	}
	for file, objs := range manifests(t) {
		for _, obj := range objs {
			cm, ok := obj.(*corev1.ConfigMap)
			if !ok {
				continue
			}
			for key, text := range cm.Data {
				if key == "edge.yaml" || key == "core.yaml" {
					out[file+": ConfigMap "+cm.Name+" "+key] = []byte(text)
				}
			}
		}
	}
	return out
}

// TestHTTPServedSafely: a node refuses plain HTTP on an address other
// than loopback unless told it sits behind a proxy that terminates TLS
// (http_insecure) or given a certificate: every example configuration
// that listens beyond loopback says which, so it starts.
func TestHTTPServedSafely(t *testing.T) {
	configs := nodeConfigs(t)
	if len(configs) < 4 {
		t.Fatalf("configurations found: %v", len(configs))
	}
	for where, b := range configs {
		var c struct {
			HTTP     string `yaml:"http"`
			Insecure bool   `yaml:"http_insecure"`
			Cert     string `yaml:"http_tls_cert"`
			Key      string `yaml:"http_tls_key"`
		}
		if err := yaml.Unmarshal(b, &c); err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		host, _, err := net.SplitHostPort(c.HTTP)
		if err != nil {
			t.Fatalf("%s: http %q: %v", where, c.HTTP, err)
		}
		if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
			continue
		}
		tls := c.Cert != "" && c.Key != ""
		if tls == c.Insecure {
			t.Errorf("%s: http %s wants either http_insecure: true (behind a TLS-terminating proxy) or http_tls_cert and http_tls_key, one of them (insecure %v, cert %q, key %q)", where, c.HTTP, c.Insecure, c.Cert, c.Key)
		}
	}
}
