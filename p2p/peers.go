package p2p

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
	"github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// protectTag marks known peers in the connection manager, which then
// never trims their connections.
const protectTag = "starling-known"

// PeerInfo describes a peer the node knows.
type PeerInfo struct {
	ID        peer.ID
	Addrs     []multiaddr.Multiaddr
	Connected bool
	Static    bool      // from Config.Peers or AddPeer
	Blocked   bool      // Block was called for it
	LastSeen  time.Time // last time a connection was up (zero if never)
	Failures  int       // consecutive failed dials
	NextDial  time.Time // when the re-dial loop tries again (zero if connected)
	// Conn is how the peer is connected: direct, hole-punched or relayed
	// (empty when not connected).
	Conn ConnKind
	// Problem classifies why the peer cannot be used (another network key
	// or environment, unreachable, ...); ProblemNone while connected or
	// never dialled. DialError is the last dial error, or the refusal.
	Problem   Problem
	DialError string
	// RTTs are the round trips of the last liveness pings that the peer
	// answered (up to rttSamples, oldest first; one every rttEvery at
	// least, while connected): what a slow or jittery link takes out of
	// the election's pause budget. Empty before the first answer.
	RTTs []time.Duration
}

// knownPeer is the node's record of a peer it keeps connected. Guarded by
// Node.mu.
type knownPeer struct {
	static  bool
	addrs   []multiaddr.Multiaddr // configured or discovered
	learned []multiaddr.Multiaddr // listen addresses the peer announced (identify)

	connected bool
	upSince   time.Time // start of the current connection
	lastSeen  time.Time
	lastPong  time.Time // last successful ping (or connect time)
	pinging   bool
	rtts      []time.Duration // PeerInfo.RTTs
	rtt       rttEstimate     // the pongs' round trips, smoothed (silence)
	rttAt     time.Time       // when the last RTT sample was taken

	dialing bool
	// takesRoom: the dial under way, started at dialSince, counts
	// against the bound's room; a dial to a lost peer does not, nor, on
	// a node with no connection, one under way for slowDial
	// (startDueDials).
	takesRoom bool
	dialSince time.Time
	problem   Problem // why it is not connected (dialerr.go)
	// exchanged is the exchangeBook round of the peer list last sent
	// to it (exchange.go).
	exchanged uint64
	dialErr   string
	failures  int // consecutive failed dials
	flaps     int // consecutive connections that dropped within RedialMax
	nextDial  time.Time
	// graceUntil: the end of the wait before this node (the higher peer
	// ID) dials the peer through a relay itself (relayDialGrace); zero
	// when not waiting.
	graceUntil time.Time
	// exchangeOnly: known only from the address exchange (no static
	// entry, mDNS or DHT record), since exchangeSince.
	exchangeOnly  bool
	exchangeSince time.Time
	// since: when the node learnt of the peer; lost: the liveness check
	// cut its connection (bounds.go).
	since time.Time
	lost  bool
	// asked: AddPeer asked for it, dialled once whatever the bound.
	asked bool
	// closing: this node is closing the connection for its bound (trim);
	// refused: when the peer last closed a connection this node had not
	// closed nor cut, as a peer above its own bound does (bounds.go).
	closing bool
	refused time.Time
}

func (k *knownPeer) dialAddrs() []multiaddr.Multiaddr {
	return mergeAddrs(slices.Clone(k.addrs), k.learned)
}

// mergeAddrs appends the addresses of add that dst lacks.
func mergeAddrs(dst, add []multiaddr.Multiaddr) []multiaddr.Multiaddr {
	for _, a := range add {
		if len(a) == 0 {
			continue
		}
		if !slices.ContainsFunc(dst, a.Equal) {
			dst = append(dst, a)
		}
	}
	return dst
}

// backoff is the wait before the attempt that follows n consecutive
// failures: RedialMin doubling up to RedialMax, drawn from the upper half
// of that (Config.Rand says why). Callers hold n.mu.
func (n *Node) backoff(failures int) time.Duration {
	if failures <= 0 {
		return 0
	}
	d := n.cfg.RedialMin
	for i := 1; i < failures && d < n.cfg.RedialMax; i++ {
		d *= 2
	}
	d = min(d, n.cfg.RedialMax)
	if d < 2 {
		return d
	}
	return d/2 + time.Duration(n.rng.Int64N(int64(d/2)+1))
}

