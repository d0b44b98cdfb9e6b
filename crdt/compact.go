package crdt

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	dshelp "github.com/ipfs/boxo/datastore/dshelp"
	cid "github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	dsq "github.com/ipfs/go-datastore/query"
)

// Compaction reclaims the history that no node of the cluster can need
// any more; crdt/doc.go has the safety argument. In short: a round takes
// the frontier A, the DAG blocks that every member (every node whose
// report this node has ever received, minus those the operator removed)
// has merged, known from the stable heads each member last reported;
// for each block of A it deletes the set elements that are dead (their
// tombstone exists) together with their tombstones, the raw block itself
// unless a live element still lives in it (a pinned block), and its
// processed marker unless a walk can still reach it (frontier.go keeps
// such blocks from being merged again).

// memberKey is where the member table is kept (outside go-ds-crdt's
// namespace: it is this node's knowledge, not replicated state).
var memberKey = ds.NewKey("/_starling/compact/members")

// joinedPrefix holds a row per member saved when it joined the table
// (saveNewMember) since the whole table was last saved; saveMembers
// folds them into the table. A row is newer than the table: the table's
// save deletes every row it covers.
var joinedPrefix = ds.NewKey("/_starling/compact/joined")

// joinedKey is a member's row under joinedPrefix (hex: a member name
// may hold any byte, a key's path separator too).
func joinedKey(member string) ds.Key {
	return joinedPrefix.ChildString(hex.EncodeToString([]byte(member)))
}

// compactRangeMin is how much an automatic round must delete before it
// has LevelDB rewrite the history's key ranges to give the space back at
// once (an explicit Compact always does).
const compactRangeMin = 1 << 20

// markerSlack is how many heights below the top of A keep their
// processed markers, besides those a walk can reach: a margin for
// anything the reasoning in doc.go did not foresee, at a fixed cost.
const markerSlack = 64

// compactChunk is how many blocks of A one critical section handles:
// about a millisecond of deletes with go-ds-crdt paused and local
// commits held.
const compactChunk = 64

// ErrCompactBusy means a compaction round is already running.
var ErrCompactBusy = errors.New("crdt: a compaction is already running")

// Member is what the store knows of one node for compaction: the DAG
// heads it last reported as merged.
type Member struct {
	// Heads are the node's stable heads (see StableHeads) as it last
	// reported them.
	Heads []string `json:"heads"`
	// Seen is when they were reported.
	Seen time.Time `json:"seen"`
	// Unknown: the node was heard from, but has not reported stable
	// heads (it runs a version without them, or is busy); compaction
	// waits for it.
	Unknown bool `json:"unknown,omitempty"`
	// Installs is how many state transfers the node reported having
	// installed (evict.go).
	Installs uint64 `json:"installs,omitempty"`
	// Evicted: the node sent no usable report (see Good) for longer
	// than Options.EvictAfter (evicted at EvictedAt, having installed
	// EvictedInstalls state transfers);
	// compaction no longer waits for it, and it counts again once it
	// reports more installs than that: it has rebased.
	Evicted         bool      `json:"evicted,omitempty"`
	EvictedAt       time.Time `json:"evicted_at,omitzero"`
	EvictedInstalls uint64    `json:"evicted_installs,omitempty"`
	// Good is when the node last reported stable heads that are all
	// merged here: what eviction counts from (a node that keeps
	// reporting nothing usable holds compaction no longer than one that
	// is away). BackAt is its first report after its eviction.
	Good   time.Time `json:"good,omitzero"`
	BackAt time.Time `json:"back_at,omitzero"`
}

