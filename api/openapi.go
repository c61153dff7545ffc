package api

import (
	"net/http"
	"regexp"
	"strings"
)

// op is one operation of the API as the OpenAPI description gives it.
type op struct {
	method, path, role, summary string
	query                       []string // query parameters, all optional but those ending in "!"
	body                        bool     // takes a JSON body
}

// operations are the routes of /api/v1 and the node's own, as docs/api.md
// describes them. TestOpenAPI checks that they are exactly what a node
// serves.
var operations = []op{
	{"GET", "/healthz", "", "Liveness: 200 while the node serves", nil, false},
	{"GET", "/readyz", "", "Readiness: 200 while the store takes writes, 503 otherwise", nil, false},
	{"GET", "/metrics", "", "Prometheus metrics", nil, false},
	{"GET", "/api/v1/openapi.json", "", "This description", nil, false},
	{"GET", "/debug/pprof/", "admin", "Go runtime profiles of the node (net/http/pprof index; /debug/pprof/heap, goroutine, ...)", nil, false},
	{"GET", "/debug/pprof/cmdline", "admin", "The node's command line", nil, false},
	{"GET", "/debug/pprof/profile", "admin", "A CPU profile over the given seconds (default 30)", []string{"seconds"}, false},
	{"GET", "/debug/pprof/symbol", "admin", "Symbols of program counters", nil, false},
	{"GET", "/debug/pprof/trace", "admin", "An execution trace over the given seconds", []string{"seconds"}, false},
	{"GET", "/api/v1/streams/{volume}/{stream}/messages", "viewer", "Read a partition of a topic, optionally waiting", []string{"topic!", "partition", "from", "limit", "wait"}, false},
	{"POST", "/api/v1/streams/{volume}/{stream}/messages", "admin", "Append messages", nil, true},
	{"GET", "/api/v1/streams/{volume}/{stream}/topics", "viewer", "List topics", []string{"prefix", "after", "limit"}, false},
	{"GET", "/api/v1/streams/{volume}/{stream}/tail", "viewer", "Follow a topic as Server-Sent Events", []string{"topic!", "partition", "from"}, false},
	{"GET", "/api/v1/tables/{volume}/{table}", "viewer", "Scan documents", []string{"prefix", "after", "limit"}, false},
	{"GET", "/api/v1/tables/{volume}/{table}/{key}", "viewer", "Get a document", nil, false},
	{"GET", "/api/v1/ls", "viewer", "List the volumes", nil, false},
	{"GET", "/api/v1/ls/{path}", "viewer", "List a volume or directory", nil, false},
	{"GET", "/api/v1/volumes", "viewer", "Volumes with their policies and usage", nil, false},
	{"GET", "/api/v1/devices", "viewer", "List devices, filtered and paged", []string{"class", "edge", "site", "prefix", "connected", "in_sync", "anomaly", "after", "limit"}, false},
	{"GET", "/api/v1/devices/{id}", "viewer", "A device's shadow", nil, false},
	{"PATCH", "/api/v1/devices/{id}/desired", "operator", "Set desired state (JSON merge patch)", nil, true},
	{"POST", "/api/v1/devices/{id}/commands", "operator", "Call a device and wait for its answer", nil, true},
	{"GET", "/api/v1/devices/{id}/history", "viewer", "A device's messages over a time range, with the quarantined ranges stepped over (gaps)", []string{"from", "to", "limit"}, false},
	{"GET", "/api/v1/devices/{id}/events", "viewer", "A device's recent events", []string{"from", "to", "limit"}, false},
	{"GET", "/api/v1/fleet", "viewer", "Device counts by state, class and edge; top anomalies", nil, false},
	{"GET", "/api/v1/edges", "viewer", "Edges, their devices and sync links", nil, false},
	{"GET", "/api/v1/anomalies", "viewer", "Anomalies the edges detected, newest first", []string{"from", "to", "limit", "device", "edge"}, false},
	{"GET", "/api/v1/alarms", "viewer", "Alarms, newest first: active, acknowledged, cleared", []string{"state", "type", "device", "edge"}, false},
	{"POST", "/api/v1/alarms/{id}/ack", "operator", "Acknowledge an alarm", nil, false},
	{"GET", "/api/v1/alarm-settings", "admin", "Alarm thresholds and webhooks (secrets masked)", nil, false},
	{"PUT", "/api/v1/alarm-settings", "admin", "Set the alarm thresholds and webhooks, applied at once", nil, true},
	{"GET", "/api/v1/audit", "admin", "Audit records by time, subject, action, object, device; paged with cursor", []string{"from", "to", "subject", "action", "object", "device", "limit", "cursor"}, false},
	{"POST", "/api/v1/firmware/releases", "admin", "Publish a firmware release (multipart: manifest, image), verified before it is stored", nil, true},
	{"GET", "/api/v1/firmware/releases", "viewer", "List firmware releases", nil, false},
	{"GET", "/api/v1/firmware/releases/{name}/{version}", "viewer", "A firmware release", nil, false},
	{"GET", "/api/v1/firmware/releases/{name}/{version}/manifest", "viewer", "A release's signed manifest (COSE_Sign1)", nil, false},
	{"GET", "/api/v1/firmware/releases/{name}/{version}/image", "viewer", "A release's image, with byte ranges", nil, false},
	{"GET", "/api/v1/firmware/rollouts", "viewer", "Firmware rollouts, newest first", nil, false},
	{"POST", "/api/v1/firmware/rollouts", "operator", "Start a firmware rollout in waves", nil, true},
	{"GET", "/api/v1/firmware/rollouts/{id}", "viewer", "A rollout: its waves and counts by state", nil, false},
	{"POST", "/api/v1/firmware/rollouts/{id}/pause", "operator", "Pause a rollout", nil, false},
	{"POST", "/api/v1/firmware/rollouts/{id}/resume", "operator", "Resume a paused or halted rollout", nil, false},
	{"POST", "/api/v1/firmware/rollouts/{id}/abort", "operator", "Abort a rollout: what has not started is canceled", nil, false},
	{"POST", "/api/v1/tokens", "admin", "Issue an API token: {role, subject, ttl, scope}, answered {id, token, expires}", nil, true},
	{"GET", "/api/v1/tokens", "admin", "The tokens issued and revoked, without their secret", nil, false},
	{"DELETE", "/api/v1/tokens/{id}", "admin", "Revoke a token by id (issued here or by weft token create)", nil, false},
	{"POST", "/api/v1/signin-links", "admin", "A fresh one-time console sign-in link: {url}", nil, false},
	{"GET", "/api/v1/links", "viewer", "The node's sync links and their streams (on nodes that run links)", nil, false},
	{"GET", "/api/v1/cluster", "viewer", "The core nodes, up or down, their API addresses and the edges each serves (on core nodes)", nil, false},
}

