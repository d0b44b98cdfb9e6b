package crdt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	dshelp "github.com/ipfs/boxo/datastore/dshelp"
	cid "github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"
	crdt "github.com/ipfs/go-ds-crdt"
	ipld "github.com/ipfs/go-ipld-format"

	"github.com/starling-sync/starling/internal/kv"
)

// Sentinel errors. Test for them with errors.Is.
var (
	// ErrClosed means the store has been closed.
	ErrClosed = errors.New("crdt: store closed")
	// ErrTooLarge means one write (Put or Apply) does not fit in a delta.
	ErrTooLarge = errors.New("crdt: write too large")
	// ErrNotFound is returned by Get for a missing key. It is
	// ds.ErrNotFound, so either works with errors.Is.
	ErrNotFound = ds.ErrNotFound
)

// Transport is what the store needs from the network: broadcast to all,
// send to one, receive. p2p.Replication implements it.
type Transport interface {
	// Publish sends data to every peer. It may be lost (a partition);
	// the store recovers through head exchange and rebroadcast.
	Publish(ctx context.Context, data []byte) error
	// SendTo sends data to one peer, named by its string ID.
	SendTo(ctx context.Context, to string, data []byte) error
	// Receive blocks for the next message from a peer. It returns an
	// error once ctx ends.
	Receive(ctx context.Context) (from string, data []byte, err error)
}

// Op is one write in a group: a Put, or a Delete when Delete is true.
// It is entity.Op too (both alias kv.Op).
type Op = kv.Op

// opsSize is the bytes ops add to a delta, about.
func opsSize(ops []Op) int {
	n := 0
	for _, o := range ops {
		n += len(o.Key.String()) + len(o.Value) + 48
	}
	return n
}

// Status is a snapshot of the store's sync state.
type Status struct {
	Heads        []string `json:"heads"`                 // CIDs of the current DAG heads
	MaxHeight    uint64   `json:"max_height"`            // height of the highest head
	QueuedJobs   int      `json:"queued_jobs"`           // DAG blocks waiting to be processed
	Dirty        bool     `json:"dirty"`                 // a DAG walk failed; repair pending
	Writable     bool     `json:"writable"`              // the datastore accepts writes
	WriteError   string   `json:"write_error,omitempty"` // why it does not (a full disk...), and what to do
	Syncing      bool     `json:"syncing"`               // a state transfer is being installed
	PendingOps   int64    `json:"pending_ops"`           // writes waiting for group commit
	ReceiveQueue int      `json:"receive_queue"`         // messages received, not yet processed
	Received     uint64   `json:"received"`              // messages received from peers
	Rejected     uint64   `json:"rejected"`              // malformed messages dropped
	Dropped      uint64   `json:"dropped"`               // messages dropped by a full receive queue
	Requested    uint64   `json:"requested"`             // blocks asked of peers in branch requests
	Served       uint64   `json:"served"`                // blocks sent to peers in branch replies
	Commits      uint64   `json:"commits"`               // deltas committed locally
	OpsCommitted uint64   `json:"ops_committed"`         // writes committed locally

	// Compaction (compact.go): the live state's and the history's size
	// on disk, the rounds run and bytes they gave back since the node
	// started, when the last round ended and what it gave back, and how
	// many nodes' heads bound what can be reclaimed.
	LiveBytes        int64     `json:"live_bytes"`
	HistoryBytes     int64     `json:"history_bytes"`
	CompactRounds    uint64    `json:"compact_rounds"`
	CompactReclaimed int64     `json:"compact_reclaimed_bytes"`
	LastCompacted    time.Time `json:"last_compacted,omitzero"`
	LastReclaimed    int64     `json:"last_reclaimed_bytes"`
	CompactMembers   int       `json:"compact_members"`
	CompactEvicted   int       `json:"compact_evicted"`
	// Installs counts the state transfers this store has installed.
	Installs uint64 `json:"installs"`
}

// healthReporter is the part of a datastore (LevelDB) that says whether
// it accepts writes. Health must not block.
type healthReporter interface{ Health() Health }

var _ healthReporter = (*LevelDB)(nil)