// CompactStats describes one compaction round.
type CompactStats struct {
	Started time.Time     `json:"started"`
	Took    time.Duration `json:"took_ns"`
	// Members is how many nodes' heads bounded the round (this one
	// included).
	Members int `json:"members"`
	// Frontier is how many blocks every member had merged (A); Walked
	// is how many local blocks the walk read.
	Frontier int `json:"frontier"`
	Walked   int `json:"walked"`
	// BlocksDeleted raw blocks went; Pinned blocks of A stay because a
	// live element lives in them.
	BlocksDeleted int `json:"blocks_deleted"`
	Pinned        int `json:"pinned"`
	// MarkersDeleted processed markers went (those no walk can reach).
	MarkersDeleted int `json:"markers_deleted"`
	// ElementsDeleted dead set elements went, each with its tombstone;
	// TombstonesDeleted counts tombstones whose element was already gone.
	ElementsDeleted   int `json:"elements_deleted"`
	TombstonesDeleted int `json:"tombstones_deleted"`
	// MaxHold is the longest that local commits and merges were held
	// for one chunk's deletes.
	MaxHold time.Duration `json:"max_hold_ns"`
	// BytesDeleted is what the round deleted: raw blocks and keys.
	BytesDeleted int64 `json:"bytes_deleted"`
	// HistoryBefore and HistoryAfter are the history's size on disk
	// (see Sizes; LevelDB's table files, so what is still in its write
	// buffer is not counted), when the datastore can tell.
	HistoryBefore int64 `json:"history_before"`
	HistoryAfter  int64 `json:"history_after"`
	// Skipped says why the round did nothing ("" when it ran).
	Skipped string `json:"skipped,omitempty"`
}

// Reclaimed is what the round gave back: the bytes it deleted.
func (c CompactStats) Reclaimed() int64 { return c.BytesDeleted }

// CompactProgress is reported while a round deletes.
type CompactProgress struct {
	Done, Total int // blocks of A handled
}

// members is the member table: every node whose heads this store has
// been told, by peer ID.
type members struct {
	mu sync.Mutex
	m  map[string]Member
	// dirty: changed since last saved.
	dirty bool
	// oddAt is the last round that found every member (two or more)
	// stale and evicted none (evictStale); lastRound the last round.
	oddAt, lastRound time.Time
	// saveMu orders saves: a table marshalled earlier is never written
	// over one marshalled later.
	saveMu sync.Mutex
}

// ObserveHeads records the stable heads a member reported; see
// ObserveReport.
func (s *Store) ObserveHeads(member string, heads []string, at time.Time) {
	s.ObserveReport(member, MemberReport{Heads: heads, HeadsKnown: true, At: at})
}

// NoteMember records a node this one knows of (connected, or a static
// peer) before its first report: compaction waits until it reports its
// heads. It changes nothing for a node already in the table. A new
// member is saved at once.
func (s *Store) NoteMember(member string) {
	s.members.mu.Lock()
	_, ok := s.members.m[member]
	if !ok {
		if s.members.m == nil {
			s.members.m = make(map[string]Member)
		}
		now := s.now() // Good: its grace before eviction starts now
		s.members.m[member] = Member{Unknown: true, Seen: now, Good: now}
		s.members.dirty = true
	}
	s.members.mu.Unlock()
	if !ok {
		s.saveNewMember(member)
	}
}

// saveNewMember saves a member when it joins the table (or is counted
// again), so that a round run on this data directory after a crash or
// offline (`starling compact` on a stopped node) still waits for that
// node: a member missing from the saved table would let such a round
// delete blocks it has not merged. Only the member's own row is
// written (joinedPrefix), with a sync; the whole table waits for the
// next round or Close. Writing the whole table for each one made a
// start O(N²): 200 nodes started together each wrote their table of up
// to 199 members 199 times (12% of the process's CPU in a 200-node
// start).
func (s *Store) saveNewMember(member string) {
	if err := s.saveJoined(s.ctx, member); err != nil && s.ctx.Err() == nil {
		s.log.Warn("compaction: saving a new member; the next round saves it again", "member", member, "err", err)
	}
}

func (s *Store) saveJoined(ctx context.Context, member string) error {
	s.members.saveMu.Lock()
	defer s.members.saveMu.Unlock()
	s.members.mu.Lock()
	m, ok := s.members.m[member]
	if ok {
		m.Heads = slices.Clone(m.Heads)
	}
	s.members.mu.Unlock()
	if !ok {
		return nil // forgotten meanwhile
	}
	b, err := json.Marshal(map[string]Member{member: m})
	if err != nil {
		return err
	}
	if err := s.backing.Put(ctx, joinedKey(member), b); err != nil {
		return fmt.Errorf("crdt: save compaction member %s: %w", member, err)
	}
	return s.backing.Sync(ctx, joinedPrefix)
}

