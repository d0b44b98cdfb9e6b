package election

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"
)

// Rule is the leader rule of one node as a pure state machine: no
// goroutines, no network, no clock. Inputs are method calls, each given
// the current time as a monotonic duration since an arbitrary origin
// (the runner passes the time since it started): a heartbeat received
// (Receive), a local candidate joined, left, marked available or
// reported healthy, time advanced (Tick). Outputs are the leadership of
// each group (Leader, Status), the heartbeat to send (Heartbeat), and
// what changed since the last call to Take.
//
// The leader of a group is the lowest candidate ID (ties between
// duplicated node IDs: the lower peer ID) among eligible candidates:
// hosted by a node heard within Timeout, healthy, available, not
// leaving. See the package documentation for terms and preemption.
//
// A Rule is not safe for concurrent use; the runner serialises calls.
// Time passed in must not go backwards (an earlier time is taken as the
// latest one seen).
type Rule struct {
	cfg   Config
	inc   uint64
	seq   uint64
	start time.Duration
	now   time.Duration
	// listened: Warmup has passed since start (announced to others).
	// warm: this node decides (listened, no live peer is still
	// listening and no new node appeared lately unless a leader is
	// known, or 8×Warmup passed). Both only ever become true.
	listened bool
	warm     bool
	// fast: a local candidate leads or stands next in line, or is
	// in its group's front and settling or not warm (wantFast):
	// heartbeats go every Interval, otherwise every idle period
	// (Config.IdlePeriod). lastPeriod is the period the last heartbeat
	// announced (0 before the first).
	fast       bool
	lastPeriod time.Duration
	// cuts is each group's front cut as the last evaluation saw it
	// (setCuts).
	cuts map[string]memberKey
	// lastNew is when a node was first heard (see membershipSettled).
	lastNew time.Duration
	// slack extends every timeout: this node's own recent lateness
	// (SetSlack).
	slack time.Duration
	// recheck is the earliest time at which evaluate may decide
	// otherwise on the same heartbeats (a deadline after evalAt, the
	// time of the last evaluation): until then a heartbeat that changes
	// nothing but its sequence number is taken without one (Receive),
	// and Tick does not evaluate (quiet). stale: the slack changed since
	// the last evaluation (no deadline marks that).
	recheck time.Duration
	evalAt  time.Duration
	stale   bool
	// evals counts evaluations (tests).
	evals int
	// forgetAt: no node is silent for Retain before then (advance).
	forgetAt time.Duration

	local  map[candKey]*localCand
	nodes  map[string]*nodeRec // by peer ID
	groups map[string]*groupState
	dups   map[string]string // node ID -> the peer list last reported
	// idCount counts the entries with each node ID: this node and every
	// listed node (countID); shared is how many IDs have more than one.
	idCount map[string]int
	shared  int

	// slots lists each group's candidates in member order (buildSlots);
	// nil when a candidate has come or gone since it was built (Join,
	// Leave, record, advance, a session expired in evaluate).
	slots map[string][]memberSlot
	// Scratch reused from one evaluation to the next: at 200 nodes,
	// allocating and sorting a member per candidate, and the node and
	// view tables, on every evaluation was most of its cost (issue #16).
	// Each is valid until the next call that fills it.
	memberBuf []Member
	memberMap map[string][]*Member
	firstPeer map[string]string // node ID -> the first peer seen with it (duplicateNodes)
	viewBuf   []View
	eligBuf   []*Member
	nameBuf   []string
	frontBuf  []string

	// alarmUntil: the end of the alarm a failed probation raised (see
	// probation).
	alarmUntil time.Duration

	out Output
}

// memberKey identifies a member of a group: candidates are ordered by
// (ID, Peer).
type memberKey struct{ id, peer string }

func (k memberKey) compare(o memberKey) int {
	return cmp.Or(strings.Compare(k.id, o.id), strings.Compare(k.peer, o.peer))
}

// memberSlot is where a member of a group comes from: a local
// candidate, or candidate i of a node's last heartbeat.
type memberSlot struct {
	memberKey
	local *localCand
	rec   *nodeRec
	i     int
}

// Output is what the rule produced since the last Take.
type Output struct {
	// Changes of leadership, in the order they happened.
	Changes []Change
	// Notices for the operator.
	Notices []Notice
	// Send: the local candidates changed (or warm-up ended); send a
	// heartbeat now rather than at the next Interval.
	Send bool
}

type candKey struct{ group, id string }

type localCand struct {
	spec       Spec
	available  bool
	healthy    bool
	lastReport time.Duration
	// joinedAt, base and settled: a new candidate is neither announced
	// as available nor eligible here until this node has received, from
	// every live peer, the second heartbeat after the join (at most
	// Warmup later). The first may have been sent before the join; the
	// second was sent an Interval later, so it lists any candidate that
	// peer joined before ours (given delivery within an Interval). Until
	// then this node may not know a candidate another node has just
	// joined, and would elect its own for a moment: two leaders.
	joinedAt time.Duration
	base     map[string]heardAt // peer -> its last heartbeat at the join
	settled  bool
}

// heardAt identifies a heartbeat of a peer.
type heardAt struct{ inc, seq uint64 }

type nodeRec struct {
	peer, nodeID string
	firstHeard   time.Duration
	inc, seq     uint64
	lastSeen     time.Duration
	period       time.Duration // Heartbeat.Period of its last heartbeat
	// probing, needFast: since needFast this node's view makes one of
	// rec's candidates lead a group or stand next in line, and rec's
	// last heartbeat then was idle (see probation).
	probing  bool
	needFast time.Duration
	// alarmed: rec failed its probation, and this node raised the alarm
	// for it (or was in one already).
	alarmed bool
	leaving bool
	warming bool
	cands   []CandidateState
	// views: one per group, as its last heartbeat listed them (the last
	// of a group listed twice). A slice: a heartbeat lists a few, and a
	// map per node was most of the cost of looking them up at 200 nodes.
	views []View
}

// view returns rec's view of group.
func (rec *nodeRec) view(group string) (View, bool) {
	for _, v := range rec.views {
		if v.Group == group {
			return v, true
		}
	}
	return View{}, false
}

// setView sets rec's view of v.Group.
func (rec *nodeRec) setView(v View) {
	for i := range rec.views {
		if rec.views[i].Group == v.Group {
			rec.views[i] = v
			return
		}
	}
	rec.views = append(rec.views, v)
}

type groupState struct {
	lead  Leadership
	since time.Duration
	// restored: the term was loaded from the TermStore at start and no
	// leader has been seen since (see evalGroup).
	restored bool
}

// NewRule returns the rule of the node cfg describes, started at now.
// incarnation is the node's start time in Unix nanoseconds (the runner
// reads the wall clock once when it starts): it tells the node's runs
// apart (it grows from one run to the next) and tells which nodes
// started together (startedWith). The cluster candidate is not joined:
// the runner joins it.
func NewRule(cfg Config, incarnation uint64, now time.Duration) (*Rule, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.EnsureDefaults()
	return &Rule{
		cfg: cfg,
		// A node that has heard of nobody is in every front.
		fast:    true,
		inc:     incarnation,
		start:   now,
		now:     now,
		local:   make(map[candKey]*localCand),
		nodes:   make(map[string]*nodeRec),
		groups:  make(map[string]*groupState),
		dups:    make(map[string]string),
		idCount: map[string]int{cfg.NodeID: 1},
	}, nil
}

