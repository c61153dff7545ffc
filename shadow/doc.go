// Package shadow keeps device shadows: one JSON document per device in the
// table /shadows/devices, keyed by device id.
//
// # The document
//
// Each field group has one owner, so that an edge's and the core's copies
// of a shadow never conflict (DESIGN.md §7):
//
//	reported     the device's own state (edge: the gateway merges each
//	             report into it)
//	connected, last_seen, class, edge
//	             connection state (edge: the gateway)
//	desired      what the central team wants (core: SetDesired)
//	desired_ts   per desired field, when it was last set (core)
//	delta        desired minus reported: every field of desired whose value
//	             differs from reported's, recursively; empty when in sync
//	reported_ts  per reported field, when its value last changed
//	reported_fp  per reported field, a fingerprint of its value, so that
//	             reported_ts moves only when a value does
//	firmware     the firmware version the device reports
//	score        the latest anomaly score (written by the anomaly filter)
//
// The shadow's version is the table document's version, bumped by every
// change; it is what If-Match and store.IfVersion compare.
//
// # Pieces
//
// Delta and Equal are pure: they compare decoded JSON values. Parse turns a
// table document into a Doc, computing the delta afresh, so readers never
// see a stale one.
//
// SetDesired applies an RFC 7386 merge patch to desired, recomputes the
// delta and stamps desired_ts in one table update, and then appends the
// delta to /updates/down (topic device/<id>, header subtopic shadow/delta),
// which the gateway delivers on updates/device/<id>/shadow/delta. The two
// are separate commits, shadow first: if the append fails the shadow is
// already changed and SetDesired says so with ErrDeltaNotSent; patching
// again (even with {}) sends the delta again.
//
// Reconcile recomputes what follows from a shadow's reported side (delta,
// reported_ts, firmware) and writes only when something changed. A Watcher
// follows /shadows/changes and reconciles every device whose shadow
// changed; its own writes reconcile to no change, so it does not loop.
// Every node that holds shadows runs one.
//
// List pages through the shadows with a Filter, doing bounded work per
// page; Summarize counts a whole fleet, and SummaryCache keeps recent
// counts so that overview pages do not scan on every request.
package shadow