// ForgetMember drops a node from the member table: compaction no longer
// waits for it. Call it when the operator removes the node for good; if
// it ever comes back it must join again with an empty data directory.
func (s *Store) ForgetMember(member string) {
	s.members.mu.Lock()
	defer s.members.mu.Unlock()
	if _, ok := s.members.m[member]; ok {
		delete(s.members.m, member)
		s.members.dirty = true
	}
}

// Members returns a copy of the member table.
func (s *Store) Members() map[string]Member {
	s.members.mu.Lock()
	defer s.members.mu.Unlock()
	out := make(map[string]Member, len(s.members.m))
	for k, v := range s.members.m {
		v.Heads = slices.Clone(v.Heads)
		out[k] = v
	}
	return out
}

// loadMembers reads the member table saved by an earlier run.
func (s *Store) loadMembers(ctx context.Context) error {
	m, found, err := savedMembers(ctx, s.backing)
	if err != nil {
		return err
	}
	s.members.mu.Lock()
	defer s.members.mu.Unlock()
	if found {
		s.members.m = m
	}
	// Without a table (see HasMemberTable), or with rows to fold in:
	// saved whole at the next round or Close.
	s.members.dirty = true
	return nil
}

// savedMembers reads the member table saved in backing, with the rows
// of members that joined since it was saved; found is false when there
// is neither. Written at the latest by Close, even empty: a data
// directory without one was not closed by a version that tracks
// members (see HasMemberTable).
func savedMembers(ctx context.Context, backing ds.Read) (m map[string]Member, found bool, err error) {
	m = make(map[string]Member)
	b, err := backing.Get(ctx, memberKey)
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, false, fmt.Errorf("crdt: read compaction members %s: %w", memberKey, err)
		}
		found = true
	case !errors.Is(err, ds.ErrNotFound):
		return nil, false, fmt.Errorf("crdt: read compaction members: %w", err)
	}
	res, err := backing.Query(ctx, dsq.Query{Prefix: joinedPrefix.String()})
	if err != nil {
		return nil, false, fmt.Errorf("crdt: read new compaction members: %w", err)
	}
	defer res.Close()
	for r := range res.Next() {
		if r.Error != nil {
			return nil, false, fmt.Errorf("crdt: read new compaction members: %w", r.Error)
		}
		var row map[string]Member
		if err := json.Unmarshal(r.Value, &row); err != nil {
			return nil, false, fmt.Errorf("crdt: read compaction member %s: %w", r.Key, err)
		}
		for id, v := range row {
			m[id] = v // newer than the table (joinedPrefix)
		}
		found = true
	}
	return m, found, nil
}

// HasMemberTable reports whether the datastore of a store (closed, or
// not yet opened) holds a saved member table. A store saves a member
// when a node joins it, and the table at each round and at Close;
// without either the data directory was last used by a version that did
// not track members, or crashed before hearing any node, and a round
// there would not know which nodes it must wait for.
func HasMemberTable(ctx context.Context, backing ds.Read) (bool, error) {
	_, found, err := savedMembers(ctx, backing)
	return found, err
}

// saveMembers writes the member table if it changed. It is written
// before a round deletes anything, so a restart never forgets a member
// that held the last round back.
func (s *Store) saveMembers(ctx context.Context) error {
	s.members.saveMu.Lock()
	defer s.members.saveMu.Unlock()
	s.members.mu.Lock()
	if !s.members.dirty {
		s.members.mu.Unlock()
		return nil
	}
	b, err := json.Marshal(s.members.m)
	s.members.dirty = false
	s.members.mu.Unlock()
	if err != nil {
		return err
	}
	// The rows of members that joined since the last save are in the
	// table now: deleted with its write, at once.
	res, err := s.backing.Query(ctx, dsq.Query{Prefix: joinedPrefix.String(), KeysOnly: true})
	if err != nil {
		return fmt.Errorf("crdt: save compaction members: %w", err)
	}
	joined, err := res.Rest()
	if err != nil {
		return fmt.Errorf("crdt: save compaction members: %w", err)
	}
	batch, err := s.backing.Batch(ctx)
	if err != nil {
		return fmt.Errorf("crdt: save compaction members: %w", err)
	}
	if err := batch.Put(ctx, memberKey, b); err != nil {
		return fmt.Errorf("crdt: save compaction members: %w", err)
	}
	for _, r := range joined {
		if err := batch.Delete(ctx, ds.NewKey(r.Key)); err != nil {
			return fmt.Errorf("crdt: save compaction members: %w", err)
		}
	}
	if err := batch.Commit(ctx); err != nil {
		return fmt.Errorf("crdt: save compaction members: %w", err)
	}
	return s.backing.Sync(ctx, memberKey)
}