// Take returns and clears the output accumulated so far.
func (r *Rule) Take() Output {
	o := r.out
	r.out = Output{}
	return o
}

// RestoreTerm raises the term of group to at least term without a
// change (terms loaded from a TermStore at start).
func (r *Rule) RestoreTerm(group string, term uint64) {
	g := r.group(group)
	if term > g.lead.Term {
		g.lead.Term = term
		g.restored = true
	}
}

// Terms returns the current term of every group this node knows.
func (r *Rule) Terms() map[string]uint64 {
	out := make(map[string]uint64, len(r.groups))
	for name, g := range r.groups {
		if g.lead.Term > 0 {
			out[name] = g.lead.Term
		}
	}
	return out
}

// Warm reports whether the warm-up is over.
func (r *Rule) Warm() bool { return r.warm }

// Join adds a local candidate. ErrCandidateExists if it is already
// joined; ErrInvalid for a bad spec.
func (r *Rule) Join(now time.Duration, s Spec) error {
	if err := s.check(); err != nil {
		return err
	}
	k := candKey{s.Group, s.ID}
	if _, ok := r.local[k]; ok {
		return fmt.Errorf("%w: %s in group %s", ErrCandidateExists, s.ID, s.Group)
	}
	r.advance(now)
	c := &localCand{spec: s, available: s.Available, healthy: true, lastReport: r.now, joinedAt: r.now,
		base: make(map[string]heardAt, len(r.nodes))}
	for peer, rec := range r.nodes {
		c.base[peer] = heardAt{rec.inc, rec.seq}
	}
	r.local[k] = c
	r.slots = nil
	r.out.Send = true
	r.evaluate()
	return nil
}

// Leave removes a local candidate; ErrNoCandidate if it is not joined.
func (r *Rule) Leave(now time.Duration, group, id string) error {
	k := candKey{group, id}
	if _, ok := r.local[k]; !ok {
		return fmt.Errorf("%w: %s in group %s", ErrNoCandidate, id, group)
	}
	r.advance(now)
	delete(r.local, k)
	r.slots = nil
	r.out.Send = true
	r.evaluate()
	return nil
}

// SetAvailable marks a local candidate available (ready to lead) or not.
func (r *Rule) SetAvailable(now time.Duration, group, id string, available bool) error {
	c, err := r.cand(group, id)
	if err != nil {
		return err
	}
	r.advance(now)
	c.lastReport = r.now
	if c.available != available {
		c.available = available
		r.out.Send = true
	}
	r.evaluate()
	return nil
}

// ReportHealth records a local candidate's health and renews its
// session (see Spec.TTL).
func (r *Rule) ReportHealth(now time.Duration, group, id string, healthy bool) error {
	c, err := r.cand(group, id)
	if err != nil {
		return err
	}
	r.advance(now)
	c.lastReport = r.now
	if c.healthy != healthy {
		c.healthy = healthy
		r.out.Send = true
	}
	r.evaluate()
	return nil
}

func (r *Rule) cand(group, id string) (*localCand, error) {
	c, ok := r.local[candKey{group, id}]
	if !ok {
		return nil, fmt.Errorf("%w: %s in group %s", ErrNoCandidate, id, group)
	}
	return c, nil
}

// Receive takes a heartbeat from peer (the authenticated author of the
// message, not a field of the heartbeat), received at now. Heartbeats
// from this node's own peer ID and ones older than the last accepted
// from that peer are ignored.
//
// A heartbeat that repeats what its node said last, from a node alive
// until now, changes no decision: it only moves that node's deadline
// later. It is taken without evaluating the groups, unless a deadline
// has passed since the last evaluation (r.recheck), so every node's
// timeout is still seen at the first event after it. Evaluating every
// group on every heartbeat (sorting every member) was a tenth of an
// idle 24-node cluster's CPU, and grows with the cluster.
func (r *Rule) Receive(now time.Duration, peer string, hb *Heartbeat) {
	removed := r.advance(now)
	if r.record(peer, hb, removed) {
		r.evaluate()
	}
}

// Received is a heartbeat and the peer it came from (ReceiveAll).
type Received struct {
	Peer      string
	Heartbeat *Heartbeat
}

// ReceiveAll takes heartbeats received at the same time (now) as
// Receive takes each, but evaluates the groups once, after the last.
// What it decides is what Receive would have decided after the last:
// only the changes on the way, which no heartbeat after them confirms,
// are not made. The runner hands over what queued up while it was
// busy: evaluating after each of them is what a node that falls
// behind (a saturated process, 200 nodes in one) can least afford, and
// it grows with the cluster.
func (r *Rule) ReceiveAll(now time.Duration, msgs []Received) {
	removed := r.advance(now)
	evaluate := false
	for _, m := range msgs {
		evaluate = r.record(m.Peer, m.Heartbeat, removed) || evaluate
	}
	if evaluate {
		r.evaluate()
	}
}

// record takes hb from peer into the node table and reports whether the
// groups need evaluating (Receive); removed: advance has just forgotten
// nodes.
func (r *Rule) record(peer string, hb *Heartbeat, removed bool) bool {
	if peer == r.cfg.Peer || hb == nil {
		return false
	}
	rec := r.nodes[peer]
	if rec != nil {
		if hb.Incarnation < rec.inc || (hb.Incarnation == rec.inc && hb.Seq <= rec.seq) {
			return false
		}
		if !removed && r.repeats(rec, hb) {
			rec.seq, rec.lastSeen = hb.Seq, r.now
			return false
		}
		if rec.nodeID != hb.NodeID {
			r.countID(rec.nodeID, -1)
			r.countID(hb.NodeID, 1)
		}
	} else {
		rec = &nodeRec{peer: peer, firstHeard: r.now}
		r.nodes[peer] = rec
		r.lastNew = r.now
		r.countID(hb.NodeID, 1)
	}
	rec.inc, rec.seq, rec.lastSeen, rec.period = hb.Incarnation, hb.Seq, r.now, hb.Period
	rec.nodeID, rec.leaving, rec.warming = hb.NodeID, hb.Leaving, hb.Warming
	old := rec.cands
	rec.cands = slices.Clone(hb.Candidates)
	rec.views = rec.views[:0]
	for _, v := range hb.Views {
		rec.setView(v)
	}
	if hb.Leaving {
		rec.cands, rec.views = nil, nil
	}
	if !slices.EqualFunc(old, rec.cands, func(a, b CandidateState) bool { return a.Group == b.Group && a.ID == b.ID }) {
		r.slots = nil
	}
	return true
}

