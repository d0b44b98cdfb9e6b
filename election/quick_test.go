package election

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

var seedFlag = flag.Uint64("election.seed", 0, "seed of the randomised election tests (0: a new one, printed)")

func testSeed(t *testing.T) uint64 {
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay with -election.seed=%d)", seed, seed)
	return seed
}

// refPhantom is what the reference knows of one sender.
type refPhantom struct {
	first, last       time.Duration
	present           bool // last heartbeat listed its candidate
	gone              bool // last heartbeat was a goodbye
	available, health bool
}

// refAlive: p's last heartbeat is younger than timeout, or than twice
// that while two other senders fell silent with it (their last
// heartbeats less than timeout/2 before p's or after, and silent for
// timeout/2 at p's deadline).
func refAlive(ps map[string]*refPhantom, p *refPhantom, now, timeout time.Duration) bool {
	if p.gone {
		return false
	}
	if now-p.last < timeout {
		return true
	}
	n := 0
	for _, q := range ps {
		if q != p && !q.gone && q.last > p.last-timeout/2 && p.last+timeout-q.last >= timeout/2 {
			n++
		}
	}
	return now-p.last < 2*timeout && n >= 2
}

// refLeader is the rule written as plainly as possible: the lowest ID
// that is alive (refAlive) and whose last heartbeat said available and
// healthy.
func refLeader(ps map[string]*refPhantom, now, timeout time.Duration) string {
	best := ""
	for id, p := range ps {
		if p.present && p.available && p.health && refAlive(ps, p, now, timeout) && (best == "" || id < best) {
			best = id
		}
	}
	return best
}

// TestRuleMatchesReference feeds one observer random heartbeats, silences
// and goodbyes from five senders and checks, after every step, the leader
// against refLeader, and that the term grows by one on every new leader
// and never otherwise.
func TestRuleMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(testSeed(t), 1))
	ids := []string{"a", "b", "c", "d", "e"}
	for run := range 200 {
		cfg := FastConfig()
		cfg.NodeID, cfg.Peer = "obs", "obs"
		cfg.Timeout = time.Duration(100+rng.IntN(400)) * time.Millisecond
		cfg.Interval, cfg.Warmup = cfg.Timeout/4, cfg.Timeout
		r, err := NewRule(cfg, 1, 0)
		if err != nil {
			t.Fatal(err)
		}
		ps := map[string]*refPhantom{}
		seqs := map[string]uint64{}
		var now time.Duration
		var leader string
		var term uint64
		var log []string
		// The observer decides once it has listened for Warmup and no new
		// sender has appeared for Warmup (or 8×Warmup passed).
		var lastNew time.Duration
		warm := false
		var since time.Duration // of the last change
		for step := range 300 {
			now += time.Duration(rng.IntN(int(cfg.Timeout/time.Millisecond)/2+1)) * time.Millisecond
			id := ids[rng.IntN(len(ids))]
			if rng.IntN(3) == 0 { // only time passes
				r.Tick(now)
				log = append(log, fmt.Sprintf("%v tick", now))
			} else {
				seqs[id]++
				hb := &Heartbeat{NodeID: id, Incarnation: 1, Seq: seqs[id]}
				p := ps[id]
				if p == nil {
					p = &refPhantom{first: now}
					ps[id] = p
					lastNew = now
				}
				p.last, p.gone = now, false
				switch x := rng.IntN(100); {
				case x < 4: // goodbye
					hb.Leaving, p.present, p.gone = true, false, true
				case x < 8: // its candidate left
					p.present = false
				default:
					// Mostly the same as last time: such heartbeats are
					// taken without evaluating (Rule.repeats).
					if !p.present || rng.IntN(3) == 0 {
						p.available, p.health = rng.IntN(10) < 8, rng.IntN(10) < 9
					}
					p.present = true
					hb.Candidates = []CandidateState{{Group: ClusterGroup, ID: id, Available: p.available, Healthy: p.health}}
				}
				r.Receive(now, id, hb)
				log = append(log, fmt.Sprintf("%v heartbeat %+v", now, *hb))
			}
			before, beforeSince := leader, since
			for _, c := range r.Take().Changes {
				if c.HasLeader() && c.Term != term+1 {
					t.Fatalf("run %d step %d: change %v: term %d after %d, want +1\n%s", run, step, c, c.Term, term, strings.Join(log, "\n"))
				}
				if !c.HasLeader() && c.Term != term {
					t.Fatalf("run %d step %d: change %v to no leader changed the term from %d", run, step, c, term)
				}
				leader, term, since = c.Leader, c.Term, now
			}
			if !warm && now >= cfg.Warmup && (now-lastNew >= cfg.Warmup || now >= 8*cfg.Warmup) {
				warm = true
			}
			want := ""
			if warm {
				want = refLeader(ps, now, cfg.Timeout)
			}
			// A cluster starting together (within 8×Warmup of the start;
			// the senders name no leader): a leader steps down for a lower
			// live, healthy candidate first heard after it was elected;
			// with no leader, it waits until no new sender has appeared for
			// Warmup, and for lower candidates not available yet.
			if want != "" && now < 8*cfg.Warmup {
				alive := func(p *refPhantom) bool { return p.present && p.health && refAlive(ps, p, now, cfg.Timeout) }
				if before != "" {
					for id, p := range ps {
						if id < before && alive(p) && p.first > beforeSince {
							want = ""
						}
					}
				} else {
					if now-lastNew < cfg.Warmup {
						want = ""
					}
					for id, p := range ps {
						if id < want && alive(p) && !p.available {
							want = ""
						}
					}
				}
			}
			if leader != want {
				t.Fatalf("run %d step %d at %v: leader %q, reference %q\n%s", run, step, now, leader, want, strings.Join(log, "\n"))
			}
			if l, _ := r.Leader(ClusterGroup); l.Leader != leader || l.Term != term {
				t.Fatalf("run %d step %d: Leader() = %+v, changes say %s@%d", run, step, l, leader, term)
			}
		}
	}
}