// Store is a replicated key-value store: go-ds-crdt with group commit,
// blocks carried in broadcasts, head exchange on connect and a change feed.
type Store struct {
	opts    Options
	log     *slog.Logger
	backing ds.Batching
	dag     ipld.DAGService // wrapped: records added blocks
	copts   *crdt.Options
	bc      *broadcaster // nil when offline
	feed    *feed

	// dmu guards dstore and ns, which a state transfer replaces
	// (install.go).
	dmu    sync.RWMutex
	dstore *crdt.Datastore
	ns     string // go-ds-crdt's live namespace
	// stageMu keeps a transfer from receiving into the namespace an
	// earlier swap has yet to delete: a swap takes it, and its
	// background deletion (afterSwap) releases it.
	stageMu sync.Mutex
	// commitMu is held by the committer while it writes a delta, and by
	// a state transfer to keep local writes out of a snapshot or an
	// install.
	commitMu sync.Mutex
	// stalePending: the last commit failed and may have left its ops in
	// go-ds-crdt's pending delta; the next commit restarts go-ds-crdt
	// first (commit.go). Guarded by commitMu.
	stalePending bool
	// syncing is set while a state transfer installs.
	syncing atomic.Bool
	// pendingHeads are this node's heads from before an install that was
	// cut off; they are merged after the next install.
	pendingHeads []cid.Cid

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	closeMu       sync.RWMutex
	closed        bool
	writes        chan *writeReq
	committerDone chan struct{}
	closeOnce     sync.Once
	closeErr      error

	localMu      sync.Mutex
	localKeys    map[string]struct{}
	localChanges []Change

	// Compaction (compact.go): one round at a time, the member table,
	// and what the rounds did.
	compactMu   sync.Mutex
	members     members
	compactions compactRecord
	// frontier is the compaction frontier height (frontier.go), 0
	// before the first round that deleted markers; refusedBelow counts
	// blocks and heads refused for being below it.
	frontier     atomic.Uint64
	refusedBelow atomic.Uint64
	// heldAtOpen: the store opened empty with HoldRemoteWhenEmpty and
	// holds received heads until ReleaseOpenHold.
	heldAtOpen atomic.Bool
	// installs counts the state transfers installed (evict.go); opened
	// is when Open ran; now is the clock of eviction (tests replace it).
	installs atomic.Uint64
	// lastInstall is when this store last installed a state transfer
	// while open (MustRebase).
	lastInstall atomic.Pointer[time.Time]
	opened      time.Time
	now         func() time.Time

	peersMu sync.Mutex
	peers   map[string]struct{} // connected peers, for the heads loop

	pendingOps   atomic.Int64
	commits      atomic.Uint64
	opsCommitted atomic.Uint64
}

// Open opens (or creates) the store on backing, which should be a LevelDB
// from OpenLevelDB: its Sync is what makes acknowledged writes durable.
// dag fetches missing blocks from peers; tr carries broadcasts, and may be
// nil for a store that does not replicate. The store owns neither backing,
// dag nor tr: close it before them.
func Open(ctx context.Context, backing ds.Batching, dag ipld.DAGService, tr Transport, opts Options) (*Store, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	if backing == nil || dag == nil {
		return nil, errors.New("crdt: Open needs a datastore and a DAG service")
	}
	s := &Store{
		opts:          opts,
		log:           opts.Logger.With("component", "crdt"),
		backing:       backing,
		feed:          newFeed(),
		writes:        make(chan *writeReq, 4096),
		committerDone: make(chan struct{}),
		peers:         make(map[string]struct{}),
		now:           time.Now,
	}
	s.opened = s.now()
	recent := newRecentBlocks(opts.RecentBlocksBytes)

	copts := crdt.DefaultOptions()
	copts.Logger = goLogger{opts.Logger.With("component", "go-ds-crdt")}
	copts.RebroadcastInterval = opts.RebroadcastInterval
	copts.DAGSyncerTimeout = opts.DAGSyncerTimeout
	copts.RepairInterval = opts.RepairInterval
	copts.NumWorkers = opts.NumWorkers
	copts.PutHook = func(k ds.Key, v []byte) { s.hook(Change{Key: k, Value: v}) }
	copts.DeleteHook = func(k ds.Key) { s.hook(Change{Key: k, Deleted: true}) }

	var bcast crdt.Broadcaster
	if tr != nil {
		s.bc = newBroadcaster(tr, dag, recent, opts)
		s.bc.processed = s.isProcessed
		s.bc.gate = s.gateHeads
		bcast = s.bc
	}
	s.dag = wrapDAG(dag, recent, s)
	s.copts = copts
	if err := s.recoverInstall(ctx); err != nil {
		if s.bc != nil {
			s.bc.close()
		}
		return nil, err
	}
	if err := s.loadFrontier(ctx); err != nil {
		if s.bc != nil {
			s.bc.close()
		}
		return nil, err
	}
	if err := s.loadMembers(ctx); err != nil {
		if s.bc != nil {
			s.bc.close()
		}
		return nil, err
	}
	if err := s.loadInstalls(ctx); err != nil {
		if s.bc != nil {
			s.bc.close()
		}
		return nil, err
	}
	dstore, err := crdt.New(backing, ds.NewKey(s.ns), s.dag, bcast, copts)
	if err != nil {
		if s.bc != nil {
			s.bc.close()
		}
		return nil, fmt.Errorf("crdt: open: %w", err)
	}
	s.dstore = dstore
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if s.bc != nil && opts.HoldRemoteWhenEmpty && len(dstore.InternalStats(ctx).Heads) == 0 {
		s.heldAtOpen.Store(true)
		s.HoldRemote()
	}

	go func() {
		defer close(s.committerDone)
		s.committer()
	}()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.feed.run(s.ctx, s.resolve)
	}()
	if s.bc != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.headsLoop()
		}()
	}
	if s.opts.CompactInterval > 0 && s.opts.LocalBlocks != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.compactLoop()
		}()
	}
	return s, nil
}

