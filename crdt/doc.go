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
//   - Status reports heads, height, queued DAG jobs, the dirty flag, and
//     the live state's and the history's size on disk.
//   - Compact reclaims history (compact.go); see "Compaction" below.
//   - Close commits what was submitted, stops the broadcaster before
//     go-ds-crdt (or go-ds-crdt waits for a message forever), closes
//     go-ds-crdt and waits for every goroutine.
//
// # Compaction
//
// go-ds-crdt keeps every delta block, a processed marker per block, and
// for every key ever written its set elements and tombstones: storage
// grows with the writes ever seen, not with the live state. Compaction
// (Compact, and an automatic policy by size and age) takes some of it
// back; go-ds-crdt is not changed, its namespace is edited while it is
// paused between broadcasts, as state transfer does.
//
// What a round deletes. Members are the nodes whose node reports this
// store has ever been given (ObserveHeads, NoteMember), minus those the
// operator removed (ForgetMember), plus this node; each member's entry
// holds the stable heads it last reported: heads read while go-ds-crdt
// was between broadcasts and the store clean (StableHeads), so every
// block below them was merged on that member. The frontier A is the set
// of local blocks below the reported heads of every member (a walk from
// each member's heads through the blocks stored here). The round waits
// until it has itself merged every reported head, and skips while a
// member has not reported heads. For each block b of A, lowest first, in
// chunks with local commits held and go-ds-crdt paused: every element b
// added whose tombstone exists is deleted with its tombstone, a tombstone
// whose element is already gone is deleted, and the raw block b is
// deleted unless an element it added is still live (a pinned block) or
// it is a member's reported head. Processed markers all stay.
//
// Why nothing acknowledged is lost, and nobody waits for a deleted block:
//
//  1. Reads do not change. A live key's value and priority are in the
//     set's key index (<ns>/s/k), which compaction never touches; only
//     dead elements go, and go-ds-crdt skips a tombstoned element in
//     every read and merge. A later delete of a key reads the delta
//     block of each of the key's other live elements (findBestValue):
//     those blocks are pinned.
//  2. No block is merged twice. go-ds-crdt walks a branch only down to
//     processed markers, and every marker stays; so a deleted element
//     can never come back from its block, and a late tombstone of a
//     compacted element only leaves a lone tombstone, which the next
//     round deletes.
//  3. No member needs a deleted block. A block of A is below the heads
//     every member reported, so every member has merged it: none walks
//     to it, and none asks another for it. A member cut off holds A back
//     at its last report, however long it is away; its return finds
//     every block it lacks. Blocks made later link to their maker's
//     heads, which are above A or in it (and a block of A is already
//     merged everywhere). A node joining by state transfer gets the
//     markers and needs no old block.
//  4. A crash leaves a consistent store. Each chunk's elements and
//     tombstones go in one atomic batch; an element never goes without
//     its tombstone. A block deleted, or not, after its batch is only
//     space: the next round walks to what is left of A (deleted lowest
//     first, so the rest stays reachable from the heads) and finishes.
//     The member table is saved and synced before anything is deleted,
//     as soon as a node joins it, and at Close (with the members' last
//     heads): a round run later on the data directory, after a crash or
//     offline (`starling compact` on a stopped node), still waits for
//     every node this one has heard from.
//
// What this first version does not reclaim: processed markers (one per
// block, about 65 bytes on disk; they stay so that nothing is merged
// twice), and history held back by a member that stays away (a dead node
// holds compaction until the operator removes it with `starling cluster
// remove`, after which it must rejoin with an empty data directory).
// Reclaiming markers needs receivers to refuse unmerged blocks at or
// below a frontier height and nodes beyond the frontier to rebase; see
// the issue on bounded history.
//
// Keys written through Put are plain go-ds-crdt keys: concurrent writes to
// one key resolve by DAG height, not by time. Starling's entity layer
// writes each field version under its own key and orders versions by
// hybrid logical timestamp; see package entity.
package crdt
