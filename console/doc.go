// Package console is Weft's web console: server-rendered pages for the
// people who run a fleet, embedded in the binary (html/template, embed),
// kept live through Server-Sent Events and a few lines of hand-written
// JavaScript.
//
// # Pages
//
//	/                fleet overview: devices by state, class and edge; anomalies; links
//	/devices         device list: search by id, filters, paging that stays fast at any size
//	/devices/{id}    one device: state (reported, desired, delta), the desired-state
//	                 editor, telemetry charts (inline SVG drawn on the server), events
//	/edges           edges: their devices and, where the node has them, sync links;
//	                 on a node of a core cluster, the core nodes and their edges first
//	/audit           the audit trail (admin)
//	/signin          sign-in with an API token or a one-time code
//
// Each page marks the regions that change with data-live-src and
// data-live-on; the page's event stream (/live/fleet, /live/devices/{id})
// says what changed and the script fetches those regions again, rendered
// by the same templates (?part=...).
//
// # Access
//
// The console reads and changes everything through the node's api.Server,
// with the claims of the signed-in token: roles, scopes and audit records
// are exactly the API's. Sign-in takes an API token (POST /signin), or a
// one-time code minted by Server.OneTimeCode (GET /signin?code=...); the
// token is kept in an HttpOnly, SameSite=Strict cookie and checked on every
// request. Changes (the desired-state editor, sign-out) are POST forms
// carrying a per-session CSRF token and are refused from other origins.
//
// # Mounting
//
// A Server is an http.Handler for a whole node: it serves its pages under /
// and hands /api/, /healthz and /metrics to the API's handler, so a node
// serves both on one listener:
//
//	apiSrv, _ := api.New(api.Config{Store: st, TokenKey: pub})
//	con, _ := console.New(console.Config{API: apiSrv})
//	httpServer := &http.Server{Handler: con}
package console
