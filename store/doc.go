// Package store is the unified store of a Weft node: volumes holding streams,
// tables, files and directories in one namespace, with snapshots, on one
// Badger database in managed mode.
//
// Every object has a path /<volume>/<name>. A volume is the unit of policy:
// retention (TTL) and byte quota. Streams hold messages in batches keyed by
// (stream, topic, partition, base offset), each batch carrying a CRC32C that
// is checked on every read. Tables hold JSON documents with a version per
// document and an optional change stream written in the same transaction.
// Files are stored as 256 KiB chunks with their size and SHA-256.
//
// All writes go through one writer goroutine that gathers concurrent requests
// into a group, assigns stream offsets, merges appends to the same partition
// into one batch, and commits the group with a single fsync (group commit).
// Each call returns only after its own data is durable; an error (quota, disk
// full, I/O) is returned to the caller and nothing of the failed call is
// acknowledged.
//
// Commit timestamps are the store's own (Badger managed mode): a snapshot is a
// name for a commit timestamp, kept from garbage collection, and a View reads
// any object as of that timestamp.
package store
