package crdt

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	cid "github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
)

// Eviction: compaction waits for every member (doc.go), so a member that
// never comes back would hold it forever. A round evicts a member it has
// not heard from for Options.EvictAfter: from then on the rounds ignore
// its heads and reclaim what it had not merged. Such a member cannot
// merge the others' new history when it returns (blocks it lacks are
// gone), and the others refuse what it wrote meanwhile (frontier.go). So
// it rebases: it takes a state transfer from a node that evicted it,
// which writes its own live values again on top (Install, replayLive),
// and is counted again once it reports a higher install count than it
// had when it was evicted and heads that are merged here.
//
// The steps, with who does what:
//
//   - Each node counts the state transfers it has installed (Installs,
//     durable) and reports the count; a member record keeps the count
//     last reported, and at eviction the count of that moment.
//   - A node lists in its report the evicted members that are back (heard
//     from since their eviction), each with that count (EvictedBack). A
//     round holds while one is back: what it reclaims now could be what
//     the returning member's transfer misses.
//   - A node that finds itself in a peer's list with a count not below
//     its own installs rebases from that peer (MustRebase; the node layer
//     calls the state transfer). Its next report carries the higher
//     count and the peer counts it again.
//   - Two sides of a long partition evict each other. Only one may
//     rebase, or each would install the other's old state: the side
//     whose lineage (the lowest member ID it still counts, itself
//     included) is higher rebases, and ties go to the node ID.
//   - An install replaces the evictions this node had made with those of
//     the source (rebaseMembers): its history is now the source's. The
//     eviction time of every member starts again (evictStale): what was
//     merged here, or not, before was measured on the replaced history.
//   - An evicted member that installed a transfer counts again only once
//     the heads it reports are merged here: then it holds this node's
//     history. Its install count does not show that (a member that
//     installed the state of a node on its own side, a resync, kept its
//     side's history). Its lineage shows when it rebased on another
//     history, if it is not the one a copy of this node's state gives it
//     (min of its own ID and this node's lineage); with the lowest ID it
//     always is, and only the heads tell. When three or more sides
//     evicted one another, one may rebase on a side that later rebases
//     itself; that member stays evicted, listed with its new install
//     count, and rebases once more, on this side. So does a member
//     whose heads have not merged here for EvictAfter since it came
//     back, whatever its lineage says (it may have merged, since its
//     rebase, a branch this node reclaimed past): as a counted member
//     is evicted after that time without a usable report, an evicted
//     one is asked to rebase again. That is why a node may rebase again
//     after min(EvictAfter, rebaseGap), not only after EvictAfter.
//   - A rebase writes this node's live values again on top of the
//     installed state; it never merges its old branch as a DAG (swap):
//     nodes of the source's history that evicted it may have reclaimed
//     past that branch even where the source has not.
//
// A round on a store just opened does not count the time it was closed
// (a node restarted after a day away would otherwise evict everyone), and
// `starling compact` on a stopped node never evicts.

// installsKey holds the number of state transfers this store installed.
var installsKey = ds.NewKey("/_starling/compact/installs")

// MemberReport is what a node says of itself in its node report, as
// compaction reads it.
type MemberReport struct {
	// Heads are its stable heads, when HeadsKnown.
	Heads      []string
	HeadsKnown bool
	// Installs is how many state transfers it has installed.
	Installs uint64
	// Lineage is its Lineage(); empty from a node that does not say.
	Lineage string
	// At is when the report arrived.
	At time.Time
}

