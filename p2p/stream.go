package p2p

import (
	"context"
	"fmt"
	"io"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// streamProto names a protocol of this environment:
// "/starling/<env>/<name>".
func (n *Node) streamProto(name string) protocol.ID {
	return n.names.dhtPrefix + protocol.ID("/"+name)
}

// HandleStream serves the protocol name ("state/1.0.0" becomes
// "/starling/<env>/state/1.0.0") with fn, which owns the stream and must
// close it. Streams from peers this node does not trust are reset
// before fn sees them.
func (n *Node) HandleStream(name string, fn func(from peer.ID, s io.ReadWriteCloser)) {
	n.host.SetStreamHandler(n.streamProto(name), func(s network.Stream) {
		from := s.Conn().RemotePeer()
		if !n.trust.trusts(from) {
			n.log.Debug("refused stream from untrusted peer", "peer", from, "protocol", name)
			_ = s.Reset()
			return
		}
		fn(from, s)
	})
}

// OpenStream opens a stream of the protocol name to a peer (see
// HandleStream). The caller closes it; CloseWrite ends the request side.
//
// It may use a relayed connection (see allowLimited): the state transfer
// is the only user, and when two nodes have no direct path it is that or
// nothing. A transfer larger than the relay's data limit (16 MiB each
// way) is cut and fails; the node then joins from a peer it reaches
// directly.
func (n *Node) OpenStream(ctx context.Context, to peer.ID, name string) (network.Stream, error) {
	if !n.trust.trusts(to) {
		return nil, fmt.Errorf("p2p: %s is not a trusted peer", to)
	}
	s, err := n.host.NewStream(allowLimited(ctx, name), to, n.streamProto(name))
	if err != nil {
		return nil, fmt.Errorf("p2p: open %s stream to %s: %w", name, to, err)
	}
	return s, nil
}

// allowLimited lets a stream use a relayed (limited) connection. libp2p
// refuses new streams on those unless the opener opts in, and waits for a
// direct one instead (hole punching), up to the dial timeout.
//
// Which protocols opt in, and why (gossipsub and bitswap cannot: they
// open their streams themselves and skip limited connections, so gossip
// reaches a relayed peer through the nodes that reach both):
//   - the replication stream (heads exchange on connect, branch requests
//     and replies, gap fill): small messages, at most maxMessageSize, the
//     only way blocks reach a peer with no direct path;
//   - the state transfer (OpenStream), within the relay's data limit;
//   - the address exchange (exchange.go): a few KiB, and it is what lets
//     two sites find each other's relay addresses;
//   - libp2p's ping (liveness), identify and DCUtR opt in on their own.
func allowLimited(ctx context.Context, why string) context.Context {
	return network.WithAllowLimitedConn(ctx, why)
}