// TestRandomHistoriesConverge runs random crashes, restarts, partitions,
// link delays, leaves and availability flips on five simulated nodes,
// then heals everything and checks that every running node agrees on one
// leader and one term, the lowest eligible ID, and that on every node the
// term never went down and grew on every change of leader.
func TestRandomHistoriesConverge(t *testing.T) {
	seed := testSeed(t)
	for run := range 40 {
		rng := rand.New(rand.NewPCG(seed, uint64(run)))
		preempt := rng.IntN(3) != 0
		t.Run(fmt.Sprintf("run%d-preempt=%v", run, preempt), func(t *testing.T) {
			s := newSim(t)
			s.cfg.NoPreemption = !preempt
			names := []string{"n1", "n2", "n3", "n4", "n5"}
			for _, n := range names {
				s.line = "node " + n
				s.exec([]string{"node", n})
				s.run(s.now + time.Duration(rng.IntN(150))*time.Millisecond)
			}
			var hist []string
			for range 60 {
				n := names[rng.IntN(len(names))]
				var cmd []string
				switch x := rng.IntN(100); {
				case x < 12:
					cmd = []string{"crash", n}
				case x < 30:
					cmd = []string{"restart", n}
					if rng.IntN(2) == 0 {
						cmd = append(cmd, "persist")
					}
				case x < 36:
					cmd = []string{"stop", n}
				case x < 48:
					a, b := names[rng.IntN(5)], names[rng.IntN(5)]
					if a == b {
						continue
					}
					cmd = []string{"partition", a, b}
				case x < 55:
					cmd = []string{"heal"}
				case x < 62:
					cmd = []string{"delay", n, names[rng.IntN(5)], fmt.Sprintf("%dms", rng.IntN(80))}
					if cmd[1] == cmd[2] {
						continue
					}
				case x < 70:
					if !s.node(n).up {
						continue
					}
					cmd = []string{"available", n, ClusterGroup, fmt.Sprint(rng.IntN(3) != 0)}
				default:
					cmd = []string{"tick", fmt.Sprintf("%dms", rng.IntN(700))}
				}
				if (cmd[0] == "crash" || cmd[0] == "stop") && !s.node(n).up {
					continue
				}
				hist = append(hist, strings.Join(cmd, " "))
				s.line = strings.Join(cmd, " ")
				s.exec(cmd)
				s.checkTerms(t, hist)
				s.checkGroupNames(t, hist)
			}
			// Settle: heal, clear delays, every node available again.
			s.exec([]string{"heal"})
			clear(s.delays)
			for _, n := range s.nodes {
				if n.up {
					_ = n.rule.SetAvailable(s.now, ClusterGroup, n.id, true)
					s.drain(n)
				}
			}
			// A node that crashed while idle announced an idle period of
			// 10 Intervals (5 nodes) and times out after Timeout/Interval
			// of them, 10×Timeout: until then a live node may still name
			// it leader (the documented corner of idle heartbeats). The
			// settle outlasts that (2 s alone failed now and then).
			s.run(s.now + 2*time.Second + 10*s.cfg.Timeout)
			s.checkTerms(t, hist)
			s.line = "settled"
			want := ""
			for _, n := range s.nodes {
				if n.up && (want == "" || n.id < want) {
					want = n.id
				}
			}
			if want == "" {
				return
			}
			if preempt {
				s.expect("leader", map[string][]string{}, []string{ClusterGroup, want})
			}
			s.expect("agree", map[string][]string{}, []string{ClusterGroup})
			if t.Failed() {
				t.Logf("history:\n  %s\n%s", strings.Join(hist, "\n  "), s.dump())
			}
		})
	}
}