// dialTimeout bounds one dial. A dial to a silently partitioned peer hangs
// until it, so it is kept near RedialMax: a healed partition is noticed
// within about dialTimeout + RedialMax.
func (n *Node) dialTimeout() time.Duration {
	return min(max(n.cfg.RedialMax, 2*time.Second), 10*time.Second)
}

func (n *Node) kick() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// Sources of known peers, for addKnown and the logs.
const (
	sourceStatic = "static" // Config.Peers or AddPeer
	sourceMDNS   = "mdns"
	sourceDHT    = "dht"
	// sourceExchange: another node told us (exchange.go).
	sourceExchange = "exchange"
)

// addKnown records ai as a peer to keep connected. Static peers come from
// Config.Peers and AddPeer; others were discovered. It reports false for
// this node itself, a removed peer found by discovery, or a closed node.
func (n *Node) addKnown(ai peer.AddrInfo, source string) bool {
	static := source == sourceStatic
	if ai.ID == n.self || ai.ID == "" {
		return false
	}
	// Asked before taking n.mu: the node never holds its lock while
	// calling into libp2p.
	conn := isUp(n.host.Network().Connectedness(ai.ID))
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return false
	}
	if _, gone := n.removed[ai.ID]; gone {
		if !static {
			n.mu.Unlock()
			return false
		}
		delete(n.removed, ai.ID)
	}
	k, existed := n.known[ai.ID]
	if !existed {
		k = &knownPeer{since: time.Now()}
		n.known[ai.ID] = k
		if source == sourceExchange {
			k.exchangeOnly, k.exchangeSince = true, time.Now()
		}
		// Already connected (a removed peer that dialled in, added
		// again): no connect event will say so.
		k.connected = conn
	}
	if source != sourceExchange {
		k.exchangeOnly = false
	}
	before := len(k.addrs)
	k.addrs = mergeAddrs(k.addrs, ai.Addrs)
	n.nat.noteAddrs(ai.ID, ai.Addrs)
	k.static = k.static || static
	k.asked = k.asked || (static && !k.connected)
	// A new peer, new addresses, or an explicit AddPeer deserve a dial now;
	// rediscovering the same stale record (the DHT does, every round) does
	// not reset the backoff.
	due := !k.connected && (!existed || static || len(k.addrs) > before)
	if due {
		k.failures = 0
		k.nextDial = time.Now()
	}
	n.mu.Unlock()

	ttl := peerstore.AddressTTL
	if static {
		ttl = peerstore.PermanentAddrTTL
	}
	n.host.Peerstore().AddAddrs(ai.ID, ai.Addrs, ttl)
	n.host.ConnManager().Protect(ai.ID, protectTag)
	if !existed {
		n.log.Debug("new known peer", "peer", ai.ID, "source", source, "addrs", ai.Addrs)
	}
	// Only a dial due now needs the re-dial loop: the address exchange
	// repeats what the node knows every few seconds from every peer, and
	// a loop woken for each entry walks every known peer each time (the
	// loop took 8% of the CPU of 200 nodes starting on a mocknet).
	if due {
		n.kick()
	}
	return true
}

