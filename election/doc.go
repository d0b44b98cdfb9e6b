// Package election elects one leader per group of candidates, with no
// consensus round: every node computes
//
//	leader = the lowest candidate ID among alive, healthy, available candidates
//
// from the heartbeats it receives, so nodes that hear the same heartbeats
// agree. The cluster itself is the built-in group "cluster", whose
// candidates are the nodes (candidate ID = node ID); services and
// endpoints join groups of their own (candidate ID "<node-id>" or
// "<node-id>:<instance>").
//
// # Walk-through
//
// The rule is a pure state machine, Rule (no goroutines, no network, no
// clock; compare etcd-io/raft's RawNode): inputs are method calls stamped
// with a monotonic time — Receive (a heartbeat), Join, Leave,
// SetAvailable, ReportHealth, Tick — and outputs are the leadership of
// each group (Leader, Status), the heartbeat to send (Heartbeat) and what
// changed (Take). Its tests are scenario scripts (testdata/*.txt, see
// scenario_test.go) that drive several rules over a simulated network
// and clock, and property tests against a plain reference.
//
// The Runner drives a Rule (compare raft's node.go): it owns the
// goroutines, sends a heartbeat every Interval (every idle period while
// no local candidate leads or stands next in line) over a Transport (in
// Starling: gossipsub topic "starling/<env>/election", see p2p.Topic,
// whose validator drops heartbeats of untrusted peers), stamps every
// received heartbeat with its own monotonic clock, ticks the rule at its
// deadlines, and delivers changes to Watchers. Its goroutines only call
// two steps, step (timer or kick) and handle (a message), which its
// tests call themselves instead, over a synchronous fake network and a
// clock they advance (runner_test.go): no sleeps, no wall clock.
//
//	r, err := election.New(cfg, topic)      // joins the cluster group
//	r.SetNodeAvailable(true)                 // once the node holds the current state
//	c, err := r.Join(election.Spec{Group: "opcua", Available: true})
//	w := c.Watch()
//	for {
//		ev, err := w.Next(ctx)               // current state first, then each change
//		if ev.IsLeader { ... start serving with fencing token ev.Term ... }
//	}
//	c.Leave()                                // the next candidate takes over at once
//
// # Health and availability
//
// A node counts a candidate alive while it has received a heartbeat of
// the candidate's node within Timeout, measured on its own monotonic
// clock at reception (clock skew between nodes cannot fake health).
// Stalls are allowed for on both sides (compare HashiCorp's Lifeguard):
// a node whose own timers or messages ran late lately extends its
// timeouts by that much and announces it in its heartbeats' period, so
// that its peers extend theirs for it; and a node that stops hearing
// several nodes at once, all of them sending every Interval until the
// same moment, takes that for its own stall and waits up to Timeout
// more before it counts them failed.
// A node whose candidates neither lead nor stand next in line
// heartbeats only every idle period and counts alive for Timeout/Interval
// of them; once a node's view puts one of its candidates in the lead or
// next in line, it must be heard within 2×Timeout (a live one turns
// fast at once, as does one a live peer names its leader), or it counts
// as failed until it is heard again: a partition that takes the leader
// and the next in line away fails over in about 3×Timeout, not an idle
// timeout. A failed probation raises an alarm: for 4×Timeout the node
// heartbeats every Interval and puts every idle node on probation; its
// side sees the same failure and does the same, so all the cut-off
// candidates fail together, in about 5×Timeout whatever their number.
// A candidate is eligible when it is alive, reports itself healthy, and
// has marked itself available. Heartbeats never enter the replicated
// store. Candidates held by another process use a TTL: without a health
// report within it, the candidate leaves by itself.
//
// A (re)started node first listens for Warmup: meanwhile it reports no
// leader and its candidates say they are not available, so it neither
// announces a leader from a partial picture nor preempts before it knows
// the current term. While no peer knows of a leader, it then waits for
// live peers that are still listening and until no new node has appeared
// for Warmup (at most 8×Warmup from its start), so that a cluster
// started all at once, or one node after another, elects once from the
// full picture with no transient leader. A leader named only by peers
// that started with it (less than 2×Warmup apart: their incarnations
// are start times) does not count as known: on a busy machine connections
// take seconds to come up, and such a peer may have elected from the
// few nodes it had heard. While the cluster starts, the cluster group
// also waits for lower nodes that are up but not yet available (joining
// by state transfer), and a node that elected and then first hears of a
// lower node steps down (reason "starting", same term) and elects again
// once no new node has appeared for Warmup: one more term for all the
// nodes whose connections came up late, not one per node.
//
// A candidate that joins a group settles before it counts: its node
// announces it as settling, not available, until it has received from
// every live node the second heartbeat after the join (at most Warmup).
// By then it knows any candidate another node joined just before, so it
// does not elect its own for a moment; and a group with no leader waits
// for a lower candidate that is still settling. So a fleet that starts a
// service everywhere at once elects the lowest ID directly. (Joins closer
// together than the network delay can still give two leaders for up to
// an interval: the rule is not consensus.)
//
// A node that stops says goodbye (its heartbeat with Leaving set): its
// candidates are gone at once on every node that receives it, and a
// candidate that leaves is missing from the next heartbeat, sent at once.
// Either way the next leader takes over in one gossip hop instead of
// after Timeout.
//
// Two peers using the same node ID are reported loudly (NoticeDuplicateNode,
// logged at ERROR, shown in group status); their candidates are ordered
// by peer ID, the same way on every node, so only one of them leads.
//
// # Preemption
//
// Preemption is on by default: the leader is always the lowest eligible
// ID, so a restarted lower ID takes leadership back once it is warm,
// healthy and available. The leader then depends on the current inputs
// only, which makes agreement (also after a partition) simple, at the
// price of a second handover after the lowest node restarts.
// Config.NoPreemption keeps an eligible leader instead; leaderships that
// compete after a partition are then resolved by the higher term, then
// the lower ID.
//
// # Terms
//
// Every leadership has a term, the same on every node, including nodes
// that joined late. Heartbeats carry each sender's view of every group
// (leader, term). When a node's leader for a group changes to L:
//
//   - if a live node already gives L's leadership a term t that is above
//     this node's term and not below any term a live node holds for the
//     group, the node adopts t (it joins a leadership others already
//     computed: a late joiner, or a node whose timeout fired a little
//     after the others');
//   - otherwise it opens a new term: the highest term held for the group
//     by itself or any live node, plus one.
//
// While the leader stays the same, a node adopts a higher term that a
// live node gives to that same leadership. When no candidate is eligible
// the group has no leader and keeps its term; the next leader gets a
// higher one. Terms can be kept across restarts (Config.Terms).
//
// Guarantees:
//
//   - On each node the term never decreases, and every change to a new
//     leader comes with a higher term. So a stale leader that hears from
//     the current one sees a higher term, and work stamped with the term
//     it ran under can be fenced.
//   - Nodes that hear each other converge to the same leader and term
//     within one heartbeat of agreeing on the inputs.
//   - During a partition each side may elect its own leader (the price of
//     availability) and terms diverge. After the heal, every node ends
//     with one leader and one term, which is at least every term either
//     side used and strictly above the term of every leadership that
//     ended (the losing side's). The surviving leader keeps its term
//     unless the losing side had reached an equal or higher one; then
//     the term rises for the same leader (Change.Reason "term"), the only
//     case where the term changes without a change of leader. A node cut
//     off from the leader alone (a one-sided link failure) counts as a
//     partition of its own.
//
// # Timings
//
// LANConfig (the default), WANConfig and FastConfig trade failover speed
// against false failovers; see Config. With LAN timings (Interval 200ms,
// Timeout 800ms) a crashed leader is replaced within 0.6-0.8 s, and any
// pause of a node shorter than Timeout−Interval (600 ms) goes unnoticed.
package election
