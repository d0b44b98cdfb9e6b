// Package crdt is Starling's replicated key-value store: go-ds-crdt over
// LevelDB, tuned for fast replication and fast healing.
//
// Walk-through:
//
//   - OpenLevelDB opens the node's LevelDB. Writes are not fsynced one by
//     one; Sync makes everything before it durable with one fsync. A
//     damaged store (a table the MANIFEST lists gone, a damaged MANIFEST
//     or journal record that goleveldb would skip, a table failing its
//     checksums) is refused with ErrDamaged, not opened with part of its
//     data missing (damage.go). When writes fail (a full disk), it says
//     so (Health, Status.Writable) and reopens goleveldb once they can
//     work again, since goleveldb keeps a failed journal write's error.
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
//   - Compact reclaims history (compact.go, frontier.go); see
//     "Compaction" below.
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
// paused between broadcasts, as state transfer does. Automatic rounds
// are paced to a share of one core (Options.CompactDuty): after each
// slice of work they rest in proportion, so writes keep their rate
// while a round runs; an explicit Compact runs unpaced.
//
// What a round deletes. Members are the nodes whose node reports this
// store has ever been given (ObserveHeads, NoteMember), minus those the
// operator removed (ForgetMember), plus this node; each member's entry
// holds the stable heads it last reported: heads read while go-ds-crdt
// was between broadcasts and the store clean (StableHeads), so every
// block below them was merged on that member. The frontier set A is the
// set of local blocks below the reported heads of every member (a walk
// from each member's heads through the blocks stored here). The round
// waits until it has itself merged every reported head, and skips while
// a member has not reported heads. For each block b of A, lowest first,
// in chunks (what to delete is read first; the deletes go in one batch
// with local commits held and go-ds-crdt paused): every element b added
// whose tombstone exists is deleted with its tombstone, a tombstone whose
// element is already gone is deleted, the raw block b is deleted unless
// an element it added is still live (a pinned block) or it is a member's
// reported head, and b's processed marker is deleted unless b is in K:
// the maxima of A, blocks of A linked from blocks outside it, pinned
// blocks, reported heads, and the top markerSlack heights of A. Before
// any marker goes, the frontier height F (the highest block whose marker
// may go) is written, synced, inside go-ds-crdt's namespace so that state
// transfer carries it with the markers.
//
// Why nothing acknowledged is lost, nothing deleted comes back, and
// nobody waits for a deleted block:
//
//  1. Reads do not change. A live key's value and priority are in the
//     set's key index (<ns>/s/k), which compaction never touches; only
//     dead elements go, and go-ds-crdt skips a tombstoned element in
//     every read and merge. A later delete of a key reads the delta
//     block of each of the key's other live elements (findBestValue):
//     those blocks are pinned.
//  2. No member needs a deleted block. A block of A is below the heads
//     every member reported, so every member has merged it: none walks
//     to it, and none asks another for it. A member cut off holds A back
//     at its last report, however long it is away; its return finds
//     every block it lacks. A node joining by state transfer gets the
//     markers and needs no old block.
//  3. No member makes a walk reach a deleted marker. go-ds-crdt walks a
//     new branch down to processed markers. A block a member makes after
//     its report links to that member's heads of the moment; they are
//     maximal among what it has merged, which includes A, so such a head
//     is either above A or a maximum of A, whose marker is kept. Blocks
//     made before the report are merged here (the round waited for
//     that), and blocks this node holds outside A keep the markers of
//     their children in A. The same argument gives the height bound: a
//     block a member makes after its report lies above a maximum of A,
//     so it is higher than F.
//  4. Nothing is merged twice. So a block not merged here at height F or
//     below can only come from a node that is not a member (removed by
//     the operator). Two checks keep it out (frontier.go): the
//     broadcaster drops heads whose branch, as stored here, reaches one
//     (and says which peer sent them), and the DAG service go-ds-crdt
//     reads through refuses to return one, whatever path asks (a walk, a
//     state transfer's merge). Merging it would merge again a block whose
//     marker is gone and bring back an element whose tombstone is gone.
//  5. A crash leaves a consistent store. F is durable before any marker
//     goes. Each chunk's elements, tombstones and markers go in one
//     atomic batch; an element never goes without its tombstone. A block
//     deleted, or not, after its batch is only space: the next round
//     walks to what is left of A (deleted lowest first, so the rest stays
//     reachable from the heads) and finishes. The member table is saved
//     and synced before anything is deleted, as soon as a node joins it
//     (a row of its own, folded into the table at the next save), and at
//     Close (with the members' last heads): a round run later on
//     the data directory, after a crash or offline (`starling compact`
//     on a stopped node), still waits for every node this one has heard
//     from.
//
// A node whose own history lies below a source's frontier (it was built
// apart: a node that started alone and met the cluster later, or one
// removed and added again) cannot merge it as a DAG. When such a node
// takes a state transfer (a resync, which a dirty store does by itself),
// Install writes its live values that the installed state lacks again,
// as new local writes on top of it (replayLive): for the entity tree's
// records, each version under its own key and ordered by hybrid logical
// timestamp, that is what a merge would give; raw keys become add-wins.
//
// A member that stays away, or keeps reporting nothing usable (no
// stable heads, or heads not merged here), holds the rounds back only
// for Options.EvictAfter (default 1h, counted while this store is open):
// then a round evicts it and reclaims past its heads (evict.go); but
// when that holds for every member, two or more, the round evicts none
// (this node is the one cut off or behind; evictStale). That
// is the case above, with the evicted node in the role of the node built
// apart: when it comes back, the others list it in their reports, it
// takes a state transfer from one of them (replaying its own live
// values), and it counts again once it reports the higher install
// count and heads merged here. Rounds hold while an evicted member is
// back and has not rebased. Of two sides that evicted each other, the one with the higher
// lineage (its lowest member ID) rebases, so their histories do not
// swap. The argument of points 2 and 3 holds for the members that are
// not evicted; point 4's checks keep the evicted one's writes out until
// it has rebased, and the replay brings them in. Rounds wait for an
// evicted member that is back for at most EvictAfter: a rebase takes
// seconds, and one that never comes must not hold compaction.
//
// What this version does not reclaim: the markers and set entries a
// node received by state transfer before its first round; pinned blocks
// (one per live element of a key written many times through the raw
// key-value API).
//
// Keys written through Put are plain go-ds-crdt keys: concurrent writes to
// one key resolve by DAG height, not by time. Starling's entity layer
// writes each field version under its own key and orders versions by
// hybrid logical timestamp; see package entity.
package crdt
