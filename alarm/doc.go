// Package alarm raises, acknowledges and clears the alarms of a Weft node,
// and tells people about them through webhooks.
//
// # Pieces
//
// An Alarm is one occurrence of a condition (a device offline, an edge's
// link down, a disk nearly full, an anomaly, a halted rollout, a
// certificate about to expire), with a severity and a state: active,
// acknowledged, cleared. Alarms are documents of the table AlarmsTable,
// whose change stream (ChangesStream) records every raise, acknowledgement
// and clear; Settings (thresholds and webhooks) are one document of
// SettingsTable. List, Ack, LoadSettings and SaveSettings read and write
// them; the API serves them.
//
// Step is the pure part: given the alarms open now, the conditions that
// hold and the time, it says which alarms to raise and which to clear. An
// Engine is the shell around it: every tick it gathers conditions (the
// node's devices, links, disk, certificates and rollouts), runs Step and
// writes what changed; it follows /uplink/events to raise anomaly alarms
// from detections and, at the core, to take in the alarms edges raised;
// and it posts every raise, acknowledgement and clear to the webhooks of
// the settings, signed with X-Weft-Signature, each webhook with its own
// queue and retries so that a dead one slows nothing.
//
// An edge raises the alarms about its own devices, link and disk itself
// and appends each change to /uplink/events (header type=alarm), the
// stream that already carries its anomalies to the core: an alarm raised
// while the core is away reaches it when the link returns.
package alarm
