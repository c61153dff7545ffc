// Package shadow keeps device shadows: one JSON document per device in the
// table /shadows/devices, keyed by device id.
//
// # The document
//
// Each field group has one owner, so that an edge's and the core's copies
// of a shadow never conflict (DESIGN.md §7):
//
//	reported     the device's own state (edge: the gateway merges each
//	             report into it with Report)
//	connected, last_seen, class, edge
//	             connection state (edge: the gateway)
//	desired      what the central team wants (core: SetDesired)
//	desired_ts   per desired field, when it was last set (core)
//	delta        desired minus reported: every field of desired whose value
//	             differs from reported's, recursively; empty when in sync
//	reported_ts  per reported field, when its value last changed (edge:
//	             stamped by Report in the report's commit; a replica keeps
//	             the edge's times)
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
// Report applies a device's report at the edge in one commit: the merged
// reported side, last_seen and the connection fields, reported_ts for the
// fields that changed, firmware, the delta, the change record, and the
// report's history records. ApplyEdge applies a replicated change of an
// edge's shadow at the core: the edge-owned fields as the edge wrote them,
// the core's desired side kept, the delta recomputed, in one update.
//
// Reconcile recomputes the delta and firmware and writes only when
// something changed; it never stamps times. A Watcher follows
// /shadows/changes and reconciles every device whose shadow changed; its
// own writes reconcile to no change, so it does not loop. The core runs
// one, as a safety net: every writer keeps the delta current already.
//
// List pages through the shadows with a Filter, doing bounded work per
// page; Summarize counts a whole fleet, and SummaryCache keeps recent
// counts so that overview pages do not scan on every request.
package shadow
