package p2p

import "github.com/libp2p/go-libp2p/core/peer"

// trust is Config.Trusted (and the chaos control build's DropInbound)
// as every part of the node checks it: replication, topics, streams,
// gossipsub's peer filter and score, and bitswap.
type trust struct {
	self peer.ID
	set  map[peer.ID]struct{} // empty: every peer is trusted
	drop func(peer.ID) bool   // Config.DropInbound
	// banned, if set, refuses a peer's data (misbehavior.isBanned).
	banned func(peer.ID) bool
}

func newTrust(self peer.ID, trusted []peer.ID, drop func(peer.ID) bool) *trust {
	t := &trust{self: self, set: make(map[peer.ID]struct{}, len(trusted)), drop: drop}
	for _, id := range trusted {
		t.set[id] = struct{}{}
	}
	return t
}

// trusts reports whether this node exchanges data with id, either way.
func (t *trust) trusts(id peer.ID) bool {
	if id == t.self || len(t.set) == 0 {
		return true
	}
	_, ok := t.set[id]
	return ok
}

// accepts reports whether data from id is taken: a trusted peer that
// Config.DropInbound does not name.
func (t *trust) accepts(id peer.ID) bool {
	if id != t.self && t.banned != nil && t.banned(id) {
		return false
	}
	return t.trusts(id) && (id == t.self || t.drop == nil || !t.drop(id))
}

// untrustedList is gossipsub's blacklist (pubsub.WithBlacklist): every
// peer this node does not trust. Gossipsub keeps no session with such a
// peer and opens no stream to it, so it is sent nothing, and its
// messages are dropped. The peer filter and a score below the publish
// threshold, used before, left a gap: a peer whose subscription arrived
// before gossipsub had opened its own stream to it had no score yet (0,
// above the threshold), and a flood publication went to it
// (TestUntrustedPeerGetsNothing failed so once in a CI run).
type untrustedList struct{ t *trust }

func (l untrustedList) Contains(id peer.ID) bool { return !l.t.trusts(id) }

// Add is gossipsub's BlacklistPeer, which this node does not call: trust
// is its configuration's, and misbehaviour goes through the score.
func (l untrustedList) Add(peer.ID) bool { return false }