// StableHeads returns this store's DAG heads at a moment when go-ds-crdt
// is between broadcasts (not part-way through a remote branch) and the
// store is clean, or ok false: then every block below the heads is
// merged here. Node reports carry them.
func (s *Store) StableHeads(ctx context.Context) (heads []string, ok bool) {
	if s.syncing.Load() {
		return nil, false
	}
	read := func() {
		d := s.crdt()
		if d.IsDirty(ctx) {
			return
		}
		heads, ok = headStrings(ctx, d), true
	}
	if s.bc == nil {
		read()
		return heads, ok
	}
	// Holding the broadcaster's lock while go-ds-crdt waits in Next keeps
	// it there: it cannot take the next message without the lock.
	s.bc.mu.Lock()
	defer s.bc.mu.Unlock()
	if !s.bc.waiting {
		return nil, false
	}
	read()
	return heads, ok
}

// walkBlock is one local block met by the frontier walk.
type walkBlock struct {
	height uint64
	links  []cid.Cid
	seen   int // members whose heads reach it
	size   int // bytes of the raw block
}

// Compact runs one compaction round: it reclaims the history every
// member has merged (see the package documentation), in chunks, with
// writes, reads and replication going on between them, and has LevelDB
// give the space back at once. progress, if not nil, is called after
// each chunk. It returns ErrCompactBusy if a round is running; a round
// with nothing to do says why in Skipped.
func (s *Store) Compact(ctx context.Context, progress func(CompactProgress)) (CompactStats, error) {
	return s.compact(ctx, progress, 1, nil)
}