// repeats reports whether hb, from rec's node, says what its last
// heartbeat said, and nothing may have changed since the last
// evaluation: rec was alive until now and not silent for half its
// timeout, no deadline has passed, this node is warm, and no local
// candidate is settling (which counts its peers' sequence numbers).
func (r *Rule) repeats(rec *nodeRec, hb *Heartbeat) bool {
	// A heartbeat after half a timeout of silence is news: it may end a
	// silence that kept others alive (silentWith).
	if !r.alive(rec) || r.now-rec.lastSeen >= r.timeout(rec)/2 {
		return false
	}
	if hb.Incarnation != rec.inc || hb.NodeID != rec.nodeID || hb.Leaving || rec.leaving ||
		hb.Warming != rec.warming || hb.Period != rec.period ||
		!slices.Equal(hb.Candidates, rec.cands) || len(hb.Views) != len(rec.views) {
		return false
	}
	for _, v := range hb.Views {
		if w, _ := rec.view(v.Group); w != v {
			return false
		}
	}
	return r.quiet()
}

// quiet reports whether nothing but a deadline can make evaluate decide
// otherwise than the last evaluation did, and none has passed since:
// this node is warm, no local candidate is settling (which counts its
// peers' sequence numbers), the slack has not changed (SetSlack), and
// the cluster is not starting without a leader.
//
// recheck, the first deadline after the last evaluation, may have
// moved later since: each heartbeat taken without an evaluation moves
// its node's deadline. Once it is reached, quiet looks for a deadline
// passed since the last evaluation in the nodes as they are now, and
// moves recheck to the next one when none has. At 200 nodes the front's
// heartbeats (every Interval) kept moving the first deadline, and the
// runner's timer, set for it, evaluated for nothing every
// Timeout−Interval.
func (r *Rule) quiet() bool {
	if !r.warm || r.stale {
		return false
	}
	// While the cluster starts with no leader, every heartbeat is news: a
	// node that stepped down for a lower node (choose) elects again at
	// the first evaluation after its wait, which no deadline marks once
	// the wait is over (the reference model found a repeat skipped there).
	if g := r.groups[ClusterGroup]; (g == nil || !g.lead.HasLeader()) && r.startingCluster() {
		return false
	}
	for _, c := range r.local {
		if !c.settled {
			return false
		}
	}
	if r.now >= r.recheck {
		at, ok := r.deadlineAfter(r.evalAt)
		if ok && at <= r.now {
			return false
		}
		r.recheck = at
		if !ok {
			r.recheck = math.MaxInt64
		}
	}
	return true
}

// Tick advances time: warm-up ends, silent nodes time out, sessions
// expire. It evaluates only when something may have changed (quiet).
func (r *Rule) Tick(now time.Duration) {
	if r.advance(now) || !r.quiet() {
		r.evaluate()
	}
}

// NextDeadline is the next time at which Tick may change something
// (a node timing out, a session expiring, the warm-up ending); ok is
// false when nothing is pending.
func (r *Rule) NextDeadline() (at time.Duration, ok bool) { return r.deadlineAfter(r.now) }

// deadlineAfter is the first deadline after t (NextDeadline). It takes
// every node that is not leaving, also one that has timed out: quiet
// asks for the first deadline after the last evaluation, and a node may
// have timed out since.
func (r *Rule) deadlineAfter(t time.Duration) (at time.Duration, ok bool) {
	consider := func(d time.Duration) {
		if d > t && (!ok || d < at) {
			at, ok = d, true
		}
	}
	if !r.listened {
		consider(r.start + r.cfg.Warmup)
	}
	// 8×Warmup after the start: the wait for warming peers ends, and a
	// group nobody leads no longer waits for lower candidates
	// (startingCluster).
	consider(r.start + 8*r.cfg.Warmup)
	if !r.warm || r.startingCluster() {
		consider(r.lastNew + r.cfg.Warmup)
	}
	if !r.warm {
		for _, rec := range r.nodes {
			if rec.warming {
				consider(rec.firstHeard + 2*r.cfg.Warmup)
			}
		}
	}
	for _, rec := range r.nodes {
		if !rec.leaving {
			// silentWith may hold it for up to Timeout more.
			consider(rec.lastSeen + r.timeout(rec) + r.slack)
			consider(rec.lastSeen + r.timeout(rec) + r.slack + r.cfg.Timeout)
			if rec.probing && rec.lastSeen < rec.needFast {
				consider(rec.needFast + r.probation())
			}
		}
	}
	if r.alarmUntil > 0 {
		consider(r.alarmUntil)
	}
	for _, c := range r.local {
		if c.spec.TTL > 0 {
			consider(c.lastReport + c.spec.TTL)
		}
		if !c.settled {
			consider(c.joinedAt + r.cfg.Warmup)
		}
	}
	return at, ok
}

// Heartbeat returns the heartbeat to send now: the local candidates and,
// once warm, this node's view of every group. The next one is due
// SendPeriod later.
func (r *Rule) Heartbeat(now time.Duration) *Heartbeat {
	r.advance(now)
	r.seq++
	r.lastPeriod = r.period()
	hb := &Heartbeat{NodeID: r.cfg.NodeID, Incarnation: r.inc, Seq: r.seq, Warming: !r.listened, Period: r.lastPeriod + r.lateness()}
	for _, k := range sortedKeys(r.local) {
		c := r.local[k]
		hb.Candidates = append(hb.Candidates, CandidateState{
			Group: c.spec.Group, ID: c.spec.ID, Kind: c.spec.Kind, Mode: c.spec.Mode,
			Available: c.available && r.listened && c.settled, Healthy: c.healthy,
			Settling: c.settling(r.listened),
		})
	}
	if r.warm {
		for _, name := range slices.Sorted(maps.Keys(r.groups)) {
			g := r.groups[name]
			if g.lead.Term == 0 && !g.lead.HasLeader() {
				continue
			}
			hb.Views = append(hb.Views, View{Group: name, Leader: g.lead.Leader, LeaderPeer: g.lead.Peer, Term: g.lead.Term})
		}
	}
	return hb
}

// SendPeriod is the time from the last heartbeat (Heartbeat) to the
// next: Interval, or the idle period (Config.IdlePeriod).
func (r *Rule) SendPeriod() time.Duration { return r.lastPeriod }

// lateness is what this node adds to the period it announces for its
// own recent lateness (SetSlack): its timers fired that late lately, or
// its own messages took that long through the transport, so its next
// heartbeat may come that much after its period. Receivers wait
// Timeout/Interval announced periods (timeout), so the period grows by
// slack×Interval/Timeout to give them slack more: its peers allow for
// its stalls as it allows for its own (Lifeguard's local health, told to
// the others). Measured: 24 nodes started in one process on 2 cores
// shared with a 100-node benchmark ran their timers up to 0.9 s late,
// and their peers, on time themselves, took each such silence of the
// leader for its failure (terms 12-16). Lateness under an Interval is
// not announced: Timeout already allows a heartbeat that much late (it
// spans several Intervals), and a node about on time is then failed over
// as fast as ever when it crashes (LAN: 0.6-0.8 s).
func (r *Rule) lateness() time.Duration {
	if r.slack < r.cfg.Interval {
		return 0
	}
	a := time.Duration(float64(r.slack) * float64(r.cfg.Interval) / float64(r.cfg.Timeout))
	return a.Truncate(time.Millisecond) // the wire's unit
}

