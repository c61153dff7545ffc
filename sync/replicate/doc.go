// Package replicate keeps streams equal across the fabric's QUIC links:
// per stream and direction, a sender reads the source stream (every topic
// and partition) from the receiver's positions and sends record batches;
// the receiver applies them with store.ApplyReplica at the same offsets and
// acknowledges. DESIGN.md §6 gives the rules it relies on: one writer per
// topic, so a replica has the same path, topics and offsets as its source,
// and the core's copy of a stream is the union of its edges' topics.
//
// # Pieces
//
// Session.Run runs the sender or the receiver of one stream over one
// frame connection (a QUIC stream of a link: package link opens it,
// handshakes and decides what a failure means for the connection). The
// senders of a link share a LinkLimiter; a Monitor keeps the figures of
// every link and stream (lag, backlog, throughput, reconnects, batches
// applied, duplicates skipped, messages dropped at the source before they
// were sent) for Prometheus and for GET /api/v1/links.
//
// # Positions
//
// The receiver's position in a topic partition is the replica's own next
// offset: ApplyReplica writes the data and moves it in one commit, so there
// is no separate progress record to drift. On every (re)connection the
// sender offers the topics it has and the receiver answers with its
// positions; the sender resumes from there. A batch applied twice changes
// nothing (ApplyReplica skips what the replica holds, and the receiver
// counts it as duplicates); a batch that would leave a gap is refused and
// the sender goes back to the receiver's position.
//
// # Waking
//
// A sender sleeps on store.Stream.Changed and on acknowledgements; it never
// polls. Each wake reads the topic partitions the store's change log says
// were appended to; a stream with many topics is listed whole only when
// the change log cannot tell, at most every few times the last look took.
//
// The decisions (what to send next, what an acknowledgement means, how long
// to back off, whether the bandwidth budget allows a batch) live in plain
// types without network, disk or clock: tracker, Backoff and Limiter.
package replicate
