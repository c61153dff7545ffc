// Package api is the HTTP API that every Weft node serves, edge and core
// alike: JSON over net/http under /api/v1, with /healthz and /metrics
// beside it.
//
// # Pieces
//
// New builds a Server from a Config naming the node's store and the public
// key that verifies API tokens. Server.Handler is the http.Handler to serve;
// the edge and core add their own routes with Server.Handle, behind the same
// authentication.
//
// Authentication is a bearer token (certs.IssueToken, checked with
// certs.VerifyToken: EdDSA only, expiry and audience required). Server.Require
// wraps a handler so that it runs only for a valid token whose role allows
// what the route needs, and Claims gives the handler the token's claims.
// A token restricted by a scope (device class, site, ...) is refused on
// routes that do not enforce scopes themselves; such routes mark their
// handler with ScopeAware.
//
// Errors are RFC 9457 problem documents (application/problem+json). Problem
// writes one; Server.Error answers a store error from a single table, so
// that the same error always has the same status and title wherever it
// comes from.
//
// Messages travel as the JSON form MessageJSON returns; a POST body is
// decoded from AppendBody. docs/api.md describes every route.
package api
