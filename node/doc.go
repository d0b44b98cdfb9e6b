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
package node