// checkGroupNames checks that each node's GroupNames lists the groups
// its Status does.
func (s *sim) checkGroupNames(t *testing.T, hist []string) {
	t.Helper()
	for _, n := range s.nodes {
		if !n.up {
			continue
		}
		var want []string
		for _, g := range n.rule.Status() {
			want = append(want, g.Name)
		}
		if got := n.rule.GroupNames(); !slices.Equal(got, want) {
			t.Fatalf("%s: GroupNames %v, Status lists %v\nhistory: %v", n.name, got, want, hist)
		}
	}
}

// checkTerms checks the changes each node recorded: a new leader always
// brings a higher term, the term never goes down.
func (s *sim) checkTerms(t *testing.T, hist []string) {
	t.Helper()
	for _, n := range s.nodes {
		for _, c := range n.changes[ClusterGroup] {
			// A node restarted with its saved terms joins the leadership
			// others give its saved term (it had no leader at that term).
			rejoined := n.restored && !c.Previous.HasLeader() && c.Term == c.Previous.Term
			switch {
			case c.Term < c.Previous.Term:
				t.Fatalf("%s: term went down: %v\nhistory: %v", n.name, c, hist)
			case c.HasLeader() && !c.same(c.Previous) && c.Term <= c.Previous.Term && !rejoined:
				t.Fatalf("%s: new leader without a higher term: %v\nhistory: %v", n.name, c, hist)
			}
			if c.HasLeader() {
				n.restored = false
			}
		}
		n.changes[ClusterGroup] = nil
	}
}