// compact is a round; LevelDB rewrites the history's ranges when it
// deleted at least giveBackMin bytes (the automatic policy waits for
// large deletions: rewriting costs the disk and CPU the writes need, and
// LevelDB's own compactions drop deleted keys as it goes).
//
// pace (nil: unpaced) spreads the round's work over time.
func (s *Store) compact(ctx context.Context, progress func(CompactProgress), giveBackMin int64, pace *pacer) (st CompactStats, err error) {
	if !s.compactMu.TryLock() {
		return CompactStats{}, ErrCompactBusy
	}
	defer s.compactMu.Unlock()
	st.Started = time.Now()
	defer func() { st.Took = time.Since(st.Started) }()
	if s.opts.LocalBlocks == nil {
		st.Skipped = "no local block store"
		return st, nil
	}
	st.HistoryBefore = s.Sizes(ctx).History
	st.HistoryAfter = st.HistoryBefore

	// Who bounds the round: every member, and this node itself.
	self, ok := s.StableHeads(ctx)
	if !ok {
		st.Skipped = "the store is busy (merging a remote branch, dirty or installing a state transfer)"
		return st, nil
	}
	now := s.now()
	s.ObserveHeads(selfMember, self, now)
	s.evictStale(now)
	if err := s.saveMembers(ctx); err != nil {
		return st, err
	}
	mem := s.Members()
	var sets [][]cid.Cid
	for id, m := range mem {
		if m.Evicted {
			if s.isBack(m, now) {
				st.Skipped = fmt.Sprintf("member %s is back after its eviction and has not rebased yet", id)
				return st, nil
			}
			continue
		}
		st.Members++
		if m.Unknown {
			st.Skipped = fmt.Sprintf("member %s has not reported its stable heads", id)
			return st, nil
		}
		var hs []cid.Cid
		for _, h := range m.Heads {
			c, err := cid.Decode(h)
			if err != nil {
				return st, fmt.Errorf("crdt: compaction member %s: head %q: %w", id, h, err)
			}
			// A head not merged here: this node is behind that member,
			// and the round waits until it has caught up.
			if !s.isProcessed(c) {
				st.Skipped = fmt.Sprintf("member %s reported heads not merged here yet", id)
				return st, nil
			}
			hs = append(hs, c)
		}
		sets = append(sets, hs)
	}

	// The walk: which local blocks every member's heads reach.
	graph := make(map[cid.Cid]*walkBlock)
	keep := make(map[cid.Cid]bool) // members' heads: their raw blocks stay
	for _, hs := range sets {
		visited := make(map[cid.Cid]bool)
		stack := slices.Clone(hs)
		for _, h := range hs {
			keep[h] = true
		}
		for len(stack) > 0 {
			c := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if visited[c] {
				continue
			}
			visited[c] = true
			wb, ok := graph[c]
			if !ok {
				var err error
				if wb, err = s.readWalkBlock(ctx, c); err != nil {
					return st, err
				}
				if wb == nil {
					continue // not here: compacted, or below a state transfer
				}
				graph[c] = wb
			}
			wb.seen++
			stack = append(stack, wb.links...)
			if len(visited)%pacerWalkSlice == 0 {
				if err := pace.rest(ctx); err != nil {
					return st, err
				}
			}
		}
		if err := ctx.Err(); err != nil {
			return st, err
		}
	}
	st.Walked = len(graph)
	var front []cid.Cid
	for c, wb := range graph {
		if wb.seen == len(sets) && !keep[c] {
			front = append(front, c)
		}
	}
	// Lowest first: what is left of A after a crash stays reachable from
	// the heads, so the next round finds it again.
	slices.SortFunc(front, func(a, b cid.Cid) int {
		if ha, hb := graph[a].height, graph[b].height; ha != hb {
			if ha < hb {
				return -1
			}
			return 1
		}
		return strings.Compare(a.KeyString(), b.KeyString())
	})
	st.Frontier = len(front)
	if len(front) == 0 {
		st.Skipped = "nothing every member has merged"
		return st, nil
	}

	// Markers kept (K): those a walk can still reach (see doc.go).
	inA := make(map[cid.Cid]bool, len(front))
	for c, wb := range graph {
		if wb.seen == len(sets) {
			inA[c] = true
		}
	}
	var top uint64
	hasParentInA := make(map[cid.Cid]bool)
	kept := make(map[cid.Cid]bool)
	for c, wb := range graph {
		for _, l := range wb.links {
			switch {
			case inA[c] && inA[l]:
				hasParentInA[l] = true
			case !inA[c] && inA[l]:
				kept[l] = true // linked from a block outside A
			}
		}
		if inA[c] {
			top = max(top, wb.height)
		}
	}
	var frontier uint64
	for c := range inA {
		h := graph[c].height
		if !hasParentInA[c] || keep[c] || h+markerSlack > top {
			kept[c] = true // the maxima of A, reported heads, the top slack
			continue
		}
		if !kept[c] {
			frontier = max(frontier, h)
		}
	}
	// Durable before any marker goes: from now on nothing at or below it
	// that is not merged here is merged (frontier.go).
	s.dmu.RLock()
	ns := s.ns
	s.dmu.RUnlock()
	if err := s.raiseFrontier(ctx, ns, frontier); err != nil {
		return st, err
	}

	for i := 0; i < len(front); i += compactChunk {
		chunk := front[i:min(i+compactChunk, len(front))]
		if err := s.compactChunk(ctx, chunk, graph, kept, &st); err != nil {
			return st, err
		}
		if err := pace.rest(ctx); err != nil {
			return st, err
		}
		if progress != nil {
			progress(CompactProgress{Done: i + len(chunk), Total: len(front)})
		}
	}
	if c, ok := s.backing.(rangeCompacter); ok && st.BytesDeleted >= giveBackMin {
		if err := c.CompactPrefixes(ctx, s.historyPrefixes()); err != nil {
			s.log.Warn("compaction: giving space back to the file system", "err", err)
		}
	}
	s.rotateManifest(ctx)
	st.HistoryAfter = s.Sizes(ctx).History
	s.recordCompaction(st)
	return st, nil
}

// selfMember is this node in the member table.
const selfMember = "self"

