package p2p

import (
	"sync"

	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"
)

// gater refuses every connection with a blocked peer, in both
// directions, at every checkpoint libp2p offers. It does not close
// connections that already exist: Node.Block does that.
//
// libp2p calls it from its own goroutines; it takes only its own lock.
type gater struct {
	mu      sync.RWMutex
	blocked map[peer.ID]struct{}
	// banned, if set, refuses a peer too (misbehavior.isBanned).
	banned func(peer.ID) bool
	// addrDial, if set, may refuse a dial to one address of a peer
	// (Node.allowAddrDial: no direct dial beside a relayed connection
	// except a hole punch's).
	addrDial func(peer.ID, multiaddr.Multiaddr) bool
}

var _ connmgr.ConnectionGater = (*gater)(nil)

func newGater() *gater {
	return &gater{blocked: make(map[peer.ID]struct{})}
}

func (g *gater) block(id peer.ID) {
	g.mu.Lock()
	g.blocked[id] = struct{}{}
	g.mu.Unlock()
}

// unblock reports whether id was blocked.
func (g *gater) unblock(id peer.ID) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	_, ok := g.blocked[id]
	delete(g.blocked, id)
	return ok
}

func (g *gater) isBlocked(id peer.ID) bool {
	g.mu.RLock()
	defer g.mu.RUnlock()
	_, ok := g.blocked[id]
	return ok || (g.banned != nil && g.banned(id))
}

func (g *gater) InterceptPeerDial(p peer.ID) bool { return !g.isBlocked(p) }

func (g *gater) InterceptAddrDial(p peer.ID, a multiaddr.Multiaddr) bool {
	return !g.isBlocked(p) && (g.addrDial == nil || g.addrDial(p, a))
}

// InterceptAccept cannot know the peer yet (the handshake has not run);
// InterceptSecured decides.
func (g *gater) InterceptAccept(network.ConnMultiaddrs) bool { return true }

func (g *gater) InterceptSecured(_ network.Direction, p peer.ID, _ network.ConnMultiaddrs) bool {
	return !g.isBlocked(p)
}

func (g *gater) InterceptUpgraded(c network.Conn) (bool, control.DisconnectReason) {
	return !g.isBlocked(c.RemotePeer()), 0
}
