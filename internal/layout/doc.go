// Package layout holds the tests that keep the repository's shape: every
// package has a doc comment, and imports between Weft's packages point one
// way, as DESIGN.md §3 lays out (cmd -> core, edge -> gateway, sync/*,
// anomaly, firmware, api, device -> store, certs).
package layout