// readWalkBlock reads a local block for the walk; nil if it is not here.
func (s *Store) readWalkBlock(ctx context.Context, c cid.Cid) (*walkBlock, error) {
	blk, err := s.opts.LocalBlocks.Get(ctx, c)
	if err != nil {
		if has, herr := s.opts.LocalBlocks.Has(ctx, c); herr == nil && !has {
			return nil, nil
		}
		return nil, fmt.Errorf("crdt: compaction: read block %s: %w", c, err)
	}
	delta, links, err := decodeDelta(blk.RawData())
	if err != nil {
		return nil, fmt.Errorf("crdt: compaction: block %s: %w", c, err)
	}
	return &walkBlock{height: delta.GetPriority(), links: links, size: len(blk.RawData())}, nil
}

// elementKeys reads the keys of the elements a block added (the walk
// keeps only heights and links, so a round over a long history stays
// small in memory).
func (s *Store) elementKeys(ctx context.Context, c cid.Cid) ([]string, error) {
	blk, err := s.opts.LocalBlocks.Get(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("crdt: compaction: read block %s: %w", c, err)
	}
	delta, _, err := decodeDelta(blk.RawData())
	if err != nil {
		return nil, fmt.Errorf("crdt: compaction: block %s: %w", c, err)
	}
	keys := make([]string, len(delta.GetElements()))
	for i, e := range delta.GetElements() {
		keys[i] = e.GetKey()
	}
	return keys, nil
}

// compactChunk deletes the dead elements of a chunk of A with their
// tombstones, and the blocks no live element needs. What to delete is
// read first, with writes and merges going on: a dead element stays dead
// (only compaction deletes elements and tombstones, and markers keep its
// block from being merged again), and an element found live that dies
// meanwhile only keeps its block for the next round. The deletes then go
// in one critical section, local commits held and go-ds-crdt between
// broadcasts, so no merge sees an element whose tombstone is gone.
func (s *Store) compactChunk(ctx context.Context, chunk []cid.Cid, graph map[cid.Cid]*walkBlock, kept map[cid.Cid]bool, st *CompactStats) error {
	s.dmu.RLock()
	ns := s.ns
	s.dmu.RUnlock()
	set := ds.NewKey(ns).ChildString("s")
	var dels []ds.Key
	var drop []cid.Cid
	var cs CompactStats
	for _, c := range chunk {
		id := dshelp.MultihashToDsKey(c.Hash()).String()
		pinned := false
		keys, err := s.elementKeys(ctx, c)
		if err != nil {
			return err
		}
		for _, key := range keys {
			ek := set.ChildString("s").ChildString(key).ChildString(id)
			tk := set.ChildString("t").ChildString(key).ChildString(id)
			hasT, err := s.backing.Has(ctx, tk)
			if err != nil {
				return err
			}
			hasE, err := s.backing.Has(ctx, ek)
			if err != nil {
				return err
			}
			switch {
			case hasT && hasE:
				cs.ElementsDeleted++
				cs.BytesDeleted += int64(len(ek.String()) + len(tk.String()))
				dels = append(dels, ek, tk)
			case hasT:
				cs.TombstonesDeleted++
				cs.BytesDeleted += int64(len(tk.String()))
				dels = append(dels, tk)
			case hasE:
				pinned = true // live: findBestValue may read its value
			}
		}
		if pinned {
			cs.Pinned++
			continue // its marker stays too: reading its value is no merge
		}
		drop = append(drop, c)
		cs.BytesDeleted += int64(graph[c].size)
		if !kept[c] {
			mk := ds.NewKey(ns).ChildString("b").ChildString(id)
			dels = append(dels, mk)
			cs.MarkersDeleted++
			cs.BytesDeleted += int64(len(mk.String()))
		}
	}

	if err := s.pauseThenHoldCommits(ctx); err != nil {
		return fmt.Errorf("crdt: compaction: %w", err)
	}
	defer s.releaseCommits()
	held := time.Now()
	defer func() { st.MaxHold = max(st.MaxHold, time.Since(held)) }()
	s.dmu.RLock()
	moved := s.ns != ns
	s.dmu.RUnlock()
	if moved || s.syncing.Load() {
		return errors.New("crdt: compaction: a state transfer replaced the store; the next round goes on")
	}
	b, err := s.backing.Batch(ctx)
	if err != nil {
		return err
	}
	for _, k := range dels {
		if err := b.Delete(ctx, k); err != nil {
			return err
		}
	}
	if err := b.Commit(ctx); err != nil {
		return fmt.Errorf("crdt: compaction: %w", err)
	}
	for _, c := range drop {
		if err := s.opts.LocalBlocks.DeleteBlock(ctx, c); err != nil {
			return fmt.Errorf("crdt: compaction: delete block %s: %w", c, err)
		}
	}
	st.ElementsDeleted += cs.ElementsDeleted
	st.TombstonesDeleted += cs.TombstonesDeleted
	st.Pinned += cs.Pinned
	st.MarkersDeleted += cs.MarkersDeleted
	st.BlocksDeleted += len(drop)
	st.BytesDeleted += cs.BytesDeleted
	return nil
}

