package crdt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
)

// Options configure a Store. Zero values take the defaults documented on
// each field (see DefaultOptions).
type Options struct {
	// Namespace is the key prefix of go-ds-crdt's data in the backing
	// datastore. Default "/crdt".
	Namespace string
	// CommitWindow is the longest the group committer waits for more
	// writes after the first one of a group, when the group before had
	// several (see committer). Default 2ms: long enough to gather a burst
	// from concurrent writers, short beside a LevelDB fsync.
	CommitWindow time.Duration
	// CommitMaxOps caps the writes in one delta (one Apply larger than
	// this is still committed whole). Default 512: go-ds-crdt recomputes
	// the encoded size of the whole pending delta on every write added to
	// a batch, so a group of n writes costs O(n^2); at 512 that is a few
	// microseconds per write, and a group still spreads one fsync and one
	// DAG node over hundreds of writes.
	CommitMaxOps int
	// CommitMaxBytes caps the encoded size of one delta. Default 512 KiB:
	// under libp2p's 1 MiB message limit (a delta is one block, and a
	// block must fit in one bitswap message) and go-ds-crdt's
	// MaxBatchDeltaSize.
	CommitMaxBytes int
	// CarryMaxBytes is the largest block carried inside a broadcast, so
	// receivers need no bitswap round. Larger blocks are fetched with
	// bitswap. Default 768 KiB (every group-committed delta fits).
	CarryMaxBytes int
	// RecentBlocksBytes bounds the cache of recently added or received
	// blocks that broadcasts and head exchanges carry. Default 32 MiB.
	RecentBlocksBytes int
	// RebroadcastInterval is go-ds-crdt's backstop rebroadcast of heads.
	// Default 5s. Heads are also sent on every new connection, so this
	// only matters for gossip lost on a live connection.
	RebroadcastInterval time.Duration
	// DAGSyncerTimeout bounds the fetch of a missing block. Default 30s
	// (go-ds-crdt's 5 min stalls every other head behind one that cannot
	// be fetched).
	DAGSyncerTimeout time.Duration
	// RepairInterval is how often a dirty store walks the DAG to fill
	// gaps. Default 1m (go-ds-crdt's 1h leaves gaps for an hour).
	RepairInterval time.Duration
	// NumWorkers is go-ds-crdt's number of DAG workers. Default 5.
	NumWorkers int
	// ReceiveBufferBytes bounds received messages waiting to be
	// processed; beyond it the oldest are dropped (their heads come
	// again by rebroadcast or head exchange). Default 64 MiB.
	ReceiveBufferBytes int
	// HeadsResendDelay is when heads are sent a second time to a newly
	// connected peer: gossip and streams opened in the first moments of a
	// connection are sometimes lost. Default 1s.
	HeadsResendDelay time.Duration
	// HeadsInterval is how often the store sends its heads to every
	// connected peer, directly. go-ds-crdt rebroadcasts only heads it has
	// not seen in others' broadcasts, so once the reachable nodes agree
	// nobody rebroadcasts, and a node that lost the last broadcasts
	// (packet loss) would stay behind until the next write. Default 5s;
	// a heads message is a few hundred bytes.
	HeadsInterval time.Duration
	// LocalBlocks reads the node's block storage without going to the
	// network (a boxo blockstore over the same datastore as the DAG
	// service). When set, peers exchange whole DAG branches on request,
	// so a peer that missed many deltas catches up in a few round trips
	// instead of one bitswap round per block. Default nil: bitswap only.
	LocalBlocks LocalBlocks
	// HoldRemoteWhenEmpty makes a store that opens with no state (a new
	// or wiped node) hold received heads back from the start, until
	// ReleaseOpenHold: a node that joins by state transfer must not merge
	// a peer's heads before it has decided, or it would walk a history
	// that compaction may have taken away and believe itself complete.
	HoldRemoteWhenEmpty bool
	// BlocksPrefix is the datastore prefix under which LocalBlocks keeps
	// the raw blocks, for the history's size and for giving the space
	// back after a compaction. Default "/blocks".
	BlocksPrefix string
	// CompactInterval is how often the automatic compaction policy looks
	// at the history's size. Default 1m (a look costs a few index reads);
	// negative turns automatic compaction off (Compact still works).
	CompactInterval time.Duration
	// CompactMinHistory is the history size (bytes on disk) from which a
	// round runs at once: above both it and the live state's size.
	// Default 8 MiB: below that the history is no bigger than LevelDB's
	// own write buffer and a round would give little back.
	CompactMinHistory int64
	// CompactMaxAge is the longest between two automatic rounds while
	// there is history, whatever its size, so a node written slowly
	// sheds its tombstones too. Default 1h.
	CompactMaxAge time.Duration
	// CompactDuty is the share of one core an automatic round may take
	// while it runs: after each slice of work (a chunk of deletes, 512
	// blocks of the walk) it rests for as long as the slice took times
	// (1-CompactDuty)/CompactDuty. Default 0.25: on a two-core edge node
	// a round back to back with 64 writers cost them 40-60% of their
	// rate unpaced. 1 runs unpaced. An explicit Compact always runs
	// unpaced (the operator asked for it now).
	CompactDuty float64
	// EvictAfter is how long a member may stay away (or send no usable
	// report) before compaction stops waiting for it (evict.go): the rounds then reclaim what it
	// has not merged, and when it comes back it rebases (takes a state
	// transfer, keeping its own writes) before it counts again. Default
	// 1h: a node away that long pays one state transfer of the live
	// state on its return, while the others would otherwise keep every
	// write made meanwhile (at 1k writes/s, about 360 MB an hour).
	// Negative: never (a dead node holds compaction until the operator
	// removes it).
	EvictAfter time.Duration
	// Self is this node's member ID (its peer ID), as others report it:
	// a state transfer's member table may name it, and the tie-break of
	// two sides that evicted each other compares it.
	Self string
	// Logger receives the store's logs. Default: discard. Lines carry
	// "component" (crdt, go-ds-crdt, broadcaster): give a logger without.
	Logger *slog.Logger
}