// Peers lists every known peer (static, discovered, or connected).
func (n *Node) Peers() []PeerInfo {
	n.mu.Lock()
	out := make([]PeerInfo, 0, len(n.known))
	for id, k := range n.known {
		out = append(out, PeerInfo{
			ID:        id,
			Addrs:     k.dialAddrs(),
			Connected: k.connected,
			Static:    k.static,
			LastSeen:  k.lastSeen,
			Failures:  k.failures,
			NextDial:  k.nextDial,
			Problem:   k.problem,
			DialError: k.dialErr,
			RTTs:      slices.Clone(k.rtts),
		})
	}
	n.mu.Unlock()

	ps := n.host.Peerstore()
	for i := range out {
		p := &out[i]
		p.Addrs = mergeAddrs(p.Addrs, ps.Addrs(p.ID))
		p.Blocked = n.gater.isBlocked(p.ID)
		if p.Connected {
			p.Addrs = addrsForPeople(p.Addrs, n.remoteAddrs(p.ID))
			p.NextDial = time.Time{}
			p.Conn = n.connKind(p.ID)
			if p.Problem != ProblemEnvironment {
				// A dial that failed while another connection came up.
				p.Problem, p.DialError = ProblemNone, ""
			}
		}
	}
	// Connected peers the node does not keep (it was told to remove them,
	// and they dialled in again) are listed too.
	for _, id := range n.unkeptConnected(len(out), func(i int) peer.ID { return out[i].ID }) {
		out = append(out, PeerInfo{ID: id, Addrs: addrsForPeople(ps.Addrs(id), n.remoteAddrs(id)), Connected: true, Blocked: n.gater.isBlocked(id), Conn: n.connKind(id)})
	}
	slices.SortFunc(out, func(a, b PeerInfo) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// unkeptConnected lists the connected peers that are not among the
// count known peers given by id(0..count-1).
func (n *Node) unkeptConnected(count int, id func(int) peer.ID) []peer.ID {
	listed := make(map[peer.ID]bool, count)
	for i := range count {
		listed[id(i)] = true
	}
	var out []peer.ID
	for _, p := range n.host.Network().Peers() {
		if !listed[p] {
			out = append(out, p)
		}
	}
	return out
}

// PeerLink is what Links gives of a peer: its connection and round
// trips, without the addresses and dial state of PeerInfo.
type PeerLink struct {
	ID        peer.ID
	Connected bool
	Static    bool
	RTTs      []time.Duration // as PeerInfo.RTTs
}

// Links lists the peers Peers lists (sorted by ID), with only their
// connection state and round trips: what a node's own once-a-second
// checks read. Peers also gathers and orders every peer's addresses and
// classifies its connections, which made it the largest part of an idle
// node's monitor tick, growing with the number of peers.
func (n *Node) Links() []PeerLink {
	n.mu.Lock()
	out := make([]PeerLink, 0, len(n.known))
	for id, k := range n.known {
		out = append(out, PeerLink{ID: id, Connected: k.connected, Static: k.static, RTTs: slices.Clone(k.rtts)})
	}
	n.mu.Unlock()
	for _, id := range n.unkeptConnected(len(out), func(i int) peer.ID { return out[i].ID }) {
		out = append(out, PeerLink{ID: id, Connected: true})
	}
	slices.SortFunc(out, func(a, b PeerLink) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// remoteAddrs are the far ends of the live connections to id.
func (n *Node) remoteAddrs(id peer.ID) []multiaddr.Multiaddr {
	conns := n.host.Network().ConnsToPeer(id)
	out := make([]multiaddr.Multiaddr, 0, len(conns))
	for _, c := range conns {
		out = append(out, c.RemoteMultiaddr())
	}
	return out
}

// addrsForPeople orders a connected peer's addresses for `cluster peers`,
// which shows the first: those on an IP a live connection to it uses,
// then the rest, loopback last, and relay addresses after the direct
// ones of each. A peer announces its 127.0.0.1 too, and
// on three machines that came first and stood for every peer (seen with
// Docker and systemd containers). The order is kept otherwise.
func addrsForPeople(addrs, remote []multiaddr.Multiaddr) []multiaddr.Multiaddr {
	var ips []string
	for _, r := range remote {
		if ip, err := manet.ToIP(r); err == nil {
			ips = append(ips, ip.String())
		}
	}
	rank := func(a multiaddr.Multiaddr) int {
		r := 1
		if ip, err := manet.ToIP(a); err == nil && slices.Contains(ips, ip.String()) {
			r = 0
		} else if manet.IsIPLoopback(a) {
			r = 2
		}
		// A relay address names the relay's IP: after the direct ones of
		// its rank (a hole-punched peer showed its relay address first,
		// the relayed connection beside the punched one still open).
		if isCircuit(a) {
			return 2*r + 1
		}
		return 2 * r
	}
	out := slices.Clone(addrs)
	slices.SortStableFunc(out, func(a, b multiaddr.Multiaddr) int { return cmp.Compare(rank(a), rank(b)) })
	return out
}

// AddPeer remembers a peer as static and dials it now (without waiting
// for the dial to succeed).
func (n *Node) AddPeer(ctx context.Context, ai peer.AddrInfo) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if ai.ID == "" {
		return fmt.Errorf("p2p: add peer: no peer ID (the address must end in /p2p/<id>)")
	}
	if ai.ID == n.self {
		return fmt.Errorf("p2p: add peer: %s is this node itself", ai.ID)
	}
	if !n.addKnown(ai, sourceStatic) {
		return ErrClosed
	}
	return nil
}

// RemovePeer forgets a peer: it is not re-dialled and its connections
// are closed. ErrUnknownPeer if the node never knew it.
//
// Discovery does not bring it back; AddPeer does. The peer may still dial
// in (use Block to refuse it).
func (n *Node) RemovePeer(id peer.ID) error {
	// Ask the network before taking n.mu: the node never holds its lock
	// while calling into libp2p.
	connected := isUp(n.host.Network().Connectedness(id))
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return ErrClosed
	}
	_, known := n.known[id]
	_, removed := n.removed[id]
	if !known && !removed && !connected {
		n.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrUnknownPeer, id)
	}
	delete(n.known, id)
	n.removed[id] = struct{}{}
	n.mu.Unlock()

	n.host.ConnManager().Unprotect(id, protectTag)
	n.host.Peerstore().ClearAddrs(id)
	if err := n.host.Network().ClosePeer(id); err != nil {
		return fmt.Errorf("p2p: remove peer %s: close connections: %w", id, err)
	}
	n.log.Info("peer removed", "peer", id)
	return nil
}

// Block refuses connections with the peer and closes the current ones
// (a connection gater; used for tests and partitions). Unblock lifts it;
// the re-dial loop reconnects within RedialMax.
func (n *Node) Block(id peer.ID) {
	// Gate first, then close: a dial racing with the close is refused.
	n.gater.block(id)
	if err := n.host.Network().ClosePeer(id); err != nil {
		n.log.Debug("block: close connections", "peer", id, "err", err)
	}
	n.log.Info("peer blocked", "peer", id)
}

// Unblock lifts Block; a known peer is dialled at once.
func (n *Node) Unblock(id peer.ID) {
	if !n.gater.unblock(id) {
		return
	}
	n.mu.Lock()
	if k, ok := n.known[id]; ok {
		k.failures = 0
		k.flaps = 0
		k.nextDial = time.Now()
	}
	n.mu.Unlock()
	n.log.Info("peer unblocked", "peer", id)
	n.kick()
}

// eventLoop turns the host's connectedness events into known-peer state
// and PeerEvents. It must never call into the network while the event bus
// waits on it (ClosePeer from here could deadlock); it only records.
func (n *Node) eventLoop() {
	defer n.wg.Done()
	for {
		select {
		case <-n.ctx.Done():
			return
		case e, ok := <-n.events.Out():
			if !ok {
				return
			}
			switch ev := e.(type) {
			case event.EvtPeerConnectednessChanged:
				n.onConnectedness(ev.Peer, isUp(ev.Connectedness))
			case event.EvtPeerIdentificationCompleted:
				n.mu.Lock()
				if k, ok := n.known[ev.Peer]; ok && len(ev.ListenAddrs) > 0 {
					k.learned = slices.Clone(ev.ListenAddrs)
				}
				n.mu.Unlock()
				n.nat.noteAddrs(ev.Peer, ev.ListenAddrs)
				n.checkEnvironment(ev.Peer, ev.Protocols)
				n.nat.observed(ev.Peer, ev.ObservedAddr)
			case event.EvtLocalReachabilityChanged:
				n.nat.setReachability(ev.Reachability)
				n.log.Info("reachability changed", "reachability", reachabilityName(ev.Reachability))
				n.updateRelay()
			case event.EvtHostReachableAddrsChanged:
				n.nat.mu.Lock()
				n.nat.reachable, n.nat.unreachable = slices.Clone(ev.Reachable), slices.Clone(ev.Unreachable)
				n.nat.mu.Unlock()
				n.log.Info("reachable addresses changed", "reachable", ev.Reachable, "unreachable", ev.Unreachable)
				n.updateRelay()
			}
		}
	}
}

func (n *Node) onConnectedness(id peer.ID, connected bool) {
	now := time.Now()
	// Keep the addresses the peerstore has for a peer that leaves: it
	// drops them some minutes after the disconnect, the re-dial loop keeps
	// trying for good.
	// On connect too: identification may have completed (and its event
	// been handled, finding no known peer yet) before this event.
	lastAddrs := n.host.Peerstore().Addrs(id)
	n.mu.Lock()
	_, removed := n.removed[id]
	k, ok := n.known[id]
	if !ok && !removed && connected {
		// Any peer that connects is kept from now on.
		k, ok = &knownPeer{since: now}, true
		n.known[id] = k
	}
	if ok {
		switch {
		case connected && !k.connected:
			// Protected before anyone can see it connected (Peers, the
			// event): a caller that sees the connection sees it kept.
			n.host.ConnManager().Protect(id, protectTag)
			k.connected, k.lost, k.asked, k.closing = true, false, false, false
			k.upSince, k.lastSeen, k.lastPong = now, now, now
			k.failures = 0
			k.nextDial = time.Time{}
			k.graceUntil = time.Time{}
			if k.problem != ProblemEnvironment {
				k.problem, k.dialErr = ProblemNone, ""
			}
			if len(lastAddrs) > 0 {
				k.learned = lastAddrs
			}
		case !connected && k.connected:
			k.connected = false
			k.lastSeen = now
			if !k.closing && !k.lost {
				k.refused = now
			}
			k.closing = false
			n.traffic.forget(id)
			if len(lastAddrs) > 0 {
				k.learned = lastAddrs
			}
			if now.Sub(k.upSince) < n.cfg.RedialMax {
				k.flaps++ // dropped at once: back off, or a flapping peer spins us
			} else {
				k.flaps = 0
			}
			k.nextDial = now.Add(n.backoff(k.flaps))
		}
	}
	n.publishEvent(PeerEvent{Peer: id, Connected: connected})
	n.mu.Unlock()
	if !connected {
		n.nat.forget(id)
	}

	if connected {
		n.firstConnOnce.Do(func() { close(n.firstConn) })
		n.log.Debug("peer connected", "peer", id)
		// The hole-punch retry loop checks the new connection's port now
		// (redialFromListenPort).
		select {
		case n.connected <- struct{}{}:
		default:
		}
		if ok {
			n.wg.Go(func() { n.sendPeers(id, true) })
		}
	} else {
		n.log.Debug("peer disconnected", "peer", id)
		n.kick()
	}
}

// redialLoop dials known peers that are not connected, each when its
// backoff expires. It sleeps on a timer until the next one is due or
// something changes (kick).
func (n *Node) redialLoop() {
	defer n.wg.Done()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		timer.Reset(n.startDueDials())
		select {
		case <-n.ctx.Done():
			return
		case <-n.wake:
		case <-timer.C:
		}
	}
}

