// Package tailnet runs the edge–core sync link over a tailnet, for edges
// behind NAT or CGNAT and cores without an open port. A Node is this
// node's own Tailscale node, in process (tailscale.com/tsnet: no
// tailscaled, no TUN device, no root), with its keys and state in a
// directory of the node's data; it joins the tailnet with an auth key the
// first time and with that state afterwards.
//
// A Node is a link.Transport: the core listens on its tailnet address
// (the port of its --listen), an edge dials the core by its name on the
// tailnet (its hostname or MagicDNS name), and QUIC runs over the
// tailnet's packets exactly as over UDP, with the link's own mutual TLS
// inside (the core's certificate must name the host the edge dials), its
// handshake, streams and offsets unchanged. The tailnet adds reachability
// and WireGuard's encryption; it decides nothing about who may link: the
// fabric CA still does.
package tailnet
