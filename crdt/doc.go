// Package crdt is Starling's replicated key-value store: go-ds-crdt over
// LevelDB, tuned for fast replication and fast healing.
//
// Walk-through:
//
//   - OpenLevelDB opens the node's LevelDB. Writes are not fsynced one by
//     one; Sync makes everything before it durable with one fsync.
//   - Open starts a Store on it: a go-ds-crdt Datastore, a broadcaster
//     (this package's, in place of go-ds-crdt's PubSubBroadcaster), a group
//     committer and a change-feed dispatcher.
//   - Put, Delete and Apply hand writes to the committer. It gathers the
//     writes of concurrent callers into one delta (one DAG node, one
//     broadcast, one fsync) and answers each caller once the delta is on
//     disk. One DAG node per write would make a peer walk the DAG one
//     block per bitswap round (about 48 blocks/s measured here).
//   - Commit writes a group its caller has gathered already (the entity
//     tree's committer) as one delta at once, on the caller's goroutine.
//     Both paths end in one function, commit, under one lock: go-ds-crdt
//     keeps a single pending delta for the whole store. So each write
//     passes one gathering stage: an entity write entity's, a raw
//     key-value write this package's.
//   - Op, Change and Feed are aliases of package internal/kv's types,
//     which package entity aliases too: a Store is an entity.Backend as
//     it is, and the entity tree reads the feed's channel itself.
//   - The broadcaster carries each new block inside the broadcast of its
//     head, so a peer applies it with no fetch. The commit collects the
//     blocks go-ds-crdt adds in the context go-ds-crdt hands on to
//     Broadcast, so go-ds-crdt's heads message is not decoded on the way
//     out; a receiver decodes it once (to park it or ask for branches)
//     before go-ds-crdt decodes it again. A receiver verifies every
//     carried block against its CID (a message with a bad block is dropped
//     whole), stores the blocks, and only then hands the heads to
//     go-ds-crdt, through a queue bounded by bytes.
//   - PeerConnected sends the current heads to a peer that just connected
//     (and again a moment later): gossip published during a partition is
//     lost, and go-ds-crdt would otherwise wait for its rebroadcast timer.
//   - Subscribe follows changes, local or remote, from go-ds-crdt's hooks.
//   - Status reports heads, height, queued DAG jobs and the dirty flag.
//   - Close commits what was submitted, stops the broadcaster before
//     go-ds-crdt (or go-ds-crdt waits for a message forever), closes
//     go-ds-crdt and waits for every goroutine.
//
// Keys written through Put are plain go-ds-crdt keys: concurrent writes to
// one key resolve by DAG height, not by time. Starling's entity layer
// writes each field version under its own key and orders versions by
// hybrid logical timestamp; see package entity.
package crdt
