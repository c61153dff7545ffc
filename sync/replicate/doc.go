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
// # Order, state and figures
//
// The next batch comes from the topic partition whose oldest unsent data
// is the oldest, so a slow link serves every device about as late as its
// backlog and no later. The tracker keeps only the topic partitions that
// are behind and a few recently caught up; it lets go of the others and
// offers them again when they have news. It keeps the lag as sums as it
// goes, and the sender publishes them for the Monitor after each step, so
// reading the figures never waits for the sender nor reads the store;
// every batch tells the receiver the stream's messages not yet sent. A
// topic partition whose data cannot be read (corrupt or quarantined) is
// set aside and named in the figures while the others go on.
//
// The decisions (what to send next, what an acknowledgement means, how long
// to back off, whether the bandwidth budget allows a batch) live in plain
// types without network, disk or clock: tracker, Backoff and Limiter.
package replicate
