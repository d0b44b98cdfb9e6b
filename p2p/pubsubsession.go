package p2p

import (
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Gossip sessions.
//
// Gossipsub takes a peer on when identify reports it (or reports new
// protocols of it), and opens its stream to the peer then. When that
// stream fails to open while the peer stays connected, gossipsub forgets
// the peer and does not try again until the next such report
// (libp2p/go-libp2p-pubsub#433, open since 2021): the pair stays
// connected with no gossip between them, that side not in the other's
// mesh and sent none of its flood publications. It happens when a second
// connection replaces the first while the stream opens (both sides
// dialled at once; the bound or the liveness check closed one, and the
// re-dial opened another) or when a stream cannot open in time on a
// loaded host. In a simulation of 200 nodes in one process, a node kept
// 58 connections and received 42 messages in six minutes while its
// neighbours received 1,500: a write never reached it.
//
// sessionLoop therefore checks, every PingInterval, that gossipsub has
// a session with each connected peer that speaks it; a peer missing
// at two checks in a row is reported to gossipsub again (then ever less
// often while it stays missing: renewDue), as identify
// reports a peer's new protocols (event.EvtPeerProtocolsUpdated), and
// gossipsub opens a new stream. The other subscribers to that event
// (the DHT, AutoNAT) re-read the peer's protocols, which is harmless.
type sessionCheck struct {
	emit event.Emitter
	// misses counts, for each peer missing at the last check, the
	// checks in a row it has been missing at.
	misses map[peer.ID]int
}

// gossipProtocols are the protocols by which a peer speaks gossipsub.
var gossipProtocols = pubsub.GossipSubDefaultProtocols

func newSessionCheck(h interface {
	EventBus() event.Bus
}) (*sessionCheck, error) {
	em, err := h.EventBus().Emitter(new(event.EvtPeerProtocolsUpdated))
	if err != nil {
		return nil, err
	}
	return &sessionCheck{emit: em, misses: make(map[peer.ID]int)}, nil
}

// sessionLoop runs checkSessions every PingInterval until the node
// closes. It is a loop of its own: gossipsub answers ListPeers from its
// event loop, which a loaded process can hold for seconds (200 nodes in
// one process: over a minute), and the liveness loop must not wait on
// it.
func (n *Node) sessionLoop() {
	t := time.NewTicker(n.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
			n.checkSessions()
		}
	}
}

// checkSessions reports to gossipsub again the connected peers it has
// had no session with at this check and those before, as renewDue
// says; it returns how many.
func (n *Node) checkSessions() int {
	sc := n.sessions
	if sc == nil || n.ps == nil {
		return 0
	}
	in := make(map[peer.ID]bool)
	for _, p := range n.ps.ListPeers("") {
		in[p] = true
	}
	netw := n.host.Network()
	misses := make(map[peer.ID]int)
	renewed := 0
	for _, p := range netw.Peers() {
		// Gossipsub takes on neither a relayed (limited) connection nor
		// a peer it does not trust (untrustedList).
		if in[p] || netw.Connectedness(p) != network.Connected || !n.trust.trusts(p) {
			continue
		}
		speaks, err := n.host.Peerstore().SupportsProtocols(p, gossipProtocols...)
		if err != nil || len(speaks) == 0 {
			continue // identify has not reported it yet, or it does not speak gossipsub
		}
		m := sc.misses[p] + 1
		misses[p] = m
		if !renewDue(m) {
			continue
		}
		n.log.Info("gossipsub had no session with a connected peer: reporting it again", "peer", p)
		if err := sc.emit.Emit(event.EvtPeerProtocolsUpdated{Peer: p, Added: speaks}); err != nil {
			n.log.Warn("reporting a peer to gossipsub again", "peer", p, "err", err)
			continue
		}
		renewed++
	}
	sc.misses = misses
	n.sessionsRenewed.Add(uint64(renewed))
	return renewed
}

// renewDue reports whether a peer missing from gossipsub at m checks in
// a row is reported again now: at the second (at the first its stream
// may still be opening), then after 1, 2, 4, ... 32 checks more, and
// every 32 from then on. A stream that keeps failing to open (a loaded
// host) is retried ever less often, not every check.
func renewDue(m int) bool {
	k := m - 1
	return k >= 1 && (k&(k-1) == 0 || k%32 == 0)
}

// GossipSessions is how many peers gossipsub has a session with now, and
// how many sessions lost while connected the session check has renewed
// since the node started.
func (n *Node) GossipSessions() (now int, renewed uint64) {
	if n.ps == nil {
		return 0, 0
	}
	return len(n.ps.ListPeers("")), n.sessionsRenewed.Load()
}
