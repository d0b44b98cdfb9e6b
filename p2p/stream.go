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
func (n *Node) OpenStream(ctx context.Context, to peer.ID, name string) (network.Stream, error) {
	if !n.trust.trusts(to) {
		return nil, fmt.Errorf("p2p: %s is not a trusted peer", to)
	}
	s, err := n.host.NewStream(ctx, to, n.streamProto(name))
	if err != nil {
		return nil, fmt.Errorf("p2p: open %s stream to %s: %w", name, to, err)
	}
	return s, nil
}