// pacerWalkSlice is how many blocks the walk reads between rests.
const pacerWalkSlice = 512

// pacer keeps a round's work to a share (duty) of one core: rest sleeps
// in proportion to the work done since the last rest. A nil pacer never
// rests.
type pacer struct {
	duty  float64
	since time.Time
	now   func() time.Time
	sleep func(context.Context, time.Duration) error
}

func newPacer(duty float64) *pacer {
	if duty <= 0 || duty >= 1 {
		return nil
	}
	return &pacer{duty: duty, since: time.Now(), now: time.Now, sleep: sleepCtx}
}

func (p *pacer) rest(ctx context.Context) error {
	if p == nil {
		return ctx.Err()
	}
	worked := p.now().Sub(p.since)
	d := time.Duration(float64(worked) * (1 - p.duty) / p.duty)
	if err := p.sleep(ctx, d); err != nil {
		return err
	}
	p.since = p.now()
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// compactRecord is what the rounds did, for Status.
type compactRecord struct {
	mu        sync.Mutex
	rounds    uint64
	reclaimed int64
	last      *CompactStats
}

func (s *Store) recordCompaction(st CompactStats) {
	s.compactions.mu.Lock()
	defer s.compactions.mu.Unlock()
	s.compactions.rounds++
	s.compactions.reclaimed += st.Reclaimed()
	s.compactions.last = &st
}

// CompactionStatus is the compaction part of Status.
type CompactionStatus struct {
	// LiveBytes is the live state on disk (go-ds-crdt's current values);
	// HistoryBytes is everything kept for the history (raw blocks,
	// processed markers, set elements and tombstones). 0 when the
	// datastore cannot tell.
	LiveBytes    int64 `json:"live_bytes"`
	HistoryBytes int64 `json:"history_bytes"`
	// Rounds and Reclaimed count the rounds that ran and the bytes they
	// gave back since the node started; Last is the last round.
	Rounds    uint64        `json:"rounds"`
	Reclaimed int64         `json:"reclaimed_bytes"`
	Last      *CompactStats `json:"last,omitempty"`
	// Members is how many nodes' heads bound what can be reclaimed;
	// Evicted is how many members no longer do (evict.go).
	Members int `json:"members"`
	Evicted int `json:"evicted"`
}

func (s *Store) compactionStatus(ctx context.Context) CompactionStatus {
	sz := s.Sizes(ctx)
	s.compactions.mu.Lock()
	defer s.compactions.mu.Unlock()
	out := CompactionStatus{LiveBytes: sz.Live, HistoryBytes: sz.History, Rounds: s.compactions.rounds, Reclaimed: s.compactions.reclaimed}
	if s.compactions.last != nil {
		l := *s.compactions.last
		out.Last = &l
	}
	s.members.mu.Lock()
	for _, m := range s.members.m {
		if m.Evicted {
			out.Evicted++
		} else {
			out.Members++
		}
	}
	s.members.mu.Unlock()
	return out
}

// Sizes is how much of the datastore the live state and the history take.
type Sizes struct {
	Live, History int64
}

// rangeCompacter is a datastore that can tell the size of key ranges on
// disk and compact them (LevelDB).
type rangeCompacter interface {
	SizePrefixes(prefixes []ds.Key) (int64, error)
	CompactPrefixes(ctx context.Context, prefixes []ds.Key) error
}

// historyPrefixes are the key ranges of the history: raw blocks,
// processed markers, set elements and tombstones.
func (s *Store) historyPrefixes() []ds.Key {
	s.dmu.RLock()
	ns := ds.NewKey(s.ns)
	s.dmu.RUnlock()
	return []ds.Key{ds.NewKey(s.opts.BlocksPrefix), ns.ChildString("b"), ns.ChildString("s").ChildString("s"), ns.ChildString("s").ChildString("t")}
}

// Sizes measures the live state and the history on disk (0s when the
// datastore cannot tell).
func (s *Store) Sizes(ctx context.Context) Sizes {
	c, ok := s.backing.(rangeCompacter)
	if !ok {
		return Sizes{}
	}
	s.dmu.RLock()
	live := ds.NewKey(s.ns).ChildString("s").ChildString("k")
	s.dmu.RUnlock()
	var out Sizes
	out.Live, _ = c.SizePrefixes([]ds.Key{live})
	out.History, _ = c.SizePrefixes(s.historyPrefixes())
	return out
}

// compactLoop runs the automatic policy: a round when the history is
// above both CompactMinHistory and the live state, or CompactMaxAge
// after the last round while there is history at all.
func (s *Store) compactLoop() {
	t := time.NewTicker(s.opts.CompactInterval)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		sz := s.Sizes(s.ctx)
		due := sz.History > max(s.opts.CompactMinHistory, sz.Live) || time.Since(last) >= s.opts.CompactMaxAge
		if !due {
			continue
		}
		st, err := s.compact(s.ctx, nil, compactRangeMin, newPacer(s.opts.CompactDuty))
		switch {
		case errors.Is(err, ErrCompactBusy):
			continue
		case err != nil:
			if s.ctx.Err() == nil {
				s.log.Warn("compaction failed; the next round tries again", "err", err)
			}
		case st.Skipped != "":
			s.log.Debug("compaction skipped", "why", st.Skipped)
		default:
			last = time.Now()
			s.log.Info("compaction", "frontier_blocks", st.Frontier, "blocks_deleted", st.BlocksDeleted,
				"elements_deleted", st.ElementsDeleted, "pinned", st.Pinned, "reclaimed_bytes", st.Reclaimed(), "took", st.Took.Round(time.Millisecond))
		}
	}
}