// ObserveReport records a member's report. A node not seen before
// becomes a member: from then on compaction keeps every block it has not
// merged, until it is evicted (EvictAfter) or the operator removes it
// (ForgetMember). An evicted member that reports more installs than it
// had at its eviction has rebased, and counts again. A new member is
// saved at once (see saveNewMember); new heads are saved by the next
// round and by Close.
func (s *Store) ObserveReport(member string, r MemberReport) {
	if member == s.opts.Self && member != "" {
		return
	}
	good := r.HeadsKnown && s.allProcessed(r.Heads) // outside the lock: reads go-ds-crdt
	s.members.mu.Lock()
	if s.members.m == nil {
		s.members.m = make(map[string]Member)
	}
	old, ok := s.members.m[member]
	m := old
	m.Seen = r.At
	m.Installs = r.Installs
	if r.HeadsKnown {
		m.Heads, m.Unknown = slices.Clone(r.Heads), false
		if good {
			m.Good = r.At
		}
	} else if !ok {
		m.Unknown = true
	}
	if !ok && m.Good.IsZero() {
		m.Good = r.At // a new member: its grace before eviction starts now
	}
	if m.Evicted && (m.BackAt.IsZero() || m.BackAt.Before(m.EvictedAt)) {
		m.BackAt = r.At
	}
	// It counts again once it has rebased on this node's history: it
	// installed a state transfer since its eviction, and the heads it
	// reports now are merged here. The install count alone does not
	// tell, nor its lineage: a member that installed the state of a node
	// of its own side (a resync) kept that side's history, and with the
	// lowest ID its lineage is what a copy of this node's state would
	// give it too.
	rebased := m.Evicted && r.Installs > m.EvictedInstalls
	// A lineage that a copy of this node's state cannot give it shows
	// that it rebased on another history (several sides evicted one
	// another): it is listed again with its new count (EvictedBack), so
	// that it rebases on this one. (A store without Self, or a member
	// that does not say, cannot tell.)
	wrongHistory := rebased && s.opts.Self != "" && r.Lineage != "" && r.Lineage != min(member, s.lineageLocked())
	// Its heads tell what its lineage cannot: one that has rebased but
	// whose heads have not merged here for the eviction time since it
	// came back holds another history all the same (it rebased on a
	// side that rebased later, or merged since a branch this node
	// reclaimed past). It is listed again with its new count, as a
	// counted member would be evicted after that time without a usable
	// report. Otherwise it would stay evicted, at an install count below
	// its own, and unlisted once back longer than the eviction time
	// (isBack): never asked to rebase again, its writes never merged here.
	unmerged := rebased && !good && s.opts.EvictAfter >= 0 && r.At.Sub(m.BackAt) > s.opts.EvictAfter
	if wrongHistory || unmerged {
		m.EvictedInstalls, m.BackAt = r.Installs, r.At
	}
	readmitted := rebased && !wrongHistory && good
	if readmitted {
		m.Evicted, m.EvictedAt, m.EvictedInstalls, m.BackAt = false, time.Time{}, 0, time.Time{}
		m.Good = r.At // counted again: its heads have a while to merge here
	}
	changed := !ok || rebased || m.Unknown != old.Unknown || m.Installs != old.Installs || !slices.Equal(m.Heads, old.Heads)
	s.members.m[member] = m
	if changed {
		s.members.dirty = true
	}
	s.members.mu.Unlock()
	if ok && r.Installs != old.Installs && s.bc != nil {
		// It installed a state transfer since its last report: its
		// blocks were replaced, and those branch replies sent it before
		// are gone with them. Remembered as sent, they were left out of
		// every later reply: it got one block per request, dropped heads
		// whose blocks did not come, and evicted its peers again (an
		// eviction and rebase storm after partition-outlasting-history's
		// heal, with writes missing at the end).
		s.bc.forgetSent(member)
	}
	if readmitted {
		s.log.Info("compaction: an evicted member has rebased; compaction waits for it again", "member", member, "installs", r.Installs)
	}
	if wrongHistory {
		s.log.Warn("compaction: an evicted member rebased on another history (several sides evicted one another); it stays evicted and rebases again, on this node's",
			"member", member, "installs", r.Installs, "its_lineage", r.Lineage)
	} else if unmerged {
		s.log.Warn("compaction: an evicted member rebased, but its heads have not merged here for the eviction time; it stays evicted and rebases again, on this node's",
			"member", member, "installs", r.Installs, "evict_after", s.opts.EvictAfter)
	}
	if (!ok || readmitted) && member != selfMember {
		s.saveNewMember(member)
	}
}

// allProcessed reports whether every head (a CID string) is merged here.
func (s *Store) allProcessed(heads []string) bool {
	for _, h := range heads {
		c, err := cid.Decode(h)
		if err != nil || !s.isProcessed(c) {
			return false
		}
	}
	return true
}

