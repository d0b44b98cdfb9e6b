package p2p

import (
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"
)

// ParsePeerAddr parses a static peer's multiaddr, which must end in
// /p2p/<peer-id>; the error names the value and says what is expected.
func ParsePeerAddr(s string) (*peer.AddrInfo, error) {
	m, err := multiaddr.NewMultiaddr(s)
	if err != nil {
		return nil, fmt.Errorf("%q is not a multiaddr (%v): use e.g. /ip4/192.0.2.10/tcp/%d/p2p/<peer-id>", s, err, defaultPort)
	}
	ai, err := peer.AddrInfoFromP2pAddr(m)
	if err != nil {
		return nil, fmt.Errorf("%q has no valid /p2p/<peer-id> part (%v): append the peer ID that `starling status` prints on that node", s, err)
	}
	if len(ai.Addrs) == 0 {
		return nil, fmt.Errorf("%q has a peer ID but no address: put the transport first, e.g. /ip4/192.0.2.10/tcp/%d/p2p/%s", s, defaultPort, ai.ID)
	}
	return ai, nil
}

// ParsePeerAddrs parses static peers and merges addresses of the same
// peer; the error names the first bad value.
func ParsePeerAddrs(ss []string) ([]peer.AddrInfo, error) {
	var out []peer.AddrInfo
	idx := map[peer.ID]int{}
	for _, s := range ss {
		ai, err := ParsePeerAddr(s)
		if err != nil {
			return nil, err
		}
		if i, ok := idx[ai.ID]; ok {
			out[i].Addrs = append(out[i].Addrs, ai.Addrs...)
			continue
		}
		idx[ai.ID] = len(out)
		out = append(out, *ai)
	}
	return out, nil
}