// Goodbye returns the heartbeat that announces this node is stopping.
// The rule should not be used afterwards.
func (r *Rule) Goodbye(now time.Duration) *Heartbeat {
	r.advance(now)
	r.seq++
	return &Heartbeat{NodeID: r.cfg.NodeID, Incarnation: r.inc, Seq: r.seq, Leaving: true}
}

// Leader returns the leadership of group (HasLeader false when none).
// ok is false when the group is unknown: no candidate, and no term.
func (r *Rule) Leader(group string) (l Leadership, ok bool) {
	g, ok := r.groups[group]
	if !ok {
		return Leadership{Group: group}, false
	}
	return g.lead, true
}

// advance moves the rule's time to now and forgets nodes silent for
// Retain; it reports whether it forgot any. It looks through the nodes
// only once the oldest last heartbeat it saw may be Retain old
// (r.forgetAt): every input calls it, and at 200 nodes that walk was a
// quarter of an idle node's election CPU.
func (r *Rule) advance(now time.Duration) (removed bool) {
	if now > r.now {
		r.now = now
	}
	if r.now < r.forgetAt {
		return false
	}
	oldest := r.now
	for peer, rec := range r.nodes {
		if r.now-rec.lastSeen >= r.cfg.Retain {
			delete(r.nodes, peer)
			r.countID(rec.nodeID, -1)
			r.slots = nil
			removed = true
		} else {
			oldest = min(oldest, rec.lastSeen)
		}
	}
	// Last heartbeats only move later, and a new node's is now: none is
	// older than oldest until the next walk.
	r.forgetAt = oldest + r.cfg.Retain
	return removed
}

func (r *Rule) alive(rec *nodeRec) bool {
	if rec.leaving || r.failedProbation(rec) {
		return false
	}
	silence, limit := r.now-rec.lastSeen, r.timeout(rec)+r.slack
	return silence < limit || (silence < limit+r.cfg.Timeout && r.silentWith(rec, rec.lastSeen+limit))
}

// silentWith reports whether at least two other nodes went silent with
// rec: their last heartbeats came less than Timeout/2 before rec's (or
// after it), and at rec's deadline each had been silent for half its own
// timeout (and is still: a node heard since tells that this node hears
// again, and rec is silent on its own). Then rec is given up to Timeout
// more. (Judged as of the deadline, the answer only turns false, when
// one of them is heard again: a node timed out is never revived by
// others falling silent later.) Several nodes that stop at once, each
// on its own schedule, tell of this node's own stall (its receiving
// stalled: its process starved, its network queue backed up) more likely
// than of their crashes, and its own slack misses such a stall when its
// timers ran on time. Measured: 24 nodes in one process on 2 busy cores,
// a node whose slack was 41 ms heard nothing from 13 of its 23 peers for
// 0.9 s and failed its leader over. Idle nodes (long periods) do not
// count as silent for seconds, so a crashed leader whose peers go on is
// failed over after Timeout as before; it takes up to Timeout more when
// two more nodes that were sending every Interval crash or are cut off
// with it.
func (r *Rule) silentWith(rec *nodeRec, deadline time.Duration) bool {
	n := 0
	for _, q := range r.nodes {
		if q != rec && !q.leaving && q.lastSeen > rec.lastSeen-r.cfg.Timeout/2 && deadline-q.lastSeen >= r.timeout(q)/2 {
			if n++; n == 2 {
				return true
			}
		}
	}
	return false
}

// Probation. An idle node (one that heartbeats every idle period) counts
// alive for Timeout/Interval idle periods after its last heartbeat: 8 s
// in a cluster of 7 on the LAN preset, 80 s at 200. When the leader
// and the next in line fail together (a partition that leaves both on
// the far side), the third candidate, idle until then, became the
// leader on this side and stayed so for that long, though it was cut
// off too. A live node whose candidate comes to lead or stand next in
// line turns fast at once (wantFast), and so does one that a live
// peer names leader: its fast heartbeat arrives within a hop. So once
// this node's view puts an idle node's candidate there (needFast), the
// node must be heard within probation of that moment, or it counts as
// failed until it is heard again. Heard at all (fast or not) it is
// alive as before: a node that is idle because it sees otherwise (a
// one-sided cut) is not failed over and over.
//
// The alarm. Each probation fails two candidates (the leader and the
// next in line) at a time, so a side that must skip many cut-off idle
// candidates would still wait for their idle timeout (half of 200 nodes
// cut off: 80 s on the LAN preset). A failed probation tells of a
// partition, and every node on this side sees one at about the same
// time: it raises the alarm (alarmUntil) for two probations, during
// which it heartbeats every Interval and puts every idle node on
// probation. The live nodes of its side are alarmed too, so they are
// heard; the cut-off ones fail together, and the side fails over in
// about 5×Timeout whatever its size.
func (r *Rule) probation() time.Duration { return 2*r.cfg.Timeout + r.slack }

// failedProbation reports whether rec was put on probation and was not
// heard within it (see probation).
func (r *Rule) failedProbation(rec *nodeRec) bool {
	return rec.probing && rec.lastSeen < rec.needFast && r.now >= rec.needFast+r.probation()
}

// setProbation puts on probation the idle nodes whose candidates now
// lead or stand next in line in a group (as wantFast decides for the
// local ones), and takes it off the others that are alive: a node that
// failed it stays failed until it is heard (failedProbation).
func (r *Rule) setProbation(ms map[string][]*Member) {
	front := r.frontBuf[:0]
	for name, g := range r.groups {
		if !g.lead.HasLeader() {
			continue
		}
		front = append(front, g.lead.Peer)
		for _, m := range ms[name] {
			if !m.Eligible || g.lead.Is(m.ID, m.Peer) {
				continue
			}
			// The first eligible candidate but the leader: next in line.
			front = append(front, m.Peer)
			break
		}
	}
	r.frontBuf = front
	for _, rec := range r.nodes {
		if rec.probing && !rec.alarmed && r.failedProbation(rec) {
			rec.alarmed = true
			if r.now >= r.alarmUntil {
				r.alarmUntil = r.now + 2*r.probation()
			}
		}
	}
	alarm := r.now < r.alarmUntil
	for _, rec := range r.nodes {
		switch {
		case alarm || slices.Contains(front, rec.peer):
			if !rec.probing && rec.period > r.cfg.Interval && rec.lastSeen < r.now {
				rec.probing, rec.needFast = true, r.now
			}
		case rec.probing && r.alive(rec):
			rec.probing, rec.alarmed = false, false
		}
	}
}

// SetSlack extends every node's timeout by d: how late this node itself
// has been running lately (the runner measures its timer's lateness). A
// stalled node then does not take its own stall for its peers' failure.
//
// The runner sets it every 2×Timeout even when it has not changed: only
// a change makes the next input evaluate (quiet).
func (r *Rule) SetSlack(d time.Duration) {
	if d = max(d, 0); d != r.slack {
		r.slack, r.stale = d, true
	}
}

// timeout is how long rec may stay silent: Timeout, or as many of its
// announced periods as Timeout holds Intervals when it announced a
// longer one (an idle node).
func (r *Rule) timeout(rec *nodeRec) time.Duration {
	if rec.period <= r.cfg.Interval {
		return r.cfg.Timeout
	}
	return max(r.cfg.Timeout, time.Duration(float64(r.cfg.Timeout)*float64(rec.period)/float64(r.cfg.Interval)))
}