// evictStale evicts the members that have not reported stable heads
// merged here for EvictAfter (away, or reporting nothing usable),
// counting only time this store has been open.
//
// When that holds for every member and there are two or more, it evicts
// none, and the time until then does not count (as the time the store
// was closed does not): this node is the odd one out. It is the one cut off (its own
// network or router down), or the one behind: reports arrive, but it
// has not fetched the blocks below them yet, so none is usable here.
// Evicting them all would have every one of them rebase on this node,
// the one that knows least (measured in the suite's NAT topology: a site
// that merged nobody's report for 16-18 s after its router's reboot
// evicted all four others, which then took state transfers from it).
// The members that do report to it usable heads meanwhile are the proof
// that it is not alone; with one member there is nobody to compare, and
// the rule stays as it was (two sides of a partition evict each other).
// A node whose members are all gone for good keeps their entries until
// the operator removes them (`starling cluster remove`).
func (s *Store) evictStale(now time.Time) {
	if s.opts.EvictAfter < 0 {
		return
	}
	type ev struct {
		id   string
		away time.Duration
	}
	var stale []ev
	counted := 0
	var lastInstall time.Time
	if p := s.lastInstall.Load(); p != nil {
		lastInstall = *p
	}
	s.members.mu.Lock()
	for id, m := range s.members.m {
		if id == selfMember || m.Evicted {
			continue
		}
		counted++
		if now.Sub(maxTime(m.Good, s.opened, lastInstall)) > s.opts.EvictAfter {
			stale = append(stale, ev{id, now.Sub(m.Good)})
		}
	}
	oddOneOut := counted >= 2 && len(stale) == counted
	wasOdd := !s.members.oddAt.IsZero() && s.members.oddAt.Equal(s.members.lastRound)
	s.members.lastRound = now
	var evicted []ev
	if oddOneOut {
		s.members.oddAt = now
	} else {
		for _, e := range stale {
			m := s.members.m[e.id]
			// The time until this node last found itself the odd one
			// out does not count, as the time it was closed does not;
			// nor the time before its last install: a report merged
			// here before that was merged on the history the install
			// replaced, and one not merged then may merge now (after a
			// rebase it evicted at once the members its source counted,
			// the source included, which then rebased on it).
			if now.Sub(maxTime(m.Good, s.opened, s.members.oddAt, lastInstall)) <= s.opts.EvictAfter {
				continue
			}
			m.Evicted, m.EvictedAt, m.EvictedInstalls = true, now, m.Installs
			s.members.m[e.id] = m
			s.members.dirty = true
			evicted = append(evicted, e)
		}
	}
	s.members.mu.Unlock()
	if oddOneOut && !wasOdd {
		s.log.Warn("compaction: no member's stable heads merged here for longer than the eviction time: this node is the one cut off or behind, so it evicts none of them (their eviction time starts again once it merges a report)",
			"members", counted, "evict_after", s.opts.EvictAfter)
	}
	for _, e := range evicted {
		s.log.Warn("compaction: member evicted: no stable heads merged here from it for longer than the eviction time (away, or reporting nothing usable); compaction no longer waits for it, and it takes a state transfer (keeping its own writes) when it comes back",
			"member", e.id, "since_good_report", e.away.Round(time.Second), "evict_after", s.opts.EvictAfter)
	}
}

func maxTime(ts ...time.Time) time.Time {
	var out time.Time
	for _, t := range ts {
		if t.After(out) {
			out = t
		}
	}
	return out
}

// isBack reports whether an evicted member has been heard from since its
// eviction, recently, and came back less than EvictAfter ago: rounds
// wait for it to rebase (seconds), not for one that never does.
func (s *Store) isBack(m Member, now time.Time) bool {
	return m.Evicted && !m.BackAt.IsZero() && !m.BackAt.Before(m.EvictedAt) &&
		now.Sub(m.Seen) <= s.opts.EvictAfter && now.Sub(m.BackAt) <= s.opts.EvictAfter
}

// maxEvictedBack bounds EvictedBack (node reports are small).
const maxEvictedBack = 16

