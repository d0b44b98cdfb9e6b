package p2p

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
	"github.com/multiformats/go-multiaddr"

	"github.com/starling-sync/starling/internal/testutil"
)

// mockHost adds a peer with key k to mn, at the i-th made-up address.
func mockHost(t testing.TB, mn mocknet.Mocknet, k crypto.PrivKey, i int) host.Host {
	t.Helper()
	h, err := mn.AddPeer(k, multiaddr.StringCast(fmt.Sprintf("/ip4/10.0.0.%d/tcp/4001", i+1)))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// mockPair starts two nodes on linked mocknet hosts, each host as wrap
// returns it (i: 0 for a, 1 for b); b knows a as a static peer.
func mockPair(t *testing.T, wrap func(i int, h host.Host) host.Host) (a, b *Node) {
	t.Helper()
	mn := mocknet.New()
	t.Cleanup(func() { _ = mn.Close() })
	var nodes []*Node
	for i := range 2 {
		nodes = append(nodes, newNode(t, func(c *Config) {
			c.Host = wrap(i, mockHost(t, mn, c.Identity, i))
			if i == 1 {
				c.Peers = append(c.Peers, info(nodes[0]))
			}
		}))
	}
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	return nodes[0], nodes[1]
}

// TestGivenHost runs two nodes on mocknet hosts: the one that knows the
// other as a static peer dials it, they stay connected well past
// PingTimeout (liveness pings work on a host without a ping service of
// its own), a broadcast crosses, and Close closes the host (once).
func TestGivenHost(t *testing.T) {
	var hb *closeCounter
	a, b := mockPair(t, func(i int, h host.Host) host.Host {
		hb = &closeCounter{Host: h}
		return hb
	})
	if !slices.Contains(a.Host().Mux().Protocols(), ping.ID) {
		t.Fatal("no ping service on the given host")
	}
	if got := a.Host().Network().ListenAddresses(); len(got) != 1 || got[0].String() != "/ip4/10.0.0.1/tcp/4001" {
		t.Errorf("listen addresses %v: New listened on the given host", got)
	}
	waitConnected(t, a, b)
	recv := collect(t, a)
	meshReady(t, b, recv)

	// Four PingTimeouts: without pings answered the connection is cut
	// after one.
	timeout := testConfig(t).PingTimeout
	cut, cancel := b.SubscribePeers()
	defer cancel()
	testutil.Never(t, 4*timeout, "connection cut", func() bool {
		select {
		case ev := <-cut:
			return !ev.Connected
		default:
			return false
		}
	})
	if err := b.Replication().Publish(context.Background(), []byte("hello")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, recv, "hello", 5*time.Second)

	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if hb.closed != 1 {
		t.Errorf("Close closed the given host %d times, want 1", hb.closed)
	}
}

// closeCounter is a host that counts its Close calls.
type closeCounter struct {
	host.Host
	closed int
}

func (c *closeCounter) Close() error {
	c.closed++
	return c.Host.Close()
}

// TestGivenHostWrongIdentity: a host that is not Identity's is refused,
// naming the field, and closed (New took it over).
func TestGivenHostWrongIdentity(t *testing.T) {
	mn := mocknet.New()
	t.Cleanup(func() { _ = mn.Close() })
	cfg := testConfig(t)
	h := &closeCounter{Host: mockHost(t, mn, newKey(t), 0)}
	cfg.Host = h
	_, err := New(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "Host: its peer ID") {
		t.Fatalf("New: %v, want the Host problem", err)
	}
	if h.closed != 1 {
		t.Errorf("host closed %d times, want 1", h.closed)
	}
}

// TestCloseWhileHostEmits: Close does not hang when a goroutine it
// waits for makes the host emit connection events after the event loop
// stopped (a dial on a mocknet host emits synchronously). Closing 100
// mocknet nodes at once hung for minutes: the node's subscription
// (256 events) filled and the host's emit blocked.
func TestCloseWhileHostEmits(t *testing.T) {
	mn := mocknet.New()
	t.Cleanup(func() {
		if !t.Failed() { // after a hang, closing the host hangs too
			_ = mn.Close()
		}
	})
	// Not newNode: its cleanup would wait for a hung Close.
	cfg := testConfig(t)
	cfg.Host = mockHost(t, mn, cfg.Identity, 0)
	n, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	em, err := n.Host().EventBus().Emitter(new(event.EvtPeerConnectednessChanged))
	if err != nil {
		_ = n.Close()
		t.Fatal(err)
	}
	defer em.Close()
	id := testutil.PeerID(t)
	n.wg.Go(func() {
		<-n.ctx.Done()
		for range 2 * 256 {
			_ = em.Emit(event.EvtPeerConnectednessChanged{Peer: id, Connectedness: network.Connected})
		}
	})
	closed := make(chan error, 1)
	go func() { closed <- n.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close hangs while the host emits events")
	}
}

// failGossipStreams is a host whose streams opened for gossipsub fail
// while failing is set, as one opened on a connection that closes
// meanwhile.
type failGossipStreams struct {
	host.Host
	failing  atomic.Bool
	failures atomic.Int64
}

func (h *failGossipStreams) NewStream(ctx context.Context, p peer.ID, pids ...protocol.ID) (network.Stream, error) {
	if h.failing.Load() && slices.ContainsFunc(pids, func(id protocol.ID) bool { return strings.HasPrefix(string(id), "/meshsub/") }) {
		h.failures.Add(1)
		return nil, errors.New("test: the gossipsub stream failed to open")
	}
	return h.Host.NewStream(ctx, p, pids...)
}

// TestLostGossipSessionIsRenewed: when gossipsub's stream to a peer
// fails to open while the peer stays connected, gossipsub forgets the
// peer until identify reports it again (libp2p/go-libp2p-pubsub#433);
// the session check reports it again, and gossipsub opens a new stream.
// Without the check a's gossipsub never lists b, and a's gossip never
// reaches b.
func TestLostGossipSessionIsRenewed(t *testing.T) {
	var fa *failGossipStreams
	a, b := mockPair(t, func(i int, h host.Host) host.Host {
		if i > 0 {
			return h
		}
		fa = &failGossipStreams{Host: h}
		fa.failing.Store(true)
		return fa
	})
	waitConnected(t, a, b)
	// A renewal that fails again: identify's reports are long past.
	testutil.Eventually(t, 5*time.Second, "a's session with b renewed after its stream failed", func() bool {
		return fa.failures.Load() > 0 && a.sessionsRenewed.Load() > 0
	})
	fa.failing.Store(false)
	testutil.Eventually(t, 5*time.Second, "a's gossipsub has a session with b", func() bool {
		return slices.Contains(a.ps.ListPeers(""), b.ID())
	})
	recv := collect(t, b)
	meshReady(t, a, recv)
}