// slowDial: on a node with no connection, one dial for the bound under
// way for this long no longer takes room (startDueDials). Dials on a
// LAN connect in milliseconds and across continents within a second.
const slowDial = 2 * time.Second

// idleWait is how long the re-dial loop sleeps when nothing is pending;
// every state change kicks it anyway, this is only a backstop.
const idleWait = time.Minute

// startDueDials starts a dial for every due peer and returns how long to
// wait for the next one.
func (n *Node) startDueDials() time.Duration {
	var jobs []dialJob
	now := time.Now()
	wait := idleWait

	// Behind NAT, a peer with a relay address is dialled through the
	// relay first (relayFirst), and by the lower peer ID first (see
	// relayDialGrace); later tries dial every address.
	reach := n.nat.effective()
	behindNAT := n.cfg.HolePunch && reach != ReachabilityPublic
	// knownPrivate: AutoNAT (or the config) says this node is behind NAT;
	// unknown is common on a LAN without public addresses.
	// (Config.Reachability says so at once; the event that sets reach
	// comes a moment after start.)
	knownPrivate := n.cfg.HolePunch && (reach == ReachabilityPrivate || n.cfg.Reachability == ReachabilityPrivate)
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return idleWait
	}
	// The bound (bounds.go): room is what connections and dials under
	// way leave of MaxPeers; bounded are the due peers that only the
	// bound holds back. A dial to a lost peer (its connection cut by the
	// liveness check) takes no room: a partition leaves a node
	// re-dialling the peers it lost on the far side, dials that hang
	// until the heal, and had they taken the room, it would dial no peer
	// on its own side meanwhile. Nor does a dial to a ring neighbour
	// (bounds.go): its successor across a partition fails, the next peer
	// up may be across too, and each such dial hangs. Other dials beyond
	// the bound (a peer AddPeer named, a static peer at start) take room
	// as any: when they did not, the nodes of a 7-node cluster with
	// MaxPeers 2 dialled their static peer and their preferred ones at
	// once, then trimmed to the bound and split into two groups (the
	// chaos suite's bounded run, at start). Taking room keeps that
	// surplus small; what keeps the trims from splitting a cluster is
	// the ring, whose links they never close.
	//
	// A node with no connection at all hears nothing: one of its dials
	// for the bound that has not connected within slowDial gives its
	// room up, as it is most likely to a peer that cannot be reached now
	// and may hang until dialTimeout. After a partition a node whose
	// links all went across (they are cut after the liveness timeout)
	// dialled peers across it that it had not been connected to, and
	// reached its own side only once those dials timed out: the chaos
	// suite's bounded run saw the leader alone on its side for longer
	// than the partition. Only then: on a starved host every dial is
	// slow, and one more dial for each slow one loads it further (200
	// nodes on a mocknet, where any node with a slow dial dialled one
	// more, had 1,787 dials under way, most waiting for mocknet's lock).
	room := n.cfg.MaxPeers
	connected, slow := 0, 0
	slowAt := idleWait
	for _, k := range n.known {
		switch {
		case k.connected:
			room--
			connected++
		case k.dialing && k.takesRoom:
			room--
			if d := k.dialSince.Add(slowDial).Sub(now); d > 0 {
				slowAt = min(slowAt, d)
			} else {
				slow++
			}
		}
	}
	if connected == 0 {
		if slow > 0 {
			room++
		}
		wait = min(wait, slowAt)
	}
	succ, _ := n.ringPeers()
	var bounded []boundedDial
	for id, k := range n.known {
		if k.connected || k.dialing || n.gater.isBlocked(id) {
			continue
		}
		if d := k.nextDial.Sub(now); d > 0 {
			wait = min(wait, d)
			continue
		}
		addrs := k.dialAddrs()
		relay := viaRelay(addrs)
		if knownPrivate && !relay && k.exchangeOnly && k.failures == 0 {
			// See relayAddrWait: wait for a relay address first.
			if d := k.exchangeSince.Add(relayAddrWait).Sub(now); d > 0 {
				wait = min(wait, d)
				continue
			}
		}
		relayFirst := behindNAT && relay && k.failures < relayOnlyTries
		if relayFirst && n.self > id && k.failures == 0 {
			if k.graceUntil.IsZero() {
				k.graceUntil = now.Add(relayDialGrace)
			}
			if d := k.graceUntil.Sub(now); d > 0 {
				wait = min(wait, d)
				continue
			}
		}
		k.graceUntil = time.Time{}
		j := dialJob{peer.AddrInfo{ID: id, Addrs: addrs}, relayFirst}
		ring := slices.Contains(succ, id)
		if beyond, at := n.beyondBound(id, k, now); !beyond && !ring {
			if room > 0 {
				bounded = append(bounded, boundedDial{j, n.rank(id), k.failures > 0, now.Sub(k.refused) < refusedFor})
			}
			wait = min(wait, at.Sub(now))
			continue
		}
		k.dialing, k.takesRoom, k.dialSince = true, !k.lost && !ring, now
		if k.takesRoom {
			room--
		}
		jobs = append(jobs, j)
	}
	for _, j := range pickBounded(bounded, room) {
		k := n.known[j.ai.ID]
		k.dialing, k.takesRoom, k.dialSince = true, true, now
		jobs = append(jobs, j)
	}
	n.mu.Unlock()

	for _, j := range jobs {
		n.wg.Go(func() { n.dial(j.ai, j.relayFirst) })
	}
	return wait
}

