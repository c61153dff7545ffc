// Package deploy holds what runs Weft for real, and the tests that keep it
// true: systemd units and example configurations (systemd/), Kubernetes
// manifests (kubernetes/), the container image build (image/ and the
// repository's .ko.yaml), a Grafana dashboard (grafana/) and Prometheus
// alerts (prometheus/). The package has no code of its own: its tests
// decode every manifest strictly with the Kubernetes API types, check the
// units' sandboxing and readiness, and scrape a running core and edge to
// check that every metric the dashboard and the alerts query is served.
// docs/deploy.md is the operator's guide to them.
package deploy