// period is the time until this node's next heartbeat: Interval when
// fast, the idle period otherwise (Config.IdlePeriod).
func (r *Rule) period() time.Duration {
	if r.fast {
		return r.cfg.Interval
	}
	return r.IdlePeriod()
}

// frontSize is how many of a group's lowest live candidates form its
// front: the ones that can lead it soon. While a group starts (this node
// is not warm, its candidate is settling, or the group has no leader)
// only the front heartbeats every Interval and only the front's nodes
// hold up the others' warm-up while they warm up (peersWarming); the
// rest heartbeat at the idle period. Every node used to heartbeat every
// Interval while it warmed up and while its candidate settled or had no
// leader, and 200 nodes started together sent a thousand heartbeats a
// second (LAN), each delivered to every node: on two cores the process
// saturated, heartbeats came late, and the leader changed for minutes,
// which kept every node fast. Three, not two: the leader and the next
// in line, and one more while one of the lowest is still warming up or
// joining by state transfer (not available yet).
const frontSize = 3

// setCuts sets r.cuts to, for each group of ms (sorted, as membersWith
// returns them), its frontSize-th lowest live candidate, or none when
// it has fewer: the group's front is every candidate up to its cut.
func (r *Rule) setCuts(ms map[string][]*Member) {
	if r.cuts == nil {
		r.cuts = make(map[string]memberKey, len(ms))
	}
	clear(r.cuts)
	for group, gm := range ms {
		n := 0
		for _, m := range gm {
			if !m.Alive {
				continue
			}
			if n++; n == frontSize {
				r.cuts[group] = memberKey{m.ID, m.Peer}
				break
			}
		}
	}
}

// front reports whether candidate id of peer is in group's front, as
// the last evaluation saw it (before the first, every candidate is).
func (r *Rule) front(group, id, peer string) bool {
	cut, ok := r.cuts[group]
	return !ok || memberKey{id, peer}.compare(cut) <= 0
}

// inFront reports whether one of rec's candidates is in its group's
// front, or rec has none yet (a node announces its heartbeat before its
// cluster candidate joins: it may be in the front).
func (r *Rule) inFront(rec *nodeRec) bool {
	if len(rec.cands) == 0 && !rec.leaving {
		return true
	}
	for _, c := range rec.cands {
		if r.front(c.Group, c.ID, rec.peer) {
			return true
		}
	}
	return false
}

// IdlePeriod is the heartbeat period of this node while none of its
// candidates leads or stands next in line: Config.IdlePeriod, or by
// default max(10×Interval, Interval×n/2) for n live nodes (this one
// included), so the idle nodes together send about 2/Interval
// heartbeats per second whatever their number.
func (r *Rule) IdlePeriod() time.Duration {
	if r.cfg.IdlePeriod > 0 {
		return r.cfg.IdlePeriod
	}
	n := 1
	for _, rec := range r.nodes {
		if r.alive(rec) {
			n++
		}
	}
	return min(max(10*r.cfg.Interval, r.cfg.Interval*time.Duration(n)/2), maxPeriod)
}

// setFast sets fast (wantFast). A node that turns fast announces it at
// once: its last heartbeat promised a longer silence.
func (r *Rule) setFast(ms map[string][]*Member) {
	r.fast = r.wantFast(ms)
	if r.fast && r.lastPeriod > r.cfg.Interval {
		r.out.Send = true
	}
}

// wantFast reports whether an alarm is on (see probation), or a local
// candidate leads its group, or a live node names it leader
// (namedLeader), or it stands next in line (the lowest eligible
// candidate but the leader), or is one of the frontSize lowest
// eligible candidates of a group without a leader, or is in its
// group's front (setCuts) and either settling, or of a node not warm
// yet, or this node's unavailable cluster candidate while the cluster
// is starting (startingCluster: the others wait for it to become
// available, and one that elected before it heard of it steps down only
// once it does; the idle period delayed that by seconds); ms are the
// members by group, as evaluate computed them.
func (r *Rule) wantFast(ms map[string][]*Member) bool {
	if r.now < r.alarmUntil {
		return true
	}
	for _, c := range r.local {
		if r.front(c.spec.Group, c.spec.ID, r.cfg.Peer) &&
			(!c.settled || !r.warm || (c.spec.Group == ClusterGroup && !c.available && r.startingCluster())) {
			return true
		}
		if !r.warm {
			continue
		}
		g := r.groups[c.spec.Group]
		if g == nil {
			continue
		}
		if g.lead.Peer == r.cfg.Peer && g.lead.Leader == c.spec.ID || r.namedLeader(c.spec.Group, c.spec.ID) {
			return true
		}
		seen := 0
		for _, m := range ms[c.spec.Group] {
			if !m.Eligible || (m.ID == g.lead.Leader && m.Peer == g.lead.Peer) {
				continue
			}
			// The first eligible candidate but the leader: next in line.
			if m.Local && m.ID == c.spec.ID {
				return true
			}
			if seen++; g.lead.HasLeader() || seen == frontSize {
				break
			}
		}
	}
	return false
}

// namedLeader reports whether a live node names the local candidate id
// the leader of group: it expects this node's heartbeats every Interval
// (see probation), also where this node sees another leader.
func (r *Rule) namedLeader(group, id string) bool {
	for _, rec := range r.nodes {
		if v, ok := rec.view(group); ok && v.Leader == id && v.LeaderPeer == r.cfg.Peer && r.alive(rec) {
			return true
		}
	}
	return false
}

func (r *Rule) group(name string) *groupState {
	g, ok := r.groups[name]
	if !ok {
		g = &groupState{lead: Leadership{Group: name}, since: r.now}
		r.groups[name] = g
	}
	return g
}

func memberLess(a, b *Member) int {
	return memberKey{a.ID, a.Peer}.compare(memberKey{b.ID, b.Peer})
}

// members lists the candidates of every group, sorted by (ID, peer).
// The lists are valid until the next call (see Rule.memberBuf).
func (r *Rule) members() map[string][]*Member { return r.membersWith(r.duplicateNodes()) }

// membersWith is members with the node IDs used by several peers
// (duplicateNodes) given: evaluate needs them twice. The members are
// filled in the order of r.slots, rebuilt only when a candidate comes
// or goes, into storage reused from the last call: at 200 nodes,
// allocating a member per candidate and sorting every group on every
// evaluation was most of its cost.
func (r *Rule) membersWith(dup map[string][]string) map[string][]*Member {
	if r.slots == nil {
		r.buildSlots()
	}
	n := 0
	for _, slots := range r.slots {
		n += len(slots)
	}
	if cap(r.memberBuf) < n {
		r.memberBuf = make([]Member, n)
	}
	buf := r.memberBuf[:n]
	if r.memberMap == nil {
		r.memberMap = make(map[string][]*Member, len(r.slots))
	}
	out := r.memberMap
	for group := range out {
		if _, ok := r.slots[group]; !ok {
			delete(out, group)
		}
	}
	k := 0
	for group, slots := range r.slots {
		ms := out[group][:0]
		for _, s := range slots {
			m := &buf[k]
			k++
			if c := s.local; c != nil {
				*m = Member{
					ID: c.spec.ID, Node: r.cfg.NodeID, Peer: r.cfg.Peer, Kind: c.spec.Kind, Mode: c.spec.Mode,
					Local: true, Alive: true, Healthy: c.healthy, Available: c.available,
				}
				m.Eligible = m.Healthy && m.Available && r.warm && c.settled
				m.Settling = c.settling(r.listened)
			} else {
				rec, c := s.rec, s.rec.cands[s.i]
				alive := r.alive(rec)
				*m = Member{
					ID: c.ID, Node: rec.nodeID, Peer: rec.peer, Kind: c.Kind, Mode: c.Mode,
					Alive: alive, Healthy: alive && c.Healthy, Available: c.Available,
					Settling: alive && c.Settling, LastSeen: r.now - rec.lastSeen,
				}
				m.Eligible = m.Healthy && m.Available
			}
			m.Duplicate = len(dup[m.Node]) > 1
			ms = append(ms, m)
		}
		out[group] = ms
	}
	return out
}

