// Package link runs the QUIC connection between an edge and its core and
// everything carried on it. Client is the edge's side: it dials the core,
// runs the handshake of package wire, and reconnects with exponential
// backoff and jitter whenever the connection ends. Server is the core's
// side: it accepts edges' connections, decides which of their streams it
// takes, and lets a newer connection of an edge replace the older one.
//
// Inside a connection: the control stream (the handshake, then nothing but
// a closing Error), then one QUIC stream per replicated stream, opened by
// the edge with an Open frame and run by package replicate; one per
// volume mirror, opened with a Mirror frame and run by package mirror;
// and, opened by the core, one per history request (package history). A
// connection's goroutines run in one errgroup: the first failure closes
// the connection with its wire code and ends the others.
//
// A stream that cannot be replicated (the peer refuses it, or this node
// cannot hold it) ends alone: session.end logs it, shows the reason in
// the stream's figures, tells the peer and leaves the link's other
// streams going. A refusal of the whole connection (wrong role, identity
// or version) comes from the handshake and closes it with its code.
package link