// dialJob is a dial startDueDials starts.
type dialJob struct {
	ai         peer.AddrInfo
	relayFirst bool
}

// dial connects to ai; relayFirst: through a relay only (the gater
// refuses its direct addresses, see allowAddrDial).
func (n *Node) dial(ai peer.AddrInfo, relayFirst bool) {
	// The swarm keeps its own dial backoff (5s growing to 5 min per
	// address); ours replaces it, or a healed peer would wait minutes.
	if sw, ok := n.host.Network().(*swarm.Swarm); ok {
		sw.Backoff().Clear(ai.ID)
	}
	// A relayed connection counts: when there is no direct path it is
	// the path (and hole punching starts from it).
	ctx, cancel := context.WithTimeout(network.WithAllowLimitedConn(n.ctx, "starling re-dial"), n.dialTimeout())
	n.nat.setRelayFirst(ai.ID, relayFirst)
	n.nat.setDirectDial(ai.ID, !relayFirst)
	err := n.host.Connect(ctx, ai)
	n.nat.setRelayFirst(ai.ID, false)
	n.nat.setDirectDial(ai.ID, false)
	cancel()

	var problem Problem
	if err != nil {
		problem = n.classifyDialError(err)
	}
	n.mu.Lock()
	if k, ok := n.known[ai.ID]; ok {
		k.dialing, k.takesRoom, k.asked = false, false, false
		if err != nil {
			k.failures++
			k.nextDial = time.Now().Add(n.backoff(k.failures + k.flaps))
			k.problem, k.dialErr = problem, err.Error()
		} else {
			k.failures = 0
			// Connected: the connectedness event marks it so. Until that
			// event is handled, a kick would dial it again at once, and
			// Connect returns at once for a connected peer: a hot loop
			// while events lag (100 nodes on a mocknet spent half their
			// CPU there).
			if !k.connected {
				k.nextDial = time.Now().Add(n.cfg.RedialMin)
			}
		}
	}
	_, removed := n.removed[ai.ID]
	n.mu.Unlock()
	if err == nil && removed {
		// RemovePeer ran while this dial was under way: its close came
		// before the connection did.
		if cerr := n.host.Network().ClosePeer(ai.ID); cerr != nil {
			n.log.Debug("close the connection of a removed peer", "peer", ai.ID, "err", cerr)
		}
		return
	}
	if err != nil && n.ctx.Err() == nil {
		n.logDialProblem(ai.ID, problem, err)
	}
	n.kick()
}