// pathParam matches a path parameter of an OpenAPI path template.
var pathParam = regexp.MustCompile(`\{(\w+)\}`)

// OpenAPI returns the OpenAPI 3 description of the API, served at
// GET /api/v1/openapi.json.
func OpenAPI() map[string]any {
	paths := map[string]any{}
	for _, o := range operations {
		var params []any
		for _, m := range pathParam.FindAllStringSubmatch(o.path, -1) {
			params = append(params, map[string]any{"name": m[1], "in": "path", "required": true, "schema": map[string]any{"type": "string"}})
		}
		for _, q := range o.query {
			name, required := strings.CutSuffix(q, "!")
			params = append(params, map[string]any{"name": name, "in": "query", "required": required, "schema": map[string]any{"type": "string"}})
		}
		operation := map[string]any{
			"summary":     o.summary,
			"operationId": strings.ToLower(o.method) + pathParam.ReplaceAllString(strings.ReplaceAll(strings.TrimPrefix(o.path, "/api/v1"), "/", "_"), "$1"),
			"responses": map[string]any{
				"200":     map[string]any{"description": "OK", "content": map[string]any{"application/json": map[string]any{}}},
				"default": map[string]any{"$ref": "#/components/responses/Problem"},
			},
		}
		if params != nil {
			operation["parameters"] = params
		}
		if o.body {
			operation["requestBody"] = map[string]any{"required": true, "content": map[string]any{"application/json": map[string]any{"schema": map[string]any{"type": "object"}}}}
		}
		if o.role != "" {
			operation["security"] = []any{map[string]any{"bearer": []any{}}}
			operation["x-weft-role"] = o.role
		} else {
			operation["security"] = []any{}
		}
		item, _ := paths[o.path].(map[string]any)
		if item == nil {
			item = map[string]any{}
			paths[o.path] = item
		}
		item[strings.ToLower(o.method)] = operation
	}
	return map[string]any{
		"openapi": "3.0.3",
		"info": map[string]any{
			"title":       "Weft API",
			"version":     "v1",
			"description": "The HTTP API every Weft node serves; see docs/api.md. Errors are RFC 9457 problem documents.",
		},
		"paths":    paths,
		"security": []any{map[string]any{"bearer": []any{}}},
		"components": map[string]any{
			"securitySchemes": map[string]any{
				"bearer": map[string]any{"type": "http", "scheme": "bearer", "bearerFormat": "JWT (EdDSA)"},
			},
			"responses": map[string]any{
				"Problem": map[string]any{
					"description": "A problem document",
					"content": map[string]any{"application/problem+json": map[string]any{"schema": map[string]any{
						"type": "object",
						"properties": map[string]any{
							"type": map[string]any{"type": "string"}, "title": map[string]any{"type": "string"},
							"status": map[string]any{"type": "integer"}, "detail": map[string]any{"type": "string"},
							"request_id": map[string]any{"type": "string", "description": "the request's id, as in its X-Request-Id response header"},
						},
					}}},
				},
			},
		},
	}
}

// serveOpenAPI answers GET /api/v1/openapi.json.
func serveOpenAPI(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, OpenAPI()) }