// buildSlots lists every group's candidates, local ones and those of
// the nodes that are not leaving, sorted by (ID, peer) (memberLess).
func (r *Rule) buildSlots() {
	r.slots = make(map[string][]memberSlot)
	for _, c := range r.local {
		g := c.spec.Group
		r.slots[g] = append(r.slots[g], memberSlot{memberKey: memberKey{c.spec.ID, r.cfg.Peer}, local: c})
	}
	for _, rec := range r.nodes {
		if rec.leaving {
			continue
		}
		for i, c := range rec.cands {
			r.slots[c.Group] = append(r.slots[c.Group], memberSlot{memberKey: memberKey{c.ID, rec.peer}, rec: rec, i: i})
		}
	}
	for _, slots := range r.slots {
		slices.SortFunc(slots, func(a, b memberSlot) int { return a.compare(b.memberKey) })
	}
}

// countID adds d to the number of entries with node ID id (idCount).
func (r *Rule) countID(id string, d int) {
	n := r.idCount[id]
	if n > 1 {
		r.shared--
	}
	if n += d; n > 1 {
		r.shared++
	}
	if n == 0 {
		delete(r.idCount, id)
	} else {
		r.idCount[id] = n
	}
}

// duplicateNodes maps each node ID used by more than one peer (this
// node and the live ones) to those peers: empty but for a
// misconfiguration. It looks only when two entries of the node table
// (this node included, live or not) share an ID (r.shared), with a
// table of the first peer of each ID that it reuses from one call to
// the next.
func (r *Rule) duplicateNodes() map[string][]string {
	if r.shared == 0 {
		return nil
	}
	if r.firstPeer == nil {
		r.firstPeer = make(map[string]string, len(r.nodes)+1)
	}
	first := r.firstPeer
	clear(first)
	first[r.cfg.NodeID] = r.cfg.Peer
	var by map[string][]string
	for _, rec := range r.nodes {
		if !r.alive(rec) {
			continue
		}
		p, ok := first[rec.nodeID]
		if !ok {
			first[rec.nodeID] = rec.peer
			continue
		}
		if by == nil {
			by = make(map[string][]string)
		}
		if len(by[rec.nodeID]) == 0 {
			by[rec.nodeID] = []string{p}
		}
		by[rec.nodeID] = append(by[rec.nodeID], rec.peer)
	}
	return by
}

