// Package node assembles a Starling node from a data directory and
// serves its local HTTP API.
//
// A data directory holds:
//
//	config.json    the Config (env, node ID, listen/API addresses, peers, ...)
//	identity.key   the libp2p identity: the peer ID survives restarts
//	api.token      the API's bearer token (0600)
//	swarm.key      the private network key, when made by `init --psk`
//	datastore/     LevelDB: DAG blocks under /blocks, the CRDT store under /crdt
//	api.json       {"addr", "pid"} while a node runs; removed on clean stop
//
// Init creates a directory (every check first, files written through a
// temporary file and a rename, nothing left behind on error). Open loads
// the config, applies the overrides of this run, and starts, in order:
// the API listener (a port in use fails first), LevelDB, the p2p node,
// the crdt store and the API server; Close stops them in reverse. A
// goroutine owned by the Node forwards each new peer connection to
// crdt.Store.PeerConnected, so heads are exchanged at once.
//
// The API handlers depend only on three small interfaces (KV, PeerSet,
// StatusSource), so they are tested with fakes; Client is the Go client
// that the CLI uses, and ClientFromDataDir finds a running node from its
// directory alone.
package node
