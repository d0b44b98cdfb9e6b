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
// A node sends its whole list when a peer connects, and every
// exchangeInterval after, to each connected peer, the entries changed
// since (exchangeBook); a receiver adds what it did not know to its
// known peers (source "exchange").

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
		n.refreshExchange()
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

// exchangeBook is the list the exchange passes on, built once per round
// for all peers, with the round in which each entry last changed. A peer
// is sent only the entries changed since the round it last received
// (knownPeer.exchanged), and the whole list when it connects: sending
// each peer the whole list whenever anything in it changed cost every
// node O(peers²) entries per change to build, send and parse (a fifth of
// the CPU of 48 starting nodes on a mocknet, the address exchange being
// where a joining node's arrival changed every list).
type exchangeBook struct {
	round   uint64 // last round in which an entry changed or appeared
	entries map[string]bookEntry
}

type bookEntry struct {
	e     exchangeEntry
	sum   uint64 // digest of e.Addrs
	round uint64 // round in which e last changed
}

// update replaces the book's entries with list; entries new or changed
// get a new round. Entries no longer listed are dropped (their peers are
// simply no longer passed on, as before; receivers keep what they have).
func (b *exchangeBook) update(list []exchangeEntry) {
	if b.entries == nil {
		b.entries = make(map[string]bookEntry, len(list))
	}
	next := b.round + 1
	changed := false
	seen := make(map[string]bool, len(list))
	for _, e := range list {
		seen[e.ID] = true
		h := fnv.New64a()
		for _, a := range e.Addrs {
			h.Write([]byte(a))
			h.Write([]byte{0})
		}
		sum := h.Sum64()
		if old, ok := b.entries[e.ID]; ok && old.sum == sum {
			continue
		}
		b.entries[e.ID] = bookEntry{e: e, sum: sum, round: next}
		changed = true
	}
	for id := range b.entries {
		if !seen[id] {
			delete(b.entries, id)
		}
	}
	if changed {
		b.round = next
	}
}

// since lists the entries changed after round (all with round 0), but
// the one of peer skip, sorted by ID.
func (b *exchangeBook) since(round uint64, skip string) []exchangeEntry {
	var out []exchangeEntry
	for id, be := range b.entries {
		if be.round > round && id != skip {
			out = append(out, be.e)
		}
	}
	slices.SortFunc(out, func(a, b exchangeEntry) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// refreshExchange rebuilds the book from what the node knows now.
func (n *Node) refreshExchange() {
	list := n.peersList()
	n.exMu.Lock()
	n.exBook.update(list)
	n.exMu.Unlock()
}

// peersList lists what to tell peers about: connected peers and peers
// seen within exchangeForget, with every address known, except peers
// this node does not trust.
func (n *Node) peersList() []exchangeEntry {
	now := time.Now()
	type rec struct {
		id    peer.ID
		addrs []multiaddr.Multiaddr
	}
	var recs []rec
	n.mu.Lock()
	for id, k := range n.known {
		if !k.connected && (k.lastSeen.IsZero() || now.Sub(k.lastSeen) > exchangeForget) {
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
	return out
}

// sendPeers sends id the entries changed since it last received the
// list, or the whole list (force: it just connected), in messages of at
// most exchangeMaxPeers entries.
func (n *Node) sendPeers(id peer.ID, force bool) {
	if !n.trust.trusts(id) {
		return
	}
	n.mu.Lock()
	k, ok := n.known[id]
	var from uint64
	if ok && !force {
		from = k.exchanged
	}
	n.mu.Unlock()
	if !ok {
		return
	}
	if force {
		n.refreshExchange()
	}
	n.exMu.Lock()
	entries, round := n.exBook.since(from, id.String()), n.exBook.round
	n.exMu.Unlock()
	for len(entries) > 0 {
		chunk := entries[:min(len(entries), exchangeMaxPeers)]
		entries = entries[len(chunk):]
		if !n.sendExchange(id, chunk) {
			return
		}
	}
	n.mu.Lock()
	if k, ok := n.known[id]; ok {
		k.exchanged = round
	}
	n.mu.Unlock()
}

// sendExchange sends one address-exchange message; false if it failed.
func (n *Node) sendExchange(id peer.ID, entries []exchangeEntry) bool {
	data, err := json.Marshal(entries)
	if err != nil || len(data) > exchangeMaxBytes {
		return false
	}
	ctx, cancel := context.WithTimeout(network.WithNoDial(n.ctx, "address exchange"), exchangeTimeout)
	defer cancel()
	s, err := n.host.NewStream(allowLimited(ctx, "address exchange"), id, n.streamProto(n.exchangeProto()))
	if err != nil {
		n.log.Debug("address exchange: open stream", "peer", id, "err", err)
		return false
	}
	_ = s.SetDeadline(time.Now().Add(exchangeTimeout))
	if err := writeFrame(s, data); err != nil {
		_ = s.Reset()
		n.log.Debug("address exchange: send", "peer", id, "err", err)
		return false
	}
	_ = s.Close()
	return true
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