// observer is a rule of node "obs" (FastConfig) and send, which hands
// it the next heartbeat of node id: one available, healthy candidate of
// the cluster group.
func observer(t *testing.T) (r *Rule, cfg Config, send func(now time.Duration, id string)) {
	t.Helper()
	cfg = FastConfig()
	cfg.NodeID, cfg.Peer = "obs", "obs"
	r, err := NewRule(cfg, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	seqs := map[string]uint64{}
	send = func(now time.Duration, id string) {
		seqs[id]++
		r.Receive(now, id, &Heartbeat{NodeID: id, Incarnation: 1, Seq: seqs[id], Period: cfg.Interval,
			Candidates: []CandidateState{{Group: ClusterGroup, ID: id, Available: true, Healthy: true}}})
	}
	return r, cfg, send
}

// TestRepeatedHeartbeatsSkipEvaluation: once warm, heartbeats that
// repeat what their node said last are taken without evaluating every
// group, yet a node that falls silent is still timed out at the first
// heartbeat from another node after its deadline, with no Tick.
func TestRepeatedHeartbeatsSkipEvaluation(t *testing.T) {
	r, cfg, send := observer(t)
	var now time.Duration
	for now < 10*cfg.Warmup {
		now += cfg.Interval
		send(now, "a")
		send(now, "b")
	}
	if l, _ := r.Leader(ClusterGroup); l.Leader != "a" {
		t.Fatalf("leader %+v, want a", l)
	}
	r.Take()
	before := r.evals
	const rounds = 50
	for range rounds {
		now += cfg.Interval
		send(now, "a")
		send(now, "b")
	}
	// Without the skip: one evaluation per heartbeat (100). With it, one
	// at each deadline the heartbeats pass (a's and b's, every
	// Timeout−Interval or so).
	if n := r.evals - before; n > 2*rounds/3 {
		t.Fatalf("%d evaluations for %d unchanged heartbeats", n, 2*rounds)
	}
	// a falls silent; b's heartbeats go on. The first of b's heartbeats
	// after a's deadline elects b.
	lastA := now
	for now < lastA+cfg.Timeout+3*cfg.Interval {
		now += cfg.Interval / 2
		send(now, "b")
		if l, _ := r.Leader(ClusterGroup); l.Leader == "b" {
			if now >= lastA+cfg.Timeout+cfg.Interval/2 {
				t.Fatalf("b elected at %v, a's deadline was %v: late", now, lastA+cfg.Timeout)
			}
			return
		}
	}
	t.Fatalf("a silent since %v, b not elected by %v: %+v", lastA, now, r.Take())
}

// TestQuietTicksDoNotEvaluate: once a node is warm and its peers
// repeat themselves, a Tick evaluates only when a deadline has passed in
// the nodes as they are now, not at one that their heartbeats have
// since moved (the runner's timer fires at the deadline it saw when it
// last stepped), nor when the slack is set again unchanged. A node that
// stops heartbeating is still failed over at its deadline.
func TestQuietTicksDoNotEvaluate(t *testing.T) {
	r, cfg, send := observer(t)
	var now time.Duration
	for now < 10*cfg.Warmup {
		now += cfg.Interval
		send(now, "a")
		send(now, "b")
		r.Tick(now)
	}
	if l, _ := r.Leader(ClusterGroup); l.Leader != "a" {
		t.Fatalf("leader %+v, want a", l)
	}
	r.Take()
	before := r.evals
	// The runner ticks at the deadline it computed at its last step, and
	// at every Interval; a's and b's heartbeats move every deadline on.
	deadline, _ := r.NextDeadline()
	for range 50 {
		for _, at := range []time.Duration{now + cfg.Interval/2, now + cfg.Interval} {
			if deadline <= at {
				r.SetSlack(0)
				r.Tick(deadline)
				deadline, _ = r.NextDeadline()
			}
			r.Tick(at)
		}
		now += cfg.Interval
		send(now, "a")
		send(now, "b")
	}
	if n := r.evals - before; n != 0 {
		t.Fatalf("%d evaluations for 50 Intervals of unchanged heartbeats and passed-over deadlines", n)
	}
	r.SetSlack(cfg.Interval)
	r.Tick(now)
	if n := r.evals - before; n != 1 {
		t.Fatalf("%d evaluations after the slack changed, want 1", n)
	}
	// a falls silent; b goes on. The Tick at a's deadline elects b.
	lastA := now
	for {
		now += cfg.Interval
		send(now, "b")
		if at, _ := r.NextDeadline(); at <= now+cfg.Interval {
			r.Tick(at)
		}
		if l, _ := r.Leader(ClusterGroup); l.Leader == "b" {
			if want := lastA + cfg.Timeout + cfg.Interval; now > want {
				t.Fatalf("b elected by %v, a's deadline (with the slack) was %v", now, want)
			}
			return
		}
		if now > lastA+3*cfg.Timeout {
			t.Fatalf("a silent since %v, b not elected by %v", lastA, now)
		}
	}
}

// TestReceiveAllDecidesAsReceive: heartbeats handed over together
// (Rule.ReceiveAll: what queued up while the runner was busy) bring the
// leadership that taking them one by one (Receive) brings after the
// last, with one evaluation instead of one each. A random start of ten
// nodes, then random changes of availability, fed both ways to two
// observers in batches of random size. Compared once the cluster's
// start is over (8×Warmup, startingCluster): while nodes still appear,
// one by one may elect at a heartbeat in the middle of a batch that
// the next one (a new node: membership not settled) would have held
// back, and it keeps that leader; taken together, the batch holds it
// back. Both are the rule's answer to an order of arrival (compared
// from the start, about 5% of seeds failed so, all before 2.4 s).
func TestReceiveAllDecidesAsReceive(t *testing.T) {
	rng := rand.New(rand.NewPCG(testSeed(t), 2))
	cfg := FastConfig()
	cfg.NodeID, cfg.Peer = "obs", "obs"
	one, err := NewRule(cfg, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	all, _ := NewRule(cfg, 1, 0)
	const nodes = 10
	seqs := make([]uint64, nodes)
	avail := make([]bool, nodes)
	var now time.Duration
	var evalsOne, evalsAll int
	const steps = 400
	for step := range steps {
		now += time.Duration(rng.IntN(int(cfg.Interval/time.Millisecond))+1) * time.Millisecond
		var batch []Received
		for range 1 + rng.IntN(12) {
			i := rng.IntN(nodes)
			if rng.IntN(10) == 0 {
				avail[i] = !avail[i]
			}
			seqs[i]++
			id := fmt.Sprintf("n%02d", i)
			batch = append(batch, Received{id, &Heartbeat{NodeID: id, Incarnation: 1, Seq: seqs[i], Period: cfg.Interval,
				Candidates: []CandidateState{{Group: ClusterGroup, ID: id, Available: avail[i], Healthy: true}}}})
		}
		before := one.evals
		for _, m := range batch {
			one.Receive(now, m.Peer, m.Heartbeat)
		}
		evalsOne += one.evals - before
		before = all.evals
		all.ReceiveAll(now, batch)
		evalsAll += all.evals - before
		a, _ := one.Leader(ClusterGroup)
		b, _ := all.Leader(ClusterGroup)
		if now >= 8*cfg.Warmup && (a.Leader != b.Leader || a.Peer != b.Peer) {
			t.Fatalf("step %d at %v: one by one %s, all at once %s", step, now, orNone(a.Leader), orNone(b.Leader))
		}
		one.Take()
		all.Take()
	}
	if evalsAll > steps || evalsAll >= evalsOne {
		t.Fatalf("%d evaluations all at once (%d batches) against %d one by one: at most one a batch", evalsAll, steps, evalsOne)
	}
}

// TestMembersFollowCandidates: the members that evaluate builds in the
// order it keeps between evaluations (Rule.slots) are, after every
// input, those that the nodes' last heartbeats and the local candidates
// list, sorted by (ID, peer): random heartbeats of five senders whose
// candidates join, leave and change groups, goodbyes, local joins and
// leaves, and silences long enough that senders are forgotten (Retain).
// It also checks that exactly the senders heard within Retain are
// listed (advance walks the nodes only when one may be that old), and
// the members' Duplicate flags as senders take and drop another's node
// ID (duplicateNodes looks only while two entries share one).
func TestMembersFollowCandidates(t *testing.T) {
	rng := rand.New(rand.NewPCG(testSeed(t), 3))
	cfg := FastConfig()
	cfg.NodeID, cfg.Peer = "obs", "obs"
	cfg.Retain = 10 * cfg.Timeout
	r, err := NewRule(cfg, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	// want builds the members as plainly as possible.
	want := func() map[string][]Member {
		peers := map[string]int{cfg.NodeID: 1} // by node ID: this node and the live ones
		for _, rec := range r.nodes {
			if r.alive(rec) {
				peers[rec.nodeID]++
			}
		}
		out := map[string][]Member{}
		for _, c := range r.local {
			out[c.spec.Group] = append(out[c.spec.Group], Member{ID: c.spec.ID, Peer: cfg.Peer, Local: true, Alive: true,
				Available: c.available, Duplicate: peers[cfg.NodeID] > 1})
		}
		for _, rec := range r.nodes {
			if rec.leaving {
				continue
			}
			for _, c := range rec.cands {
				out[c.Group] = append(out[c.Group], Member{ID: c.ID, Peer: rec.peer, Available: c.Available, Alive: r.alive(rec),
					Duplicate: peers[rec.nodeID] > 1})
			}
		}
		for _, ms := range out {
			slices.SortFunc(ms, func(a, b Member) int { return memberLess(&a, &b) })
		}
		return out
	}
	seqs := map[string]uint64{}
	heard := map[string]time.Duration{}
	var now time.Duration
	for step := range 3000 {
		now += time.Duration(rng.IntN(int(cfg.Interval))) + 1
		switch x := rng.IntN(100); {
		case x < 3:
			now += time.Duration(rng.IntN(2 * int(cfg.Retain)))
		case x < 6:
			_ = r.Join(now, Spec{Group: "g" + fmt.Sprint(rng.IntN(2)), ID: fmt.Sprintf("obs:%d", rng.IntN(3)), Available: true})
		case x < 9:
			_ = r.Leave(now, "g"+fmt.Sprint(rng.IntN(2)), fmt.Sprintf("obs:%d", rng.IntN(3)))
		default:
			peer := fmt.Sprintf("p%d", rng.IntN(5))
			seqs[peer]++
			hb := &Heartbeat{NodeID: peer, Incarnation: 1, Seq: seqs[peer], Period: cfg.Interval, Leaving: rng.IntN(20) == 0}
			if rng.IntN(4) == 0 { // another's node ID, or this node's
				hb.NodeID = []string{"p0", "p1", "obs"}[rng.IntN(3)]
			}
			for i := range rng.IntN(4) { // distinct IDs (the order of equal ones is arbitrary)
				hb.Candidates = append(hb.Candidates, CandidateState{Group: "g" + fmt.Sprint(rng.IntN(2)),
					ID: fmt.Sprintf("%s:%d", peer, 2*i+rng.IntN(2)), Available: rng.IntN(2) == 0, Healthy: true})
			}
			r.Receive(now, peer, hb)
			heard[peer] = now
		}
		r.Tick(now) // a failed Join or Leave does not advance
		for peer, at := range heard {
			if _, listed := r.nodes[peer]; listed != (now-at < cfg.Retain) {
				t.Fatalf("step %d at %v: %s last heard at %v, listed %v (Retain %v)", step, now, peer, at, listed, cfg.Retain)
			}
		}
		got := r.members()
		w := want()
		if len(got) != len(w) {
			t.Fatalf("step %d: %d groups, want %d", step, len(got), len(w))
		}
		for g, ms := range w {
			if len(got[g]) != len(ms) {
				t.Fatalf("step %d: group %s has %d members, want %d", step, g, len(got[g]), len(ms))
			}
			for i, m := range ms {
				if h := got[g][i]; h.ID != m.ID || h.Peer != m.Peer || h.Local != m.Local || h.Available != m.Available || h.Alive != m.Alive || h.Duplicate != m.Duplicate {
					t.Fatalf("step %d: group %s member %d is %+v, want %+v", step, g, i, *h, m)
				}
			}
		}
	}
}