// pingTimes are how often a connected known peer is pinged when nothing
// else was heard from it, and how long it may stay silent: PingInterval
// and PingTimeout up to 20 peers; beyond, both grow with the number of
// connected peers so that a node sends about 20/PingInterval pings per
// second whatever the cluster's size (200 peers: every 10 s, cut after
// 40 s of silence). A peer whose pongs are slow may stay silent longer
// (silence). Callers hold n.mu.
func (n *Node) pingTimes() (every, timeout time.Duration) {
	conns := 0
	for _, k := range n.known {
		if k.connected {
			conns++
		}
	}
	every = max(n.cfg.PingInterval, time.Duration(conns)*n.cfg.PingInterval/20)
	scaled := time.Duration(float64(n.cfg.PingTimeout) * float64(every) / float64(n.cfg.PingInterval))
	return every, max(n.cfg.PingTimeout, scaled)
}

// silence is how long a connected peer may stay silent before its
// connection is cut: timeout (pingTimes, plus the node's own lateness),
// or, when the peer's pongs have been slow (rtt), a ping period and
// silenceRTOs of its retransmission timeouts, up to maxSilenceFactor
// times timeout. Pongs that come back slowly mean a slow path or a
// saturated process at either end, not a dead peer: cutting the
// connection makes both re-dial, and each handshake loads them further.
// 200 whole nodes in one process on 2 cores cut their live peers this
// way until most had no connection left, while their re-dials failed
// their handshakes. A peer across a partition sends no pong, so what is
// allowed for it stays what its last round trips earned.
func silence(every, timeout time.Duration, rtt rttEstimate) time.Duration {
	return max(timeout, min(every+silenceRTOs*rtt.rto(), maxSilenceFactor*timeout))
}