// Get returns the value of key, or ErrNotFound.
func (s *Store) Get(ctx context.Context, key ds.Key) ([]byte, error) {
	return s.crdt().Get(ctx, key)
}

// isProcessed reads go-ds-crdt's processed-block marker
// (<namespace>/b/<multihash key>; the layout of go-ds-crdt v0.6.8, which
// state transfer relies on too).
func (s *Store) isProcessed(c cid.Cid) bool {
	s.dmu.RLock()
	ns := s.ns
	s.dmu.RUnlock()
	k := ds.NewKey(ns).ChildString("b").ChildString(dshelp.MultihashToDsKey(c.Hash()).String())
	ok, err := s.backing.Has(context.Background(), k)
	return err == nil && ok
}

// crdt returns the current go-ds-crdt instance.
func (s *Store) crdt() *crdt.Datastore {
	s.dmu.RLock()
	defer s.dmu.RUnlock()
	return s.dstore
}

// Has reports whether key exists.
func (s *Store) Has(ctx context.Context, key ds.Key) (bool, error) {
	return s.crdt().Has(ctx, key)
}

// Query lists entries (see go-datastore's query.Query).
func (s *Store) Query(ctx context.Context, q query.Query) (query.Results, error) {
	return s.crdt().Query(ctx, q)
}

// Put writes key=value. It returns once the write is durable locally:
// its group's delta is committed and synced to disk. Replication to peers
// follows asynchronously.
func (s *Store) Put(ctx context.Context, key ds.Key, value []byte) error {
	return s.Apply(ctx, []Op{{Key: key, Value: value}})
}

// Delete removes key; durable on return like Put.
func (s *Store) Delete(ctx context.Context, key ds.Key) error {
	return s.Apply(ctx, []Op{{Key: key, Delete: true}})
}

