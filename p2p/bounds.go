package p2p

import (
	"cmp"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/starling-sync/starling/internal/jitter"
)

// Bounded connections (Config.MaxPeers). A node dials the peers it knows
// of only while it has fewer than MaxPeers connections, and closes the
// least preferred ones when dialled-in connections bring it above
// highWater; between the two it neither dials nor closes, so a node
// that closes a connection (and drops to MaxPeers) takes the peer's
// re-dial, if any, without closing again.
//
// Which peers. Every pair of nodes ranks the same: a number hashed from
// the two IDs (pairRank), lowest preferred. A node dials its
// lowest-ranked peers and closes its highest-ranked connections, so two
// nodes agree on the links they keep: a link one side prefers to keep is
// one the other side is less likely to close, and the pairs kept form a
// random graph, which gossip crosses in a few hops.
//
// Settling. A node that closes connections for its bound keeps the
// links it prefers; the peers it closed, now below their own bound,
// would dial their best candidate, often that same node, straight back,
// and each re-dial makes it close another of its links: the partition
// suite saw every node of a 7-node cluster with MaxPeers 2 close
// connections every few seconds for minutes after a heal. So a peer
// that closed a connection (one this node neither closed nor cut) is
// dialled for the bound after the other candidates for refusedFor.
//
// The ring. Links kept by rank alone need not join every node: each
// node's bound can fill with links inside one group, and then nothing
// makes any node reach across. The partition suite's 7-node cluster with
// MaxPeers 2 started so and stayed split (n1 n2 n7 | n3 n4 n5 n6): 11 s
// after start n3 and n5 trimmed in the same liveness round, each closing
// its highest-ranked links, which happened to be every link across;
// every node was then at its bound or refilled from its own side, and a
// known peer counts as unheard only after unheardAfter. So the nodes
// also keep a ring ordered by peer ID: a node dials its successor (the
// next known peer ID above its own, wrapping, whose last dial did not
// fail) whatever its count, and never closes for the bound the link to
// its successor or to its predecessor (the closest connected peer below
// it). Every node keeps a link to its successor, so once the nodes know
// of one another (mDNS, static peers, the address exchange) the links
// include a ring through all of them, whatever the ranks keep: one
// component. It costs each node two links of its bound, and a dial
// beyond it only when its successor changes (it learns of a closer peer
// ID, or the successor fails): no dial storm at any size. The nearest
// peer between the node and its successor, whose dial failed and that
// was not heard of since (ringAlive), is dialled beyond the bound too,
// at its backoff, so that the rings that formed on each side of a
// partition, each skipping the peers across, join again once those
// answer. Ring dials take none of the bound's room: across a partition
// they hang, as dials to lost peers do (startDueDials).
//
// Staying whole. Below the bound is all that matters in a steady
// cluster. Two things would otherwise leave a cluster split for good
// once it is split: after a partition every node refills its
// connections from its own side, and stops dialling once full. So a
// node also dials, whatever its count:
//   - its successor on the ring, and the nearest failed peer before it
//     (above);
//   - a peer AddPeer names (once; after that as any static peer);
//   - a peer whose connection its liveness check cut (the peer fell
//     silent: a partition or a crash), until gossip written by that peer
//     arrives again, through any path (it is reachable, no need), or it
//     has been gone for exchangeForget; a connection the peer closed
//     (its own bound, a restart) is not re-dialled for this;
//   - a known peer not heard of (connected, or gossip written by it) for
//     unheardAfter, a safety net for splits no cut connection shows
//     (nodes that were never connected across).