// EvictedBack returns the evicted members that are back and must rebase,
// each with the install count it had at its eviction (or at its rebase
// on another history); at most 16, the most recently heard first. Node
// reports carry it.
func (s *Store) EvictedBack() map[string]uint64 {
	now := s.now()
	s.members.mu.Lock()
	defer s.members.mu.Unlock()
	var ids []string
	for id, m := range s.members.m {
		if s.isBack(m, now) {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	slices.SortFunc(ids, func(a, b string) int { return s.members.m[b].Seen.Compare(s.members.m[a].Seen) })
	out := make(map[string]uint64, min(len(ids), maxEvictedBack))
	for _, id := range ids[:min(len(ids), maxEvictedBack)] {
		out[id] = s.members.m[id].EvictedInstalls
	}
	return out
}

// Lineage names the history this store belongs to, for the tie-break
// of two sides that evicted each other: the lowest ID among this node
// and the members it has not evicted.
func (s *Store) Lineage() string {
	s.members.mu.Lock()
	defer s.members.mu.Unlock()
	return s.lineageLocked()
}

func (s *Store) lineageLocked() string {
	l := s.opts.Self
	for id, m := range s.members.m {
		if id != selfMember && !m.Evicted && (l == "" || id < l) {
			l = id
		}
	}
	return l
}

// rebaseGap is the least time between two rebases of a node when
// EvictAfter is longer: a node that rebased on a side that then rebased
// itself (three or more sides evicted each other) must be able to rebase
// again within a minute, not an EvictAfter (an hour by default); a peer
// listing it wrongly, or lying, still cannot make it rebase more often.
const rebaseGap = time.Minute

// Installs returns how many state transfers this store has installed.
func (s *Store) Installs() uint64 { return s.installs.Load() }

// MustRebase reports whether this node must rebase on the peer from,
// given the evicted members the peer reported back (EvictedBack) and its
// lineage: the peer evicted this node and has not seen it install a
// transfer since, and this node does not win the tie-break of a mutual
// eviction. At most one rebase per min(EvictAfter, rebaseGap): a node
// is evicted only after being away that long, so a peer listing it
// again sooner is wrong or lying, and must not make it take state
// transfer after state transfer.
//
// The tie-break applies only when this node evicted the peer too. A
// node that did not (a heal came before its round, or it was alone on
// its side and evicted nobody, evictStale) lists nobody of the peer's
// side, so nobody there would ever rebase on it: if it kept its history
// on winning the tie-break, the peer, which reclaimed past its blocks,
// would refuse its writes for good (a lone lowest-ID node would never
// converge). Rebasing costs it a state transfer at worst: should the
// peer's side rebase in turn on a node of its own side, that node sees
// it on another history and lists it again (ObserveReport).
func (s *Store) MustRebase(from string, evictedBack map[string]uint64, peerLineage string) bool {
	n, ok := evictedBack[s.opts.Self]
	if !ok || s.opts.Self == "" || n < s.Installs() {
		return false
	}
	if last := s.lastInstall.Load(); last != nil && s.now().Sub(*last) < min(s.opts.EvictAfter, rebaseGap) {
		return false
	}
	s.members.mu.Lock()
	mutual := s.members.m[from].Evicted
	s.members.mu.Unlock()
	if mutual {
		mine := s.Lineage()
		if mine < peerLineage || (mine == peerLineage && s.opts.Self < from) {
			return false // the peer rebases on this side
		}
	}
	return true
}

// rebaseMembers updates the member table after an install: this store's
// history is now the source's, so the source's evictions replace its
// own, and the members the source knew join the table (the installed
// state holds what they reported merged: this node must not compact
// past what they have not). Then it counts the install.
func (s *Store) rebaseMembers(ctx context.Context, from map[string]Member) {
	s.members.mu.Lock()
	if s.members.m == nil {
		s.members.m = make(map[string]Member)
	}
	for id, m := range s.members.m {
		src, ok := from[id]
		if m.Evicted != (ok && src.Evicted) {
			m.Evicted, m.EvictedAt, m.EvictedInstalls = ok && src.Evicted, src.EvictedAt, src.EvictedInstalls
			s.members.m[id] = m
		}
	}
	for id, m := range from {
		if id == selfMember || id == s.opts.Self {
			continue
		}
		if old, ok := s.members.m[id]; !ok || (!m.Unknown && m.Seen.After(old.Seen)) {
			m.Heads = slices.Clone(m.Heads)
			s.members.m[id] = m
		}
	}
	s.members.dirty = true
	s.members.mu.Unlock()
	if err := s.saveMembers(ctx); err != nil {
		s.log.Warn("state transfer: saving the compaction members", "err", err)
	}
	now := s.now()
	s.lastInstall.Store(&now)
	n := s.installs.Add(1)
	if err := s.saveInstalls(ctx, n); err != nil {
		s.log.Warn("state transfer: saving the install count", "err", err)
	}
}

func (s *Store) saveInstalls(ctx context.Context, n uint64) error {
	b := binary.AppendUvarint(nil, n)
	if err := s.backing.Put(ctx, installsKey, b); err != nil {
		return fmt.Errorf("crdt: save install count: %w", err)
	}
	return s.backing.Sync(ctx, installsKey)
}

// loadInstalls reads the install count at open.
func (s *Store) loadInstalls(ctx context.Context) error {
	b, err := s.backing.Get(ctx, installsKey)
	if errors.Is(err, ds.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("crdt: read install count: %w", err)
	}
	n, l := binary.Uvarint(b)
	if l <= 0 {
		return fmt.Errorf("crdt: read install count %s: %d bytes unreadable", installsKey, len(b))
	}
	s.installs.Store(n)
	return nil
}
