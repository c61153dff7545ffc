// Package deploy holds what runs Weft for real, and the tests that keep it
// true: systemd units and example configurations (systemd/), Kubernetes
// manifests (kubernetes/), the OCI image build (image/, a program run as
// go run ./deploy/image --out DIR), a Grafana dashboard (grafana/) and
// Prometheus alerts (prometheus/). Apart from that program the package has
// no code: its tests decode every manifest strictly with the Kubernetes API
// types, check the units' sandboxing and readiness, build the image and
// check its layers, and scrape a running core and edge to check that every
// metric the dashboard and the alerts query is served. docs/deploy.md is
// the operator's guide to them.
package deploy
