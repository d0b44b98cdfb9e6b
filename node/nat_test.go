package node_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"
	"github.com/starling-sync/starling/internal/testutil"
	"github.com/starling-sync/starling/node"
	"github.com/starling-sync/starling/node/nodetest"
)

// TestRelayedPeerIsConnected: a peer reached only through a relay is
// shown connected (sync health Connected, connection "relayed") in the
// cluster table, not Disconnected (the monitor counted only direct
// connections), and a write replicates to it.
func TestRelayedPeerIsConnected(t *testing.T) {
	reach := func(r string) node.Option {
		return node.WithConfig(func(c *node.Config) { c.Reachability = r })
	}
	relay := nodetest.Start(t, "relay", reach("public"))
	b := nodetest.Start(t, "b", reach("private"))
	a := nodetest.Start(t, "a", reach("private"), node.WithConfig(func(c *node.Config) { c.AutoRelay = false }))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	relayInfo := peer.AddrInfo{ID: relay.P2P().ID()}
	for _, ad := range relay.P2P().Host().Network().ListenAddresses() {
		if _, err := ad.ValueForProtocol(multiaddr.P_TCP); err == nil {
			relayInfo.Addrs = append(relayInfo.Addrs, ad)
		}
	}
	if err := b.P2P().AddPeer(ctx, relayInfo); err != nil {
		t.Fatal(err)
	}
	testutil.Eventuallyf(t, 20*time.Second, func() bool { return relay.P2P().NATStatus().Reservations > 0 },
		"b reserved no slot on the relay")
	circuit := relayInfo.Addrs[0].Encapsulate(multiaddr.StringCast("/p2p/" + relayInfo.ID.String() + "/p2p-circuit"))
	if err := a.P2P().AddPeer(ctx, peer.AddrInfo{ID: b.P2P().ID(), Addrs: []multiaddr.Multiaddr{circuit}}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventuallyf(t, 20*time.Second, func() bool {
		cs, err := a.ClusterStatus(ctx)
		if err != nil {
			return false
		}
		for _, v := range cs.Nodes {
			if v.PeerID == b.P2P().ID().String() {
				return v.Connected && v.Health == "Connected" && v.Connection == "relayed"
			}
		}
		return false
	}, "a does not show b connected through the relay: %s", func() string {
		cs, _ := a.ClusterStatus(ctx)
		out := ""
		for _, v := range cs.Nodes {
			out += fmt.Sprintf("%+v\n", v)
		}
		for _, p := range a.P2P().Peers() {
			out += fmt.Sprintf("p2p %+v\n", p)
		}
		return out
	}())
	// And it stays so: the monitor reconciles with the network every
	// second (it counted only direct connections, and flipped it back).
	testutil.Neverf(t, 3*time.Second, func() bool {
		cs, err := a.ClusterStatus(ctx)
		if err != nil {
			return true
		}
		for _, v := range cs.Nodes {
			if v.PeerID == b.P2P().ID().String() {
				return !v.Connected || v.Health != "Connected" || v.Connection != "relayed"
			}
		}
		return true
	}, "a lost sight of b connected through the relay")
	if c := a.P2P().Host().Network().Connectedness(b.P2P().ID()); c != network.Limited {
		t.Fatalf("a-b connectedness %v, want Limited (relayed only)", c)
	}
}
