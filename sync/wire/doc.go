// Package wire is the language edge and core nodes speak over their QUIC
// links (DESIGN.md §6): frames, the handshake, record batches, the table of
// wire error codes, and the helpers that listen and dial with mutual TLS
// between nodes of the fabric CA.
//
// # Frames
//
// Every frame is a 7-byte header followed by a CBOR body
// (fxamacker/cbor/v2):
//
//	byte 0     magic 'w' (0x77)
//	byte 1     protocol version (Version)
//	byte 2     frame type (Type)
//	bytes 3-6  body length, big endian, at most MaxFrameSize
//
// A frame of a version this node does not speak is refused with ErrVersion
// before its body is read; its length is never trusted beyond MaxFrameSize.
// Decoding is bounded (array, map and nesting limits), so a peer speaking
// garbage costs at most one frame's worth of memory.
//
// # Link
//
// A link is one QUIC connection from an edge (the client) to a core (the
// server), TLS 1.3 with both sides presenting node certificates of the
// fabric CA; a core accepts only edges and an edge only cores (the role of
// weft://node/<role>/<name>). 0-RTT is off. Keepalives every second and a
// five-second idle timeout make a dead link noticed within seconds.
//
// Inside the connection the client first opens the control stream and sends
// Hello (its versions, identity and the streams it wants replicated, each
// with a direction); the server answers Welcome (the version chosen, its
// identity and the streams it accepts) or Error. An unknown version is
// refused on both sides with CodeVersion and a message naming both
// versions. Then the client opens one QUIC stream per accepted replicated
// stream and sends Open on it; the peer answers Accept, and the two sides
// exchange Offer and Positions (the receiver's next offset per topic and
// partition) before the sender streams Batch frames that the receiver
// acknowledges with Ack.
//
// Hello and Welcome also name the optional features both sides speak
// (Features, Common): only then does a side send the frames added since
// version 1, which an older node would refuse as unknown — Backlog on the
// control stream (what the sender has not had acknowledged, while that
// lasts) and Gap on a replicated stream (offsets the source quarantined).
// Fields added to older frames (Open's and Accept's Policy) are optional
// CBOR keys an older node ignores.
//
// # Batches
//
// A Batch carries the records of one topic and partition from a first
// offset on, densely. Its records are CBOR, covered by a CRC32C
// (Castagnoli) computed before compression; they are compressed with zstd
// when that makes them smaller. Batch.Messages checks the CRC and the
// declared sizes before returning store messages at their source offsets.
//
// # Errors
//
// Errors that cross the network come from one table (Code): they travel in
// Error frames and as QUIC application and stream error codes, and compare
// with errors.Is against the sentinels ErrProtocol, ErrVersion, and so on.
package wire
