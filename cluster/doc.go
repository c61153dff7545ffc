// Package cluster runs a core node as a member of a core cluster: it
// starts the node's embedded etcd member (go.etcd.io/etcd/server/v3/embed),
// registers the node under a lease, and keeps the assignment of edges to
// nodes in etcd.
//
// Keys, under /weft/<cluster>/:
//
//	nodes/<name>  the node's Member (JSON), attached to its lease: present
//	              while the node is up
//	addrs/<name>  the same, without a lease: the last addresses of a node
//	              that is down
//	edges/<edge>  the name of the edge's owner, attached to the owner's
//	              lease: an edge is owned by at most one node, and by none
//	              once its owner's lease expires
//
// The decisions are pure functions (assign.go): Preferred spreads edges
// by rendezvous hashing over the nodes up and not draining, Decide says
// what a node answers an edge's hello (serve, claim, redirect, refuse),
// Moves which of a node's edges go elsewhere. Node is the shell around
// them: etcd, the lease's keepalive and the fence.
//
// Fencing: a node keeps a local deadline, the time its last keepalive was
// sent plus the lease's TTL less a margin, on the monotonic clock. Past it
// (a node paused by SIGSTOP, cut from the majority, or slow) Valid is
// false: the link server refuses batches and hellos, and Run drops every
// edge (OnLost) before taking a new lease. A node that wakes after its
// lease expired therefore applies nothing its edges sent since to another
// node.
package cluster