// evaluate recomputes every group and records the changes.
func (r *Rule) evaluate() {
	r.evals++
	r.evalAt, r.stale = r.now, false
	defer func() {
		// What is decided now holds until the next deadline (or for
		// good: no deadline).
		at, ok := r.NextDeadline()
		if !ok {
			at = math.MaxInt64
		}
		r.recheck = at
	}()
	for k, c := range r.local {
		if c.spec.TTL > 0 && r.now-c.lastReport >= c.spec.TTL {
			delete(r.local, k)
			r.slots = nil
			r.out.Notices = append(r.out.Notices, Notice{Kind: NoticeExpired, Group: k.group, ID: k.id})
			r.out.Send = true
		}
	}
	dup := r.duplicateNodes()
	r.checkDuplicates(dup)
	r.settle()
	if !r.listened && r.now >= r.start+r.cfg.Warmup {
		r.listened = true
		r.out.Send = true
	}
	members := r.membersWith(dup)
	r.setCuts(members)
	if !r.warm {
		if !r.listened || (r.now < r.start+8*r.cfg.Warmup && (r.peersWarming() || !r.membershipSettled())) {
			r.setFast(members)
			return
		}
		r.warm = true
		r.out.Send = true
		members = r.membersWith(dup) // its own candidates are eligible now
	}
	defer r.setFast(members)
	names := r.nameBuf[:0]
	for n := range r.groups {
		names = append(names, n)
	}
	for n := range members {
		if _, ok := r.groups[n]; !ok {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	r.nameBuf = names
	for _, name := range names {
		r.evalGroup(name, members[name])
	}
	r.setProbation(members)
}

// settling reports whether the candidate would be eligible but for
// settling (listened: its node has finished listening).
func (c *localCand) settling(listened bool) bool {
	return listened && !c.settled && c.available && c.healthy
}

// settle marks new candidates settled once the second heartbeat after
// their join has arrived from every live peer (from an idle peer: two
// Intervals have passed), or Warmup has passed.
func (r *Rule) settle() {
	for _, c := range r.local {
		if c.settled {
			continue
		}
		heard := true
		for peer, rec := range r.nodes {
			if !r.alive(rec) {
				continue
			}
			b := c.base[peer] // zero for a peer first heard after the join
			if b.inc != rec.inc {
				b = heardAt{rec.inc, 0}
			}
			// An idle peer (a longer period) sends at once when one of its
			// candidates changes: two Intervals after the join, anything
			// it joined before ours has arrived, without its next
			// heartbeat.
			if rec.period > r.cfg.Interval && r.now >= c.joinedAt+2*r.cfg.Interval {
				continue
			}
			if rec.seq < b.seq+2 {
				heard = false
				break
			}
		}
		if heard || r.now >= c.joinedAt+r.cfg.Warmup {
			c.settled, c.base = true, nil
			r.out.Send = true
		}
	}
}

// membershipSettled: a node that starts while no live peer knows of a
// leader (a cluster started at once, one node after another) decides
// once no new node has been heard for Warmup, so that the first
// election sees the whole cluster and later starters do not preempt it
// one by one (24 nodes started by one process agreed at term 30-60
// before). A node that joins a running cluster (runningCluster) does
// not wait. (evaluate bounds the wait: 8×Warmup after the start.)
func (r *Rule) membershipSettled() bool {
	if r.now-r.lastNew >= r.cfg.Warmup {
		return true
	}
	return r.runningCluster()
}

// peersWarming reports whether a live peer is still listening (evaluate
// bounds the wait: 8×Warmup after the start).
func (r *Rule) peersWarming() bool {
	for _, rec := range r.nodes {
		// A peer warms up for Warmup after its start: waiting for it ends
		// 2×Warmup after it was first heard, whatever it says.
		// Only a node in a front: the others cannot lead soon.
		if rec.warming && r.alive(rec) && r.now < rec.firstHeard+2*r.cfg.Warmup && r.inFront(rec) {
			return true
		}
	}
	return false
}

func (r *Rule) checkDuplicates(by map[string][]string) {
	for id := range r.dups {
		if len(by[id]) < 2 {
			delete(r.dups, id)
		}
	}
	for _, id := range slices.Sorted(maps.Keys(by)) {
		peers := by[id]
		if len(peers) < 2 {
			continue
		}
		slices.Sort(peers)
		key := strings.Join(peers, ",")
		if r.dups[id] == key {
			continue
		}
		r.dups[id] = key
		r.out.Notices = append(r.out.Notices, Notice{
			Kind: NoticeDuplicateNode, ID: id, Peers: peers, Self: id == r.cfg.NodeID,
		})
	}
}

// viewsOf returns the views of group held by live nodes, valid until
// the next call (see Rule.memberBuf).
func (r *Rule) viewsOf(group string) []View {
	vs := r.viewBuf[:0]
	for _, rec := range r.nodes {
		if !r.alive(rec) {
			continue
		}
		if v, ok := rec.view(group); ok {
			vs = append(vs, v)
		}
	}
	r.viewBuf = vs
	return vs
}

func (r *Rule) evalGroup(name string, ms []*Member) {
	g := r.group(name)
	views := r.viewsOf(name)
	cur := g.lead
	next := r.choose(cur, g.since, ms, views)

	// M: the highest term anyone alive holds for the group.
	maxTerm := cur.Term
	for _, v := range views {
		maxTerm = max(maxTerm, v.Term)
	}
	// claim: the highest term a live node gives to the leadership of next.
	claim := func(l Leadership) uint64 {
		var t uint64
		for _, v := range views {
			if v.Leader == l.Leader && v.LeaderPeer == l.Peer {
				t = max(t, v.Term)
			}
		}
		return t
	}

	switch {
	case !next.HasLeader() && !cur.HasLeader():
		return
	case !next.HasLeader():
		next.Term = cur.Term // no leader: the term stays; the next leader gets more
	case next.same(cur):
		// Same leader: adopt a higher term given to it elsewhere (the
		// losing side of a healed partition bumped it past its own).
		t := claim(cur)
		if t <= cur.Term {
			return
		}
		next.Term = t
	default:
		// New leader: join its existing term if a live node already gives
		// it one that is new to us and not below anyone's (a late joiner,
		// or a node whose timeout fired a little after the others');
		// otherwise open a new term above every term seen.
		// A node restarted with its saved terms has no leader at the term
		// it saved: it joins that term too, rather than opening a new
		// one for the same leadership (every restart of a node in a
		// rolling restart moved every node to a new term).
		if t := claim(next); (t > cur.Term || (t == cur.Term && g.restored && !cur.HasLeader())) && t >= maxTerm {
			next.Term = t
		} else {
			next.Term = maxTerm + 1
		}
	}
	ch := Change{Leadership: next, Previous: cur, Reason: r.reason(cur, next, ms), At: r.now}
	g.lead = next
	if next.HasLeader() {
		g.restored = false
	}
	g.since = r.now
	r.out.Changes = append(r.out.Changes, ch)
}

// choose picks the leader among ms (sorted by ID, peer); the current
// leadership cur began at since.
func (r *Rule) choose(cur Leadership, since time.Duration, ms []*Member, views []View) Leadership {
	elig := r.eligBuf[:0]
	for _, m := range ms {
		if m.Eligible {
			elig = append(elig, m)
		}
	}
	r.eligBuf = elig
	if len(elig) == 0 {
		return Leadership{Group: cur.Group}
	}
	// A group with no leader waits for a lower candidate that is settling
	// (it has just joined, here or elsewhere): electing a higher one now
	// would make two leaders for a moment where that one's node already
	// elects it. The wait is bounded: settling lasts at most Warmup.
	starting := cur.Group == ClusterGroup && r.startingCluster()
	if starting && cur.HasLeader() {
		// A node that elected during this start and has since first heard
		// a lower node (it elected from a partial picture: connections
		// were still coming up) steps down (ReasonStarting; the term
		// stays) and waits with the others below, rather than change
		// leader, and term, once more for each lower node it hears of.
		leader := &Member{ID: cur.Leader, Peer: cur.Peer}
		for _, m := range ms {
			if memberLess(m, leader) >= 0 {
				break
			}
			if m.Alive && m.Healthy && r.heardSince(m, since) {
				return Leadership{Group: cur.Group}
			}
		}
	}
	if !cur.HasLeader() {
		// A cluster starting together elects once no new node has
		// appeared for Warmup, also after the warm-up (a node that
		// stepped down above), so that one election covers every node
		// whose connection came up meanwhile.
		if starting && r.now-r.lastNew < r.cfg.Warmup {
			return Leadership{Group: cur.Group}
		}
		for _, m := range ms {
			// A cluster starting together also waits for lower nodes that
			// are not available yet (a node's cluster candidate is
			// unavailable while it joins by state transfer): they come up
			// within a second or two of one another, and electing each as
			// it came changed the leader once for every lower one. Only
			// the cluster group: a service's candidate may be unavailable
			// for as long as its operator wants.
			waitFor := m.Settling || (starting && m.Alive && m.Healthy && !m.Available)
			if waitFor && memberLess(m, elig[0]) < 0 {
				return Leadership{Group: cur.Group}
			}
		}
	}
	lead := func(m *Member) Leadership {
		return Leadership{Group: cur.Group, Leader: m.ID, Node: m.Node, Peer: m.Peer}
	}
	if !r.cfg.NoPreemption {
		return lead(elig[0])
	}
	// Without preemption: keep an eligible leader, unless a live node
	// gives another eligible candidate a higher term (or the same term
	// and a lower ID): competing leaderships after a partition.
	find := func(id, peer string) *Member {
		for _, m := range elig {
			if m.ID == id && m.Peer == peer {
				return m
			}
		}
		return nil
	}
	var best *Member
	var bestTerm uint64
	if m := find(cur.Leader, cur.Peer); m != nil {
		best, bestTerm = m, cur.Term
	}
	for _, v := range views {
		m := find(v.Leader, v.LeaderPeer)
		if m == nil {
			continue
		}
		if best == nil || v.Term > bestTerm || (v.Term == bestTerm && memberLess(m, best) < 0) {
			best, bestTerm = m, v.Term
		}
	}
	if best == nil {
		best = elig[0]
	}
	return lead(best)
}

// heardSince reports whether m is a remote candidate whose node was
// first heard after at.
func (r *Rule) heardSince(m *Member, at time.Duration) bool {
	rec, ok := r.nodes[m.Peer]
	return !m.Local && ok && rec.firstHeard > at
}

// startingCluster: this node started less than 8×Warmup ago, and no
// live node that did not start with it (startedWith) names a leader of
// the cluster: the cluster is starting, and a leader that a node which
// started with this one names was chosen in this same start, maybe from
// a partial picture (see choose and membershipSettled).
func (r *Rule) startingCluster() bool {
	return r.now < r.start+8*r.cfg.Warmup && !r.runningCluster()
}

// runningCluster reports whether a live node that did not start with
// this one (startedWith) names a leader of the cluster: this node joins
// a cluster that runs. A leader named only by nodes that started with
// this one does not count: on a busy machine (24 nodes started at once
// by one process on 2 cores) connections take seconds to come up, and a
// node that ended its warm-up having heard few others or none elected
// from that partial picture; every other node then took its leader for
// a running cluster's, stopped waiting, and followed it, and each lower
// node that became available later preempted in turn (the cluster
// agreed at term 8-13).
func (r *Rule) runningCluster() bool {
	for _, rec := range r.nodes {
		if v, _ := rec.view(ClusterGroup); v.Leader != "" && r.alive(rec) && !r.startedWith(rec) {
			return true
		}
	}
	return false
}

// startedWith reports whether rec's node started less than 2×Warmup
// before or after this one: one start. The earlier of two such nodes
// could not have listened for Warmup and then heard no new node for
// Warmup (membershipSettled) with the later one in its picture, so a
// leader it names was chosen in the same start, maybe from a partial
// picture; and the nodes of one start begin their elections spread out
// (24 nodes launched together in one process on 2 busy cores: up to
// 0.9 s apart, with Warmup 0.8 s). Starts further apart are staggered:
// the earlier node's leader stands. Their incarnations are their start
// times in nanoseconds (see NewRule). Clocks that disagree by more than
// that only make a node take one that started with it for a running
// cluster's node (it stops waiting, as every node did before) or the
// reverse (it waits for at most 8×Warmup).
func (r *Rule) startedWith(rec *nodeRec) bool {
	d := int64(rec.inc - r.inc)
	return d > -int64(2*r.cfg.Warmup) && d < int64(2*r.cfg.Warmup)
}

// reason explains a change from cur to next.
func (r *Rule) reason(cur, next Leadership, ms []*Member) string {
	if !cur.HasLeader() {
		return ReasonElected
	}
	if next.same(cur) {
		return ReasonTerm
	}
	var old *Member
	for _, m := range ms {
		if m.ID == cur.Leader && m.Peer == cur.Peer {
			old = m
		}
	}
	switch {
	case old == nil:
		if cur.Peer == r.cfg.Peer {
			return ReasonLeft // left or expired locally
		}
		if rec, ok := r.nodes[cur.Peer]; ok && (rec.leaving || r.alive(rec)) {
			return ReasonLeft
		}
		return ReasonFailed
	case !old.Alive:
		return ReasonFailed
	case !old.Healthy:
		return ReasonUnhealthy
	case !old.Eligible:
		return ReasonUnavailable
	case !next.HasLeader():
		return ReasonStarting
	case r.cfg.NoPreemption:
		return ReasonSuperseded
	}
	return ReasonPreempted
}

// Status returns every group known to this node, sorted by name: the
// groups with candidates, and groups with a leader.
func (r *Rule) Status() []GroupStatus {
	members := r.members()
	var out []GroupStatus
	for _, name := range slices.Sorted(maps.Keys(r.groups)) {
		if len(members[name]) == 0 && !r.groups[name].lead.HasLeader() {
			continue
		}
		out = append(out, r.groupStatus(name, members[name]))
	}
	for name, ms := range members {
		if _, ok := r.groups[name]; !ok {
			out = append(out, r.groupStatus(name, ms))
		}
	}
	slices.SortFunc(out, func(a, b GroupStatus) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// GroupNames lists, sorted, the groups Status lists: those with a
// candidate of a node that is not leaving, or with a leader.
func (r *Rule) GroupNames() []string {
	if r.slots == nil {
		r.buildSlots() // every group with a candidate
	}
	names := make([]string, 0, len(r.slots)+len(r.groups))
	for name := range r.slots {
		names = append(names, name)
	}
	for name, g := range r.groups {
		if _, ok := r.slots[name]; !ok && g.lead.HasLeader() {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// Group returns the status of one group; ErrNoGroup if it has no
// candidate and no leader.
func (r *Rule) Group(name string) (GroupStatus, error) {
	ms := r.members()[name]
	g, known := r.groups[name]
	if len(ms) == 0 && (!known || !g.lead.HasLeader()) {
		return GroupStatus{}, fmt.Errorf("%w: %q has no candidate on this node or any node it hears from", ErrNoGroup, name)
	}
	return r.groupStatus(name, ms), nil
}

func (r *Rule) groupStatus(name string, ms []*Member) GroupStatus {
	gs := GroupStatus{Name: name, Warming: !r.warm, Members: make([]Member, 0, len(ms))}
	if g, ok := r.groups[name]; ok {
		gs.Leader = g.lead
		gs.Since = r.now - g.since
	} else {
		gs.Leader = Leadership{Group: name}
	}
	var ref *Member
	for _, m := range ms {
		if m.Local && ref == nil {
			ref = m
		}
	}
	if ref == nil && len(ms) > 0 {
		ref = ms[0]
	}
	if ref != nil {
		gs.Kind, gs.Mode = ref.Kind, ref.Mode
	}
	for _, m := range ms {
		mm := *m
		mm.Leader = gs.Leader.Is(m.ID, m.Peer)
		mm.Active = mm.Leader || (m.Eligible && m.Kind == KindEndpoint && m.Mode == ModeAllWarm)
		gs.Members = append(gs.Members, mm)
		if m.Kind != gs.Kind || m.Mode != gs.Mode {
			gs.Conflicts = append(gs.Conflicts, fmt.Sprintf("candidate %s (peer %s) declares %s/%s, the group is %s/%s", m.ID, m.Peer, m.Kind, m.Mode, gs.Kind, gs.Mode))
		}
		if m.Duplicate {
			gs.Conflicts = append(gs.Conflicts, fmt.Sprintf("node ID %s of candidate %s is used by several peers", m.Node, m.ID))
		}
	}
	gs.Conflicts = slices.Compact(gs.Conflicts)
	return gs
}

// Candidate returns the status of a local candidate.
func (r *Rule) Candidate(group, id string) (CandidateStatus, error) {
	c, err := r.cand(group, id)
	if err != nil {
		return CandidateStatus{}, err
	}
	lead, _ := r.Leader(group)
	st := CandidateStatus{Spec: c.spec, Leadership: lead, Healthy: c.healthy}
	st.Available = c.available
	st.Eligible = c.healthy && c.available && r.warm && c.settled
	st.IsLeader = lead.Is(id, r.cfg.Peer)
	st.Active = st.IsLeader || (st.Eligible && c.spec.Kind == KindEndpoint && c.spec.Mode == ModeAllWarm)
	return st, nil
}

// Candidates lists the local candidates, sorted by group and ID.
func (r *Rule) Candidates() []CandidateStatus {
	var out []CandidateStatus
	for _, k := range sortedKeys(r.local) {
		st, _ := r.Candidate(k.group, k.id)
		out = append(out, st)
	}
	return out
}

func sortedKeys(m map[candKey]*localCand) []candKey {
	ks := slices.Collect(maps.Keys(m))
	slices.SortFunc(ks, func(a, b candKey) int {
		return cmp.Or(strings.Compare(a.group, b.group), strings.Compare(a.id, b.id))
	})
	return ks
}