const (
	// unheardAfter: longer than the longest idle gap of any node's
	// gossip (node reports every 50 s at 200 nodes, election heartbeats
	// every 20 s at 200 nodes on the LAN preset), so a live node reached
	// through others is never dialled for it.
	unheardAfter = 5 * time.Minute
	// defaultTrimGrace: a connection younger than this is not closed for
	// the bound. A start brings many connections at once; they settle
	// before any is closed, and a peer that just dialled gets to exchange
	// addresses and gossip first.
	defaultTrimGrace = 10 * time.Second
	// refusedFor: how long a peer that closed a connection is dialled
	// for the bound after the other candidates. It keeps the links it
	// preferred until one of them goes, which in a steady cluster is
	// rare; a minute spans several trim graces, so the links settle
	// before it passes, and a peer that closed for another reason (a
	// restart) dials this node itself.
	refusedFor = time.Minute
)

// highWater is the connection count above which a node closes
// connections, down to MaxPeers.
func (n *Node) highWater() int { return n.cfg.MaxPeers + n.cfg.MaxPeers/2 }

// pairRank orders the links of a node: the same number for the pair
// (a, b) on both sides, evenly spread over [0, 1).
func pairRank(a, b peer.ID) float64 {
	if a > b {
		a, b = b, a
	}
	return jitter.Fraction(string(a) + string(b))
}

// rank is the link's pairRank. Static peers rank as any other: every
// node of a large cluster may list the same few bootstrap nodes, which
// cannot keep a connection to each; a node that ranked them first would
// dial them again each time they closed its connection for their bound.
// A node never closes its own static peers' connections for the bound.
func (n *Node) rank(id peer.ID) float64 { return pairRank(n.self, id) }

// beyondBound reports whether a peer that is not connected is dialled
// whatever the node's count (see the top of this file), and, when it is
// not, the moment its silence will make it so: unheardAfter after the
// node last knew it alive (connected, gossip written by it) or learnt
// of it. Callers hold n.mu.
func (n *Node) beyondBound(id peer.ID, k *knownPeer, now time.Time) (bool, time.Time) {
	if k.asked {
		return true, time.Time{}
	}
	authored := n.traffic.lastAuthored(id)
	if k.lost {
		if authored.After(k.lastSeen) || now.Sub(k.lastSeen) > exchangeForget {
			k.lost = false // heard of again, or gone for good
		} else {
			return true, time.Time{}
		}
	}
	heard := k.since
	for _, t := range []time.Time{k.lastSeen, authored} {
		if t.After(heard) {
			heard = t
		}
	}
	at := heard.Add(unheardAfter)
	return !now.Before(at), at
}

// ringPeers returns the node's neighbours on the ring (see the top of
// this file). succ is the successor, the first known peer after this
// node in peer ID order (wrapping) that is alive as far as this node
// can tell (ringAlive), then the nearest peer before it, which is not
// (one is enough to join two rings; each more would be one more dial
// across a partition, and one more connection to trim after it). pred is
// the predecessor: the closest connected peer below this node. A closer
// peer below that is not connected has no link to spare; once it
// connects (it dials this node as its successor) it is the one kept.
// Blocked peers and peers of another environment are not on the ring.
// Callers hold n.mu.
func (n *Node) ringPeers() (succ []peer.ID, pred peer.ID) {
	before := func(a, b peer.ID) bool { return ringBefore(n.self, a, b) }
	var first peer.ID
	for id, k := range n.known {
		if !n.onRing(id, k) {
			continue
		}
		if (first == "" || before(id, first)) && n.ringAlive(id, k) {
			first = id
		}
		if k.connected && (pred == "" || before(pred, id)) {
			pred = id
		}
	}
	if first == "" {
		return nil, pred
	}
	succ = []peer.ID{first}
	var skipped peer.ID // the nearest peer before first: not alive
	for id, k := range n.known {
		if before(id, first) && n.onRing(id, k) && (skipped == "" || before(id, skipped)) {
			skipped = id
		}
	}
	if skipped != "" {
		succ = append(succ, skipped)
	}
	return succ, pred
}

// ringBefore reports whether a comes before b going up the ring from
// self: peer IDs above self in order, then those below it.
func ringBefore(self, a, b peer.ID) bool {
	if (a > self) != (b > self) {
		return a > self
	}
	return a < b
}