// LocalBlocks reads blocks from local storage only. boxo's
// blockstore.Blockstore implements it.
type LocalBlocks interface {
	Has(ctx context.Context, c cid.Cid) (bool, error)
	Get(ctx context.Context, c cid.Cid) (blocks.Block, error)
	// DeleteBlock removes a block (compaction); a missing block is no
	// error.
	DeleteBlock(ctx context.Context, c cid.Cid) error
}

// DefaultOptions returns the defaults.
func DefaultOptions() Options {
	return Options{
		Namespace:           "/crdt",
		CommitWindow:        2 * time.Millisecond,
		CommitMaxOps:        512,
		CommitMaxBytes:      512 << 10,
		CarryMaxBytes:       768 << 10,
		RecentBlocksBytes:   32 << 20,
		RebroadcastInterval: 5 * time.Second,
		DAGSyncerTimeout:    30 * time.Second,
		RepairInterval:      time.Minute,
		NumWorkers:          5,
		ReceiveBufferBytes:  64 << 20,
		HeadsResendDelay:    time.Second,
		HeadsInterval:       5 * time.Second,
		BlocksPrefix:        "/blocks",
		CompactInterval:     time.Minute,
		CompactMinHistory:   8 << 20,
		CompactMaxAge:       time.Hour,
		CompactDuty:         0.25,
		EvictAfter:          time.Hour,
	}
}

