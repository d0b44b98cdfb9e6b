package api

import "errors"

// Names of the files and folders in a node's data directory. The daemon
// writes them; clients read api.json, api.token and identity.key to find
// a node and prove they may use it.
const (
	// ConfigFile is the node's configuration (JSON, see node.Config).
	ConfigFile = "config.json"
	// IdentityFile is the libp2p Ed25519 key; it fixes the peer ID.
	IdentityFile = "identity.key"
	// TokenFile holds the API bearer token (64 hex characters, mode 0600).
	TokenFile = "api.token"
	// SwarmKeyFile is where `init` writes a generated private network key.
	SwarmKeyFile = "swarm.key"
	// DatastoreDir is the LevelDB directory (DAG blocks and the CRDT store).
	DatastoreDir = "datastore"
	// APIFile is written by a running node ({"addr": ..., "pid": ...}) and
	// removed when it stops cleanly; clients read it to find the API.
	APIFile = "api.json"
)

// ErrNotInitialised means a directory has no config.json. Test with errors.Is.
var ErrNotInitialised = errors.New("api: data dir not initialised")