// ringAlive: the peer is connected, or its last dial did not fail, or
// gossip written by it arrived since it was last connected (it came
// back from a restart or a partition, or only a relay reaches it).
// Without the last, a node that failed to dial its successor while the
// successor was down would skip it once back, and dial the next peer
// up instead; that peer keeps its predecessor link to the one skipped,
// closes this node's link for its bound, and is dialled again, for as
// long as the skipped peer stays failed in this node's view. Callers
// hold n.mu.
func (n *Node) ringAlive(id peer.ID, k *knownPeer) bool {
	return k.connected || k.failures == 0 || n.traffic.lastAuthored(id).After(k.lastSeen)
}

// onRing reports whether a known peer takes part in the ring. Callers
// hold n.mu.
func (n *Node) onRing(id peer.ID, k *knownPeer) bool {
	return k.problem != ProblemEnvironment && !n.gater.isBlocked(id)
}

// boundedDial is a dial due that only the bound holds back.
type boundedDial struct {
	dialJob
	rank    float64
	failed  bool // the last dial failed
	refused bool // the peer closed a connection within refusedFor
}

// pickBounded chooses up to room of the candidates: first those whose
// last dial did not fail and that did not close a connection lately,
// then those that did (a peer above its own bound would close again),
// then those whose dial failed (a dead peer must not take the room of
// live ones), each part lowest rank first.
func pickBounded(cands []boundedDial, room int) []dialJob {
	if room <= 0 {
		return nil
	}
	class := func(c boundedDial) int {
		switch {
		case c.failed:
			return 2
		case c.refused:
			return 1
		}
		return 0
	}
	slices.SortFunc(cands, func(a, b boundedDial) int {
		return cmp.Or(cmp.Compare(class(a), class(b)), cmp.Compare(a.rank, b.rank))
	})
	out := make([]dialJob, 0, min(room, len(cands)))
	for _, c := range cands[:min(room, len(cands))] {
		out = append(out, c.dialJob)
	}
	return out
}

// trimCand is a connected peer that the bound may close.
type trimCand struct {
	id   peer.ID
	rank float64
	// spared: never closed for the bound (a static peer, or a ring
	// neighbour).
	spared  bool
	upSince time.Time
}

// pickTrim chooses the connections to close when there are more than
// high of conns: highest rank first, down to keep, sparing the spared
// and connections younger than grace (fewer may go then).
func pickTrim(conns []trimCand, keep, high int, grace time.Duration, now time.Time) []peer.ID {
	if len(conns) <= high {
		return nil
	}
	excess := len(conns) - keep
	slices.SortFunc(conns, func(a, b trimCand) int { return cmp.Compare(b.rank, a.rank) })
	var out []peer.ID
	for _, c := range conns {
		if len(out) == excess {
			break
		}
		if c.spared || now.Sub(c.upSince) < grace {
			continue
		}
		out = append(out, c.id)
	}
	return out
}

// trim closes the connections above the bound (pickTrim), but those of
// static peers and ring neighbours. The liveness loop runs it every
// PingInterval.
func (n *Node) trim(now time.Time) {
	n.mu.Lock()
	succ, pred := n.ringPeers()
	var conns []trimCand
	for id, k := range n.known {
		if k.connected {
			spared := k.static || id == pred || slices.Contains(succ, id)
			conns = append(conns, trimCand{id: id, rank: n.rank(id), spared: spared, upSince: k.upSince})
		}
	}
	closing := pickTrim(conns, n.cfg.MaxPeers, n.highWater(), n.cfg.trimGrace, now)
	for _, id := range closing {
		n.known[id].closing = true // the peer did not refuse it (peers.go)
	}
	n.mu.Unlock()
	if len(closing) == 0 {
		return
	}
	n.log.Info("closing connections above the peer bound", "connections", len(conns), "closing", len(closing),
		"max_peers", n.cfg.MaxPeers)
	for _, id := range closing {
		if err := n.host.Network().ClosePeer(id); err != nil {
			n.log.Debug("close a connection above the peer bound", "peer", id, "err", err)
		}
	}
}