// withDefaults fills zero fields from DefaultOptions.
func (o Options) withDefaults() Options {
	d := DefaultOptions()
	if o.Namespace == "" {
		o.Namespace = d.Namespace
	}
	if o.CommitWindow == 0 {
		o.CommitWindow = d.CommitWindow
	}
	if o.CommitMaxOps == 0 {
		o.CommitMaxOps = d.CommitMaxOps
	}
	if o.CommitMaxBytes == 0 {
		o.CommitMaxBytes = d.CommitMaxBytes
	}
	if o.CarryMaxBytes == 0 {
		o.CarryMaxBytes = d.CarryMaxBytes
	}
	if o.RecentBlocksBytes == 0 {
		o.RecentBlocksBytes = d.RecentBlocksBytes
	}
	if o.RebroadcastInterval == 0 {
		o.RebroadcastInterval = d.RebroadcastInterval
	}
	if o.DAGSyncerTimeout == 0 {
		o.DAGSyncerTimeout = d.DAGSyncerTimeout
	}
	if o.RepairInterval == 0 {
		o.RepairInterval = d.RepairInterval
	}
	if o.NumWorkers == 0 {
		o.NumWorkers = d.NumWorkers
	}
	if o.ReceiveBufferBytes == 0 {
		o.ReceiveBufferBytes = d.ReceiveBufferBytes
	}
	if o.HeadsResendDelay == 0 {
		o.HeadsResendDelay = d.HeadsResendDelay
	}
	if o.HeadsInterval == 0 {
		o.HeadsInterval = d.HeadsInterval
	}
	if o.BlocksPrefix == "" {
		o.BlocksPrefix = d.BlocksPrefix
	}
	if o.CompactInterval == 0 {
		o.CompactInterval = d.CompactInterval
	}
	if o.CompactMinHistory == 0 {
		o.CompactMinHistory = d.CompactMinHistory
	}
	if o.CompactMaxAge == 0 {
		o.CompactMaxAge = d.CompactMaxAge
	}
	if o.CompactDuty == 0 {
		o.CompactDuty = d.CompactDuty
	}
	if o.EvictAfter == 0 {
		o.EvictAfter = d.EvictAfter
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return o
}

// Validate reports every problem at once, naming the option.
func (o Options) Validate() error {
	var errs []error
	neg := func(name string, v int64) {
		if v < 0 {
			errs = append(errs, fmt.Errorf("crdt: %s is %d; it must not be negative", name, v))
		}
	}
	neg("CommitWindow", int64(o.CommitWindow))
	neg("CommitMaxOps", int64(o.CommitMaxOps))
	neg("CommitMaxBytes", int64(o.CommitMaxBytes))
	neg("CarryMaxBytes", int64(o.CarryMaxBytes))
	neg("RecentBlocksBytes", int64(o.RecentBlocksBytes))
	neg("RebroadcastInterval", int64(o.RebroadcastInterval))
	neg("DAGSyncerTimeout", int64(o.DAGSyncerTimeout))
	neg("RepairInterval", int64(o.RepairInterval))
	neg("NumWorkers", int64(o.NumWorkers))
	neg("ReceiveBufferBytes", int64(o.ReceiveBufferBytes))
	neg("HeadsResendDelay", int64(o.HeadsResendDelay))
	neg("HeadsInterval", int64(o.HeadsInterval))
	neg("CompactMinHistory", o.CompactMinHistory)
	neg("CompactMaxAge", int64(o.CompactMaxAge))
	if o.CompactDuty < 0 || o.CompactDuty > 1 {
		errs = append(errs, fmt.Errorf("crdt: CompactDuty is %g; it must be a share of one core between 0 and 1 (0 takes the default, 1 runs unpaced)", o.CompactDuty))
	}
	if o.CommitMaxBytes > 900<<10 {
		errs = append(errs, fmt.Errorf("crdt: CommitMaxBytes is %d; it must stay under 900 KiB so that a delta fits in one libp2p message", o.CommitMaxBytes))
	}
	if o.Namespace != "" && o.Namespace[0] != '/' {
		errs = append(errs, errors.New("crdt: Namespace must start with '/'"))
	}
	return errors.Join(errs...)
}