// Apply commits ops in one delta, so peers apply them together. Within
// one call, and within one group of concurrent calls, the last op on a
// key wins. Apply hands ops to the group committer, which gathers the
// writes of concurrent callers into one delta. If ctx ends before the ops
// are committed, Apply returns ctx.Err() and the ops may or may not be
// committed. With any other error they were not acknowledged, and they
// are not carried into a later commit (go-ds-crdt is restarted to drop
// them from its pending delta); only a commit that failed at its final
// fsync may have been written, and sent to peers, all the same.
func (s *Store) Apply(ctx context.Context, ops []Op) error {
	if len(ops) == 0 {
		return nil
	}
	size, err := s.checkSize(ops)
	if err != nil {
		return err
	}
	req := &writeReq{ops: ops, size: size, done: make(chan error, 1)}
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return ErrClosed
	}
	s.pendingOps.Add(int64(len(ops)))
	select {
	case s.writes <- req:
	case <-ctx.Done():
		s.pendingOps.Add(-int64(len(ops)))
		s.closeMu.RUnlock()
		return ctx.Err()
	}
	s.closeMu.RUnlock()
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Commit writes ops as one delta at once, on the caller's goroutine,
// without waiting to be gathered with other writes: it is for a caller
// that gathers its writes itself (entity's committer), for which a
// second gathering would only add a goroutine hand-off and a wait.
// Within ops the last op on a key wins. Commit is durable on return, as
// Apply. It waits for a commit in progress (the group committer's, or a
// state transfer's), whatever ctx says: ctx is checked only before the
// commit begins, since a commit cut off midway would leave its ops in
// go-ds-crdt's shared pending delta.
func (s *Store) Commit(ctx context.Context, ops []Op) error {
	if len(ops) == 0 {
		return nil
	}
	if _, err := s.checkSize(ops); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// Close waits for the commit (it takes closeMu to close).
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	s.pendingOps.Add(int64(len(ops)))
	defer s.pendingOps.Add(-int64(len(ops)))
	return s.commit(ops)
}

// checkSize returns the size of ops, or ErrTooLarge.
func (s *Store) checkSize(ops []Op) (int, error) {
	size := opsSize(ops)
	if size > s.opts.CommitMaxBytes {
		return 0, fmt.Errorf("%w: %d bytes in %d ops exceeds the %d-byte delta limit; split the write", ErrTooLarge, size, len(ops), s.opts.CommitMaxBytes)
	}
	return size, nil
}

// Subscribe follows changes under prefix ("/" for all), local or remote,
// buffering up to buf changes (default 1024). A subscriber that falls
// behind loses changes and sees Overflowed() true.
//
// A remote change is delivered as go-ds-crdt applies it; a Get issued at
// that very moment may still return the previous value for an instant.
// Local changes are delivered after their write is durable.
//
// It returns the Feed interface, not a concrete type, so that the store
// is an entity.Backend as it is (see package kv).
func (s *Store) Subscribe(prefix ds.Key, buf int) Feed {
	return s.feed.subscribe(prefix, buf)
}

// PeerConnected sends this store's heads to a newly connected peer at
// once, and again after HeadsResendDelay, instead of waiting for the
// rebroadcast timer: gossip published during a partition is lost.
func (s *Store) PeerConnected(peer string) {
	if s.bc == nil {
		return
	}
	s.peersMu.Lock()
	s.peers[peer] = struct{}{}
	s.peersMu.Unlock()
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.sendHeads(peer, true)
		t := time.NewTimer(s.opts.HeadsResendDelay)
		defer t.Stop()
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		s.sendHeads(peer, true)
	}()
}

// PeerDisconnected stops the periodic heads to a peer, and forgets which
// blocks branch replies sent it (broadcaster.forgetSent).
func (s *Store) PeerDisconnected(peer string) {
	s.peersMu.Lock()
	delete(s.peers, peer)
	s.peersMu.Unlock()
	if s.bc != nil {
		s.bc.forgetSent(peer)
	}
}

// headsLoop sends the heads every HeadsInterval (see
// Options.HeadsInterval) to every connected peer whose last report does
// not show the same stable heads: a peer that has merged exactly what
// this node has needs nothing, and an idle cluster sends no heads at all
// (before, every node sent to every other every interval: N² messages).
// A peer missing a broadcast reports other heads, and gets these.
func (s *Store) headsLoop() {
	t := time.NewTicker(s.opts.HeadsInterval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		s.peersMu.Lock()
		peers := make([]string, 0, len(s.peers))
		for p := range s.peers {
			peers = append(peers, p)
		}
		s.peersMu.Unlock()
		ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
		heads := headStrings(ctx, s.crdt())
		cancel()
		for _, p := range peers {
			if s.memberHasHeads(p, heads) {
				continue
			}
			s.sendHeads(p, false)
		}
	}
}

// headStrings are d's current heads, sorted, as StableHeads gives them.
func headStrings(ctx context.Context, d *crdt.Datastore) []string {
	var out []string
	for _, h := range d.InternalStats(ctx).Heads {
		out = append(out, h.String())
	}
	slices.Sort(out)
	return out
}

