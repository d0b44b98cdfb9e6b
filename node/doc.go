// Package node assembles a Starling node from a data directory and runs
// its lifecycle; the parts it wires live in packages of their own.
//
// A data directory holds (names in package api, which clients read):
//
//	config.json    the Config (env, node ID, listen/API addresses, peers, ...)
//	identity.key   the libp2p identity: the peer ID survives restarts
//	api.token      the API's bearer token (0600)
//	swarm.key      the private network key made by `init` (unless --psk-file or --open)
//	datastore/     LevelDB: DAG blocks under /blocks, the CRDT store under /crdt
//	api.json       {"addr", "pid"} while a node runs; removed on clean stop
//
// Init creates a directory (every check first, files written through a
// temporary file and a rename, nothing left behind on error). Open loads
// the config, applies the overrides of this run, and starts, in order:
// LevelDB (its lock keeps a second node off the directory), the API
// listener (a port in use fails before libp2p starts), the p2p node
// (package p2p), the replicated store (crdt), the entity tree over it
// (entity), the leader election (election), the state transfer
// (statesync), the node-state monitor and metrics (nodestate/monitor),
// and the HTTP API (httpapi). Close stops them in reverse, the election
// first so that its goodbye makes the others fail over at once. A
// goroutine owned by the Node forwards each new peer connection to
// crdt.Store.PeerConnected, so heads are exchanged at once.
//
// adapters.go holds the small adapters from the store and the p2p node
// to the interfaces httpapi declares. Clients reach a node through
// package api, never through this one.
//
// # Embedding
//
// A Go program can run a node in its own process: Init a data
// directory once, Open it (WithoutAPI if the program needs no HTTP API),
// and use Entities for the entity tree and Election for leader election;
// Example and ExampleNode_Election show both.
//
// # What the Go API keeps stable
//
// Starling is before 1.0; within a 0.x minor series these hold, and a
// change to them between minor versions is named in the release notes
// with the way to adapt, after at least one release in which the old
// form still works and is marked Deprecated:
//
//   - node: Init and InitOptions, Settings, Config's fields, Open with
//     WithLogger, WithSettings, WithConfig, WithoutAPI,
//     WithElectionConfig and WithClockOffset, and Node's methods Close,
//     Dir, Config, NodeID, PeerID, APIAddr, Token, Client, Entities,
//     Election, Status, ClusterStatus, Ready, SyncProgress, OnSyncPhase
//     and Resync.
//   - entity: Store's reads, its writes (Create; Set, Rename, Move and
//     Delete, which return the write's Version; Update with Tx for
//     several at once, Restore among them), Watch and its events, the
//     Value constructors, schemas, and the sentinel errors (test them
//     with errors.Is, never by their text).
//   - election: Spec, Runner.Join, Candidate, Watcher and its contract,
//     Leadership and Event.
//   - api: the wire types and the Client; JSON fields are added, never
//     renamed or removed.
//   - The data directory: a newer version opens what an older one wrote,
//     or refuses it with a message saying what to do; it never damages
//     it. Nodes of adjacent minor versions replicate with each other.
//
// Not promised: the Go APIs of p2p, crdt, nodestate, statesync, httpapi
// and internal/ (P2P and Store expose the first two to tests and
// tools), the options meant for tests (WithP2PConfig,
// WithPeerStateConfig, WithCRDTOptions, WithJoinTimeout), log messages,
// and /metrics beyond the series named in monitor.MetricsDoc (whose
// names are kept; labels may be added).
package node
