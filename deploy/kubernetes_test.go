package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// decoder decodes Kubernetes objects of the core and apps groups,
// strictly: an unknown or duplicated field is an error.
func decoder() runtime.Decoder {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme} {
		if err := add(scheme); err != nil {
			panic(err)
		}
	}
	return serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
}

// decodeAll decodes every document of a multi-document YAML stream.
func decodeAll(dec runtime.Decoder, r io.Reader) ([]runtime.Object, error) {
	yr := utilyaml.NewYAMLReader(bufio.NewReader(r))
	var objs []runtime.Object
	for i := 0; ; i++ {
		doc, err := yr.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		obj, _, err := dec.Decode(doc, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		objs = append(objs, obj)
	}
}

// stripComments drops the comment lines of a YAML document, so a
// document of comments only counts as empty.
func stripComments(doc []byte) []byte {
	var out []byte
	for line := range bytes.Lines(doc) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			out = append(out, line...)
		}
	}
	return out
}

// manifests are the objects of every file of kubernetes/, by file.
func manifests(t *testing.T) map[string][]runtime.Object {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("kubernetes", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	dec := decoder()
	out := map[string][]runtime.Object{}
	for _, file := range files {
		f, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := decodeAll(dec, f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		out[file] = objs
	}
	return out
}

// TestStrictDecoding: a manifest with a misspelt field, a field of the
// wrong type or an unknown kind does not decode, so the manifests'
// test catches typos.
func TestStrictDecoding(t *testing.T) {
	dec := decoder()
	for _, doc := range []string{
		"apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {selectr: {a: b}}\n",
		"apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: eighty}]}\n",
		"apiVersion: v1\nkind: Service\nmetadata: {name: x, name: y}\n",
		"apiVersion: apps/v1\nkind: StatefulSett\nmetadata: {name: x}\n",
		"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {template: {spec: {containers: [{name: a, livenessProbe: {httpGet: {paht: /healthz, port: 80}}}]}}}\n",
	} {
		if _, err := decodeAll(dec, strings.NewReader(doc)); err == nil {
			t.Errorf("decoded without error:\n%s", doc)
		}
	}
	objs, err := decodeAll(dec, strings.NewReader("# only a comment\n---\napiVersion: v1\nkind: Service\nmetadata: {name: x}\n"))
	if err != nil || len(objs) != 1 {
		t.Fatalf("a valid stream: %d objects, %v", len(objs), err)
	}
}

// TestKubernetesManifests decodes every manifest strictly with the
// Kubernetes API types, then checks what the types cannot: each pod runs
// weft non-root and read-only with probes on /healthz and /readyz, every
// Service selects a pod and names a port it has, and every ConfigMap and
// Secret a pod mounts is among the manifests.
func TestKubernetesManifests(t *testing.T) {
	type pod struct {
		where  string
		labels map[string]string
		spec   corev1.PodSpec
	}
	var pods []pod
	var services []*corev1.Service
	have := map[string]bool{} // kind/name of ConfigMaps, Secrets, PVCs
	var statefulSets, deployments int
	for file, objs := range manifests(t) {
		for _, obj := range objs {
			switch o := obj.(type) {
			case *appsv1.StatefulSet:
				statefulSets++
				pods = append(pods, pod{file + ": " + o.Name, o.Spec.Template.Labels, o.Spec.Template.Spec})
				if len(o.Spec.VolumeClaimTemplates) == 0 {
					t.Errorf("%s: StatefulSet %s keeps no persistent volume", file, o.Name)
				}
				for _, c := range o.Spec.VolumeClaimTemplates {
					have["PersistentVolumeClaim/"+c.Name] = true
				}
				checkSelector(t, file, o.Name, o.Spec.Selector.MatchLabels, o.Spec.Template.Labels)
			case *appsv1.Deployment:
				deployments++
				pods = append(pods, pod{file + ": " + o.Name, o.Spec.Template.Labels, o.Spec.Template.Spec})
				if o.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType || o.Spec.Replicas == nil || *o.Spec.Replicas != 1 {
					t.Errorf("%s: Deployment %s must run one pod at a time (replicas 1, Recreate): two pods must never open one store", file, o.Name)
				}
				checkSelector(t, file, o.Name, o.Spec.Selector.MatchLabels, o.Spec.Template.Labels)
			case *corev1.Service:
				services = append(services, o)
			case *corev1.ConfigMap:
				have["ConfigMap/"+o.Name] = true
			case *corev1.Secret:
				have["Secret/"+o.Name] = true
			case *corev1.PersistentVolumeClaim:
				have["PersistentVolumeClaim/"+o.Name] = true
			case *corev1.Namespace:
			default:
				t.Errorf("%s: unexpected object %T", file, obj)
			}
		}
	}
	if statefulSets == 0 || deployments == 0 {
		t.Fatalf("want a core StatefulSet and an edge Deployment: %d, %d", statefulSets, deployments)
	}

	for _, p := range pods {
		sc := p.spec.SecurityContext
		if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 {
			t.Errorf("%s: the pod must run as a non-root user", p.where)
		}
		for _, v := range p.spec.Volumes {
			switch {
			case v.ConfigMap != nil && !have["ConfigMap/"+v.ConfigMap.Name]:
				t.Errorf("%s: ConfigMap %s is in no manifest", p.where, v.ConfigMap.Name)
			case v.Secret != nil && !have["Secret/"+v.Secret.SecretName]:
				t.Errorf("%s: Secret %s is in no manifest", p.where, v.Secret.SecretName)
			case v.PersistentVolumeClaim != nil && !have["PersistentVolumeClaim/"+v.PersistentVolumeClaim.ClaimName]:
				t.Errorf("%s: PersistentVolumeClaim %s is in no manifest", p.where, v.PersistentVolumeClaim.ClaimName)
			}
		}
		for _, c := range p.spec.Containers {
			where := p.where + " container " + c.Name
			if len(c.Args) == 0 || (c.Args[0] != "core" && c.Args[0] != "edge") {
				t.Errorf("%s: args %v run neither weft core nor weft edge", where, c.Args)
			}
			cs := c.SecurityContext
			if cs == nil || cs.ReadOnlyRootFilesystem == nil || !*cs.ReadOnlyRootFilesystem ||
				cs.AllowPrivilegeEscalation == nil || *cs.AllowPrivilegeEscalation ||
				cs.Capabilities == nil || !slices.Contains(cs.Capabilities.Drop, "ALL") {
				t.Errorf("%s: want a read-only root, no privilege escalation and every capability dropped", where)
			}
			if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
				t.Errorf("%s: want CPU and memory requests and a memory limit", where)
			}
			for _, pr := range []struct {
				name string
				p    *corev1.Probe
				path string
			}{{"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}} {
				if pr.p == nil || pr.p.HTTPGet == nil || pr.p.HTTPGet.Path != pr.path {
					t.Errorf("%s: want a %s probe on GET %s", where, pr.name, pr.path)
					continue
				}
				if !hasPort(c, pr.p.HTTPGet.Port, corev1.ProtocolTCP) {
					t.Errorf("%s: %s probe on port %s the container does not declare", where, pr.name, pr.p.HTTPGet.Port.String())
				}
			}
		}
	}

	for _, s := range services {
		var matched []pod
		for _, p := range pods {
			if len(s.Spec.Selector) > 0 && selects(s.Spec.Selector, p.labels) {
				matched = append(matched, p)
			}
		}
		if len(matched) == 0 {
			t.Errorf("Service %s selects no pod", s.Name)
			continue
		}
		for _, sp := range s.Spec.Ports {
			for _, p := range matched {
				ok := false
				for _, c := range p.spec.Containers {
					ok = ok || hasPort(c, sp.TargetPort, sp.Protocol)
				}
				if !ok {
					t.Errorf("Service %s port %s: %s has no %s port %s", s.Name, sp.Name, p.where, sp.Protocol, sp.TargetPort.String())
				}
			}
		}
	}
}

func checkSelector(t *testing.T, file, name string, sel, labels map[string]string) {
	t.Helper()
	if !selects(sel, labels) {
		t.Errorf("%s: %s's selector %v does not select its own pods %v", file, name, sel, labels)
	}
}

// selects reports whether every label of sel is in labels.
func selects(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// hasPort reports whether c declares port (a name or number) with proto.
func hasPort(c corev1.Container, port intstr.IntOrString, proto corev1.Protocol) bool {
	if proto == "" {
		proto = corev1.ProtocolTCP
	}
	for _, p := range c.Ports {
		pp := p.Protocol
		if pp == "" {
			pp = corev1.ProtocolTCP
		}
		if pp == proto && ((port.Type == intstr.String && p.Name == port.StrVal) || (port.Type == intstr.Int && p.ContainerPort == port.IntVal)) {
			return true
		}
	}
	return false
}