// memberHasHeads reports whether member's last report showed exactly
// heads (sorted) as its stable heads.
func (s *Store) memberHasHeads(member string, heads []string) bool {
	if len(heads) == 0 {
		return false
	}
	s.members.mu.Lock()
	defer s.members.mu.Unlock()
	m, ok := s.members.m[member]
	return ok && !m.Unknown && slices.Equal(m.Heads, heads)
}

func (s *Store) sendHeads(peer string, carry bool) {
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	heads := s.crdt().InternalStats(ctx).Heads
	if len(heads) == 0 {
		return
	}
	msg, err := s.bc.headsMessage(heads, carry)
	if err != nil {
		s.log.Warn("encode heads", "err", err)
		return
	}
	if err := s.bc.tr.SendTo(ctx, peer, msg); err != nil && ctx.Err() == nil {
		s.log.Debug("send heads", "peer", peer, "err", err)
	}
}

// Status returns the sync state.
func (s *Store) Status(ctx context.Context) Status {
	d := s.crdt()
	st := d.InternalStats(ctx)
	out := Status{
		MaxHeight:    st.MaxHeight,
		QueuedJobs:   st.QueuedJobs,
		Dirty:        d.IsDirty(ctx),
		Syncing:      s.syncing.Load(),
		PendingOps:   s.pendingOps.Load(),
		Commits:      s.commits.Load(),
		OpsCommitted: s.opsCommitted.Load(),
	}
	for _, h := range st.Heads {
		out.Heads = append(out.Heads, h.String())
	}
	out.Writable = true
	if hr, ok := s.backing.(healthReporter); ok {
		h := hr.Health()
		out.Writable, out.WriteError = h.Writable, h.WriteError
	}
	cs := s.compactionStatus(ctx)
	out.LiveBytes, out.HistoryBytes = cs.LiveBytes, cs.HistoryBytes
	out.CompactRounds, out.CompactReclaimed, out.CompactMembers, out.CompactEvicted = cs.Rounds, cs.Reclaimed, cs.Members, cs.Evicted
	out.Installs = s.installs.Load()
	if cs.Last != nil {
		out.LastCompacted, out.LastReclaimed = cs.Last.Started.Add(cs.Last.Took), cs.Last.Reclaimed()
	}
	if s.bc != nil {
		out.ReceiveQueue = s.bc.queueLen()
		out.Received = s.bc.received.Load()
		out.Rejected = s.bc.rejected.Load()
		out.Dropped = s.bc.dropped.Load()
		out.Requested = s.bc.requested.Load()
		out.Served = s.bc.served.Load()
	}
	return out
}

// Close commits writes already submitted, stops every goroutine, closes
// go-ds-crdt and syncs the datastore. It does not close the datastore, DAG
// service or transport given to Open. Safe to call twice.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closeMu.Lock()
		s.closed = true
		close(s.writes)
		s.closeMu.Unlock()
		<-s.committerDone

		s.cancel()
		if s.bc != nil {
			s.bc.close() // before go-ds-crdt's Close, or it waits in Next
		}
		err := s.crdt().Close()
		s.wg.Wait()
		// The members' last heads, for a round run on this data
		// directory offline (`starling compact`).
		if merr := s.saveMembers(context.Background()); merr != nil {
			err = errors.Join(err, merr)
		}
		if serr := s.backing.Sync(context.Background(), ds.NewKey("/")); serr != nil {
			err = errors.Join(err, serr)
		}
		s.closeErr = err
	})
	return s.closeErr
}

// hook receives go-ds-crdt's put and delete hooks. It runs under
// go-ds-crdt's merge lock and must not block.
func (s *Store) hook(c Change) {
	s.localMu.Lock()
	if _, ok := s.localKeys[c.Key.String()]; ok {
		c.Local = true
		s.localChanges = append(s.localChanges, c)
		s.localMu.Unlock()
		return
	}
	s.localMu.Unlock()
	s.feed.push(c)
}

// resolve turns a deletion reported by go-ds-crdt into what the key holds
// now: a removed version may leave another value in place.
func (s *Store) resolve(c Change) Change {
	v, err := s.crdt().Get(s.ctx, c.Key)
	if err != nil {
		return c
	}
	return Change{Key: c.Key, Value: v, Local: c.Local}
}

// headCIDs is used by tests.
func (s *Store) headCIDs(ctx context.Context) []cid.Cid {
	return s.crdt().InternalStats(ctx).Heads
}