// manifestMax is the MANIFEST size from which a round has LevelDB write
// a fresh one (LevelDB.RotateManifest): about 2M writes (half an hour
// at 1k/s), for a reopen of ~20 ms once the memtable is flushed (a full
// 16 MiB journal to replay took 214 ms here).
var manifestMax int64 = 32 << 10 // a variable for tests

// manifestRotator is a datastore whose MANIFEST grows while it is open
// (LevelDB).
type manifestRotator interface {
	ManifestSize() int64
	FlushMemtable() error
	RotateManifest() error
}

// rotateManifest has LevelDB start a fresh MANIFEST once it has grown
// past manifestMax, with go-ds-crdt between broadcasts and local commits
// held, so that nothing of the store's own is reading or writing.
func (s *Store) rotateManifest(ctx context.Context) {
	r, ok := s.backing.(manifestRotator)
	if !ok {
		return
	}
	before := r.ManifestSize()
	if before < manifestMax {
		return
	}
	// Writes go on while the memtable is flushed; the reopen, with them
	// held, then replays only what came meanwhile.
	if err := r.FlushMemtable(); err != nil {
		s.log.Warn("compaction: flushing LevelDB's memtable before a fresh MANIFEST", "err", err)
		return
	}
	if err := s.pauseThenHoldCommits(ctx); err != nil {
		return // the next round tries again
	}
	start := time.Now()
	err := r.RotateManifest()
	s.releaseCommits()
	if err != nil {
		s.log.Warn("compaction: reopening LevelDB for a fresh MANIFEST", "err", err)
		return
	}
	s.log.Info("compaction: LevelDB started a fresh MANIFEST", "before", before, "after", r.ManifestSize(), "took", time.Since(start).Round(time.Millisecond))
}