const (
	// silenceRTOs: a silent peer keeps its connection for a ping period
	// and this many retransmission timeouts (rttEstimate.rto).
	silenceRTOs = 2
	// maxSilenceFactor bounds the growth: at most this many times the
	// silence pingTimes allows without it.
	maxSilenceFactor = 8
)

// rttEstimate smooths the round trips of a peer's pongs as TCP's
// retransmission timer does (RFC 6298): srtt follows each sample by 1/8,
// rttvar the samples' deviation from it by 1/4.
type rttEstimate struct {
	srtt, rttvar time.Duration
	samples      int
}

func (e *rttEstimate) add(r time.Duration) {
	if e.samples == 0 {
		e.srtt, e.rttvar = r, r/2
	} else {
		e.rttvar = (3*e.rttvar + (e.srtt - r).Abs()) / 4
		e.srtt = (7*e.srtt + r) / 8
	}
	e.samples++
}

// rto is RFC 6298's retransmission timeout, srtt + 4 rttvar, without
// its one-second floor: 0 before the first sample.
func (e *rttEstimate) rto() time.Duration { return e.srtt + 4*e.rttvar }

// livenessLoop checks every connected known peer each PingInterval: one
// heard from (a pong, or gossip) within pingTimes' every
// is not pinged; one silent for its timeout has its connections closed.
func (n *Node) livenessLoop() {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.PingInterval)
	defer t.Stop()
	// A tick that comes late means this node was not running (a starved
	// process, a paused VM): its peers' pongs were read late too. The
	// timeout grows by the largest lateness of the last two timeouts, so
	// a node's own stall does not cut its peers (as the election does).
	var slack time.Duration
	var slackAt, last time.Time
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		var toPing, dead []pingJob
		now := time.Now()
		if !last.IsZero() {
			late := now.Sub(last) - n.cfg.PingInterval
			if late > slack || now.Sub(slackAt) > 2*n.cfg.PingTimeout {
				slack, slackAt = max(late, 0), now
			}
		}
		last = now
		n.mu.Lock()
		every, timeout := n.pingTimes()
		timeout += slack
		for id, k := range n.known {
			if !k.connected {
				continue
			}
			// Gossip from the peer answers for it as a pong.
			if h := n.traffic.lastHeard(id); h.After(k.lastPong) {
				k.lastPong = h
			}
			// Remember where the peer listens while it is connected: the
			// peerstore may drop its addresses by the time the disconnect
			// is handled, and without them it cannot be re-dialled.
			if addrs := n.host.Peerstore().Addrs(id); len(addrs) > 0 {
				k.learned = addrs
			}
			allowed := silence(every, timeout, k.rtt)
			if now.Sub(k.lastPong) > allowed {
				dead = append(dead, pingJob{id, allowed})
				k.lost = true    // re-dialled beyond the bound (bounds.go)
				k.lastPong = now // once per timeout, until the disconnect shows
				continue
			}
			// A peer heard from all the time is still pinged every
			// rttEvery pings' periods, for its round trip.
			if !k.pinging && (now.Sub(k.lastPong) >= every || now.Sub(k.rttAt) >= rttEvery*every) {
				k.pinging = true
				toPing = append(toPing, pingJob{id, allowed})
			}
		}
		n.mu.Unlock()

		for _, d := range dead {
			n.log.Info("peer silent: closing its connections", "peer", d.id, "timeout", d.wait)
			_ = n.host.Network().ClosePeer(d.id)
		}
		n.trim(now)
		for _, j := range toPing {
			n.wg.Go(func() { n.ping(j.id, j.wait) })
		}
	}
}

