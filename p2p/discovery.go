package p2p

import (
	"context"
	"fmt"
	"time"

	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/discovery/mdns"
	drouting "github.com/libp2p/go-libp2p/p2p/discovery/routing"
	dutil "github.com/libp2p/go-libp2p/p2p/discovery/util"
)

// DHT rendezvous timing. Small networks are the norm (a handful of sites),
// so the first rounds are quick and later ones settle to a slow pace.
const (
	// findFirst and findMax bound the FindPeers schedule: 1s after the
	// first connection, doubling to every 20s.
	findFirst = time.Second
	findMax   = 20 * time.Second
	// findTimeout bounds one FindPeers round.
	findTimeout = 15 * time.Second
	// advertiseRetryFirst and advertiseRetryMax bound the retries of a
	// failed Advertise (right after the first connection the routing
	// table may still be empty: identify has not finished).
	advertiseRetryFirst = time.Second
	advertiseRetryMax   = 30 * time.Second
	// advertiseMaxEvery caps the re-advertise period below the record
	// TTL: in a small network the peers holding our record restart, and
	// a lost record would otherwise stay lost for hours.
	advertiseMaxEvery = 10 * time.Minute
	// advertiseTimeout bounds one Advertise (a DHT provide query).
	advertiseTimeout = 30 * time.Second
)

// mdnsNotifee feeds mDNS results into the known-peer set. The mDNS
// service calls it on goroutines of its own, possibly after Close.
type mdnsNotifee struct{ n *Node }

var _ mdns.Notifee = mdnsNotifee{}

func (m mdnsNotifee) HandlePeerFound(ai peer.AddrInfo) {
	m.n.addKnown(ai, sourceMDNS)
}

func (n *Node) startMDNS() error {
	svc := mdns.NewMdnsService(n.host, n.names.mdnsService, mdnsNotifee{n})
	if err := svc.Start(); err != nil {
		return fmt.Errorf("p2p: start mDNS (service %s): %w; hosts without a multicast interface must disable mDNS", n.names.mdnsService, err)
	}
	n.mdns = svc
	return nil
}

func (n *Node) startDHT() error {
	d, err := dht.New(n.host,
		// Server mode: in auto mode a node behind NAT or on a LAN stays a
		// client and the routing tables of a small network stay empty.
		dht.Mode(dht.ModeServer),
		// Our own prefix keeps us out of the public IPFS DHT and apart from
		// other environments.
		dht.ProtocolPrefix(n.names.dhtPrefix),
		dht.BootstrapPeersFunc(n.connectedPeers),
	)
	if err != nil {
		return fmt.Errorf("p2p: start DHT: %w", err)
	}
	n.dht = d
	return nil
}

// connectedPeers seeds the DHT: a small network has no bootstrap nodes,
// the peers we are connected to are the best there is.
func (n *Node) connectedPeers() []peer.AddrInfo {
	ids := n.host.Network().Peers()
	out := make([]peer.AddrInfo, 0, len(ids))
	for _, id := range ids {
		out = append(out, n.host.Peerstore().PeerInfo(id))
	}
	return out
}

// waitFirstConn blocks until a peer is connected; false when the node
// closes first.
func (n *Node) waitFirstConn() bool {
	select {
	case <-n.firstConn:
		return true
	case <-n.ctx.Done():
		return false
	}
}

// sleep waits for d or until the node closes; false when it closes.
func (n *Node) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-n.ctx.Done():
		return false
	}
}

// advertiseLoop announces this node under the env's rendezvous string,
// starting once a peer is connected (advertising into an empty routing
// table only fails). It replaces discovery/util.Advertise, whose goroutine
// nobody could wait for.
func (n *Node) advertiseLoop() {
	defer n.wg.Done()
	if !n.waitFirstConn() {
		return
	}
	if err := n.dht.Bootstrap(n.ctx); err != nil {
		n.log.Debug("DHT bootstrap", "err", err)
	}
	rd := drouting.NewRoutingDiscovery(n.dht)
	retry := advertiseRetryFirst
	for {
		ctx, cancel := context.WithTimeout(n.ctx, advertiseTimeout)
		ttl, err := rd.Advertise(ctx, n.names.rendezvous)
		cancel()
		var wait time.Duration
		if err != nil {
			if n.ctx.Err() != nil {
				return
			}
			n.log.Debug("DHT advertise failed", "err", err, "retry", retry)
			wait = retry
			retry = min(2*retry, advertiseRetryMax)
		} else {
			n.log.Debug("DHT advertised", "ns", n.names.rendezvous, "ttl", ttl)
			wait = min(7*ttl/8, advertiseMaxEvery)
			retry = advertiseRetryFirst
		}
		if !n.sleep(wait) {
			return
		}
	}
}

// findEvery is the slowest pace of findLoop: findMax, or half a second
// per connected peer when longer (200 peers: every 100 s). Each round
// asks the DHT for every node's record, so its cost grows with the
// cluster; a large cluster's nodes mostly know one another already
// (connections, the address exchange).
func (n *Node) findEvery() time.Duration {
	return max(findMax, time.Duration(len(n.host.Network().Peers()))*findPerPeer)
}

// findPerPeer: see findEvery.
const findPerPeer = 500 * time.Millisecond

// findLoop looks up the env's rendezvous string and adds what it finds to
// the known peers.
func (n *Node) findLoop() {
	defer n.wg.Done()
	if !n.waitFirstConn() {
		return
	}
	rd := drouting.NewRoutingDiscovery(n.dht)
	every := findFirst
	for {
		if !n.sleep(every) {
			return
		}
		every = min(2*every, n.findEvery())
		ctx, cancel := context.WithTimeout(n.ctx, findTimeout)
		found, err := dutil.FindPeers(ctx, rd, n.names.rendezvous)
		cancel()
		if err != nil {
			if n.ctx.Err() != nil {
				return
			}
			n.log.Debug("DHT find peers failed", "err", err)
			continue
		}
		for _, ai := range found {
			if ai.ID == n.self || len(ai.Addrs) == 0 {
				continue
			}
			n.addKnown(ai, sourceDHT)
		}
	}
}
