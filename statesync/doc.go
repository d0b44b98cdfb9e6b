// Package statesync moves a node's live state between nodes: a node with
// no state joins by copying a peer's, a running node resyncs from a peer
// on request or when its store is dirty, and every ACTIVE node serves its
// state to others. The copying itself (snapshot stream, install) is in
// crdt/install.go; this package runs the protocol over libp2p streams
// and keeps the node's sync phase (nodestate.SyncProgress).
//
//   - A node that starts with no state (a new or wiped data dir, or an
//     install cut off by a crash) is JOINING: it holds received heads
//     back (so go-ds-crdt does not start walking the history), asks
//     connected peers for their state one at a time, and is SYNCING
//     while a transfer runs. Once installed it is ACTIVE. Peers that have
//     no state either are skipped; when every peer that answered is empty
//     (a new cluster starting together), or when no peer is reachable
//     within the join timeout (the first node), it becomes ACTIVE as is.
//     It is not an election candidate until ACTIVE.
//   - Resync forces a transfer on a running node (SYNCING meanwhile),
//     keeping its local writes that peers do not have yet.
//   - A node serves its state only while ACTIVE.
//
// A node with no static peers and no discovery has nobody to join: it is
// ACTIVE at once.
package statesync
