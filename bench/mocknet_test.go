package bench

import (
	"context"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/libp2p/go-libp2p/core/connmgr"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
)

// An interrupted set-up stops before the next dial: mocknet's dials take
// no context, and a 200-node set-up that had slowed to minutes ran on
// after Ctrl-C, since the context was only looked at once all were made.
func TestMockTopologyStopsWhenInterrupted(t *testing.T) {
	mn := mocknet.New()
	t.Cleanup(func() { _ = mn.Close() })
	var ids []peer.ID
	for range 6 {
		h, err := mn.GenPeer()
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, h.ID())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := mockTopology(ctx, mn, ids, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("mockTopology after an interrupt: %v, want context.Canceled", err)
	}
	if links := mn.Links(); len(links) != 0 {
		t.Fatalf("%d peers linked after the interrupt, want none", len(links))
	}
}

// A stream opened with network.WithNoDial to a peer that is not
// connected fails and connects nothing, as on a real swarm; the
// mocknet's own network dials for it. Other streams still dial.
func TestMockHostStreamWithNoDialDoesNotConnect(t *testing.T) {
	_, hs := linkedMockHosts(t, 2)
	const proto = "/test/1"
	hs[1].SetStreamHandler(proto, func(s network.Stream) { _ = s.Close() })
	ctx := network.WithNoDial(context.Background(), "test")
	if _, err := hs[0].NewStream(ctx, hs[1].ID(), proto); !errors.Is(err, network.ErrNoConn) {
		t.Fatalf("stream with WithNoDial to an unconnected peer: %v, want network.ErrNoConn", err)
	}
	if c := hs[0].Network().Connectedness(hs[1].ID()); c == network.Connected {
		t.Fatal("a stream opened with WithNoDial connected the peer")
	}
	s, err := hs[0].NewStream(context.Background(), hs[1].ID(), proto)
	if err != nil {
		t.Fatalf("stream that may dial: %v", err)
	}
	_ = s.Close()
}

// A mock node host has a connection manager with a decayer, as a node
// made by libp2p.New: gossipsub tags its peers through it, and without
// one it logged an error for every message delivered.
func TestMockHostDecaysTags(t *testing.T) {
	_, hs := linkedMockHosts(t, 1)
	h := hs[0]
	if _, ok := connmgr.SupportsDecay(h.ConnManager()); !ok {
		t.Fatalf("the mock host's connection manager (%T) has no decayer", h.ConnManager())
	}
}

// A mock node host's network tells connected from not connected
// without the mocknet's exclusive lock (mockNetwork), and a stream to a
// connected peer goes over the connection there is.
func TestMockHostConnectedness(t *testing.T) {
	mn, hs := linkedMockHosts(t, 2)
	a, b := hs[0], hs[1]
	if c := a.Network().Connectedness(b.ID()); c != network.NotConnected {
		t.Fatalf("before any connection: %v, want NotConnected", c)
	}
	if _, err := mn.ConnectPeers(a.ID(), b.ID()); err != nil {
		t.Fatal(err)
	}
	if c := a.Network().Connectedness(b.ID()); c != network.Connected {
		t.Fatalf("connected: %v, want Connected", c)
	}
	const proto = "/test/1"
	b.SetStreamHandler(proto, func(s network.Stream) { _ = s.Close() })
	for range 3 {
		s, err := a.NewStream(context.Background(), b.ID(), proto)
		if err != nil {
			t.Fatal(err)
		}
		_ = s.Close()
	}
	if n := len(a.Network().ConnsToPeer(b.ID())); n != 1 {
		t.Fatalf("%d connections after three streams, want the one there was", n)
	}
	if err := a.Network().ClosePeer(b.ID()); err != nil {
		t.Fatal(err)
	}
	if c := a.Network().Connectedness(b.ID()); c != network.NotConnected {
		t.Fatalf("after the close: %v, want NotConnected", c)
	}
}

// linkedMockHosts makes n mock node hosts (mockHost) on a new mocknet,
// linked but not connected.
func linkedMockHosts(t *testing.T, n int) (mocknet.Mocknet, []host.Host) {
	t.Helper()
	mn := mocknet.New()
	t.Cleanup(func() { _ = mn.Close() })
	var hs []host.Host
	for i := range n {
		k, _, err := crypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		h, err := mockHost(mn, i)(k)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = h.Close() })
		hs = append(hs, h)
	}
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	return mn, hs
}