// pingJob is a peer livenessLoop pings or cuts, and the silence it is
// allowed (how long a ping waits for its pong).
type pingJob struct {
	id   peer.ID
	wait time.Duration
}

// ping pings id once, waiting up to timeout (the silence allowed, never
// less than PingTimeout: a pong later than PingTimeout still counts, and
// its round trip is measured).
func (n *Node) ping(id peer.ID, timeout time.Duration) {
	// WithNoDial: a ping must not reconnect a peer; that is the re-dial
	// loop's job, with its backoff.
	ctx, cancel := context.WithTimeout(network.WithNoDial(n.ctx, "liveness ping"), timeout)
	res, ok := <-ping.Ping(ctx, n.host, id)
	cancel()
	n.mu.Lock()
	if k, known := n.known[id]; known {
		k.pinging = false
		if ok && res.Error == nil {
			k.rtt.add(res.RTT)
			k.lastPong = time.Now()
			k.rttAt = k.lastPong
			k.rtts = append(k.rtts, res.RTT)
			if len(k.rtts) > rttSamples {
				k.rtts = slices.Delete(k.rtts, 0, len(k.rtts)-rttSamples)
			}
		}
	}
	n.mu.Unlock()
}

// rttSamples and rttEvery: a connected peer's round trip is sampled at
// least every rttEvery ping periods (10 s up to 20 peers: one small
// stream per peer and 10 s), and the last rttSamples are kept, so the
// window (80 s) spans minutes of a link's jitter, not a moment's.
const (
	rttSamples = 8
	rttEvery   = 10
)

// isUp counts a relayed (limited) connection as a connection: with
// no direct path it is the path, and the streams that must work over it
// opt in (see allowLimited).
func isUp(c network.Connectedness) bool {
	return c == network.Connected || c == network.Limited
}
