package p2p

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"
)

// The address exchange spreads the known peers and their addresses
// (relay addresses included) from every node to every node it is
// connected to, so that two sites that met through a hub know each other
// and keep re-dialling each other, directly or through a relay, after the
// hub is gone. mDNS does not cross sites and the DHT needs its routing
// tables filled first; a node's peers are the one source it always has.
//
// A node sends its list when a peer connects and every exchangeInterval
// after, to each connected peer whose copy is out of date; a receiver
// adds what it did not know to its known peers (source "exchange").

const (
	// exchangeInterval: a node that gets a relay address (about 15 s
	// after start behind NAT) has it at every peer of its peers within
	// two intervals, well inside the 30 s target for a direct connection.
	exchangeInterval = 5 * time.Second
	// exchangeForget: a peer not connected for this long is not passed
	// on any more, so a node that left stops circulating.
	exchangeForget = time.Hour
	// Bounds of one message, checked by the receiver: what an honest
	// cluster sends is far below.
	exchangeMaxBytes = 256 << 10
	exchangeMaxPeers = 512
	exchangeMaxAddrs = 32
	exchangeTimeout  = 5 * time.Second
)

// exchangeEntry is one peer in an address-exchange message (JSON).
type exchangeEntry struct {
	ID    string   `json:"id"`
	Addrs []string `json:"addrs"`
}

func (n *Node) exchangeProto() string { return "peers/1.0.0" }

// startExchange registers the handler and the periodic sender.
func (n *Node) startExchange() {
	n.host.SetStreamHandler(n.streamProto(n.exchangeProto()), n.handleExchange)
	n.wg.Go(n.exchangeLoop)
}

func (n *Node) exchangeLoop() {
	t := time.NewTicker(exchangeInterval)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		var to []peer.ID
		n.mu.Lock()
		for id, k := range n.known {
			if k.connected {
				to = append(to, id)
			}
		}
		n.mu.Unlock()
		for _, id := range to {
			n.sendPeers(id, false)
		}
	}
}

// peersFor lists what to tell peer to about: connected peers and peers
// seen within exchangeForget, with every address known, except to itself
// and except peers it does not trust.
func (n *Node) peersFor(to peer.ID) []exchangeEntry {
	now := time.Now()
	type rec struct {
		id    peer.ID
		addrs []multiaddr.Multiaddr
	}
	var recs []rec
	n.mu.Lock()
	for id, k := range n.known {
		if id == to || (!k.connected && (k.lastSeen.IsZero() || now.Sub(k.lastSeen) > exchangeForget)) {
			continue
		}
		if k.problem == ProblemEnvironment {
			continue
		}
		recs = append(recs, rec{id, k.dialAddrs()})
	}
	n.mu.Unlock()
	ps := n.host.Peerstore()
	out := make([]exchangeEntry, 0, len(recs))
	for _, r := range recs {
		// Only peers this node trusts are passed on: an untrusted peer
		// (Config.Trusted) is not introduced to anyone.
		if n.gater.isBlocked(r.id) || !n.trust.trusts(r.id) {
			continue
		}
		addrs := mergeAddrs(r.addrs, ps.Addrs(r.id))
		if len(addrs) == 0 {
			continue
		}
		e := exchangeEntry{ID: r.id.String()}
		for _, a := range addrs {
			e.Addrs = append(e.Addrs, a.String())
		}
		slices.Sort(e.Addrs)
		if len(e.Addrs) > exchangeMaxAddrs {
			e.Addrs = e.Addrs[:exchangeMaxAddrs]
		}
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b exchangeEntry) int { return cmp.Compare(a.ID, b.ID) })
	if len(out) > exchangeMaxPeers {
		out = out[:exchangeMaxPeers]
	}
	return out
}

// sendPeers sends the list to id unless id has this very list already
// (force: it just connected).
func (n *Node) sendPeers(id peer.ID, force bool) {
	if !n.trust.trusts(id) {
		return
	}
	entries := n.peersFor(id)
	data, err := json.Marshal(entries)
	if err != nil || len(data) > exchangeMaxBytes {
		return
	}
	h := fnv.New64a()
	h.Write(data)
	sum := h.Sum64()
	n.mu.Lock()
	k, ok := n.known[id]
	if !ok || (!force && k.exchanged == sum) {
		n.mu.Unlock()
		return
	}
	n.mu.Unlock()

	ctx, cancel := context.WithTimeout(network.WithNoDial(n.ctx, "address exchange"), exchangeTimeout)
	defer cancel()
	s, err := n.host.NewStream(allowLimited(ctx, "address exchange"), id, n.streamProto(n.exchangeProto()))
	if err != nil {
		n.log.Debug("address exchange: open stream", "peer", id, "err", err)
		return
	}
	_ = s.SetDeadline(time.Now().Add(exchangeTimeout))
	if err := writeFrame(s, data); err != nil {
		_ = s.Reset()
		n.log.Debug("address exchange: send", "peer", id, "err", err)
		return
	}
	_ = s.Close()
	n.mu.Lock()
	if k, ok := n.known[id]; ok {
		k.exchanged = sum
	}
	n.mu.Unlock()
}

func (n *Node) handleExchange(s network.Stream) {
	from := s.Conn().RemotePeer()
	defer func() { _ = s.Close() }()
	if !n.trust.trusts(from) {
		_ = s.Reset()
		return
	}
	_ = s.SetDeadline(time.Now().Add(exchangeTimeout))
	data, err := readFrame(bufio.NewReader(s), exchangeMaxBytes)
	if err != nil {
		n.log.Debug("address exchange: read", "peer", from, "err", err)
		return
	}
	infos, err := parseExchange(data)
	if err != nil {
		n.Misbehaved(from.String(), "address exchange: "+err.Error())
		return
	}
	for _, ai := range infos {
		if ai.ID == n.self {
			continue
		}
		n.addKnown(ai, sourceExchange)
	}
}

// parseExchange decodes and checks an address-exchange message.
func parseExchange(data []byte) ([]peer.AddrInfo, error) {
	var entries []exchangeEntry
	if err := json.Unmarshal(data, &entries); err != nil {
		return nil, fmt.Errorf("bad message: %w", err)
	}
	if len(entries) > exchangeMaxPeers {
		return nil, fmt.Errorf("%d peers, at most %d", len(entries), exchangeMaxPeers)
	}
	out := make([]peer.AddrInfo, 0, len(entries))
	for _, e := range entries {
		id, err := peer.Decode(e.ID)
		if err != nil {
			return nil, fmt.Errorf("bad peer ID %q: %w", e.ID, err)
		}
		if len(e.Addrs) > exchangeMaxAddrs {
			return nil, fmt.Errorf("peer %s: %d addresses, at most %d", id, len(e.Addrs), exchangeMaxAddrs)
		}
		ai := peer.AddrInfo{ID: id}
		for _, s := range e.Addrs {
			a, err := multiaddr.NewMultiaddr(s)
			if err != nil {
				return nil, fmt.Errorf("peer %s: bad address %q: %w", id, s, err)
			}
			// An address naming another peer (/p2p/<x> at the end) is
			// kept only as a relay address of this one.
			if last, err := peer.IDFromP2PAddr(a); err == nil {
				if last != id {
					continue
				}
				a, _ = peer.SplitAddr(a)
			}
			ai.Addrs = append(ai.Addrs, a)
		}
		if len(ai.Addrs) > 0 {
			out = append(out, ai)
		}
	}
	return out, nil
}
