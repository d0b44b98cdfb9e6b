package p2p

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"
	"github.com/starling-sync/starling/internal/testutil"
)

func newKey(t testing.TB) crypto.PrivKey {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// testConfig is a loopback config with fast timings: discovery off,
// re-dial between 20ms and 300ms, a ping every 100ms, silence cut at 1s.
func testConfig(t testing.TB) Config {
	cfg := DefaultConfig("test")
	cfg.Identity = newKey(t)
	cfg.Blockstore = dssync.MutexWrap(ds.NewMapDatastore())
	cfg.ListenAddrs = []multiaddr.Multiaddr{multiaddr.StringCast("/ip4/127.0.0.1/tcp/0")}
	cfg.MDNS = false
	cfg.DHT = false
	cfg.RedialMin = 20 * time.Millisecond
	cfg.RedialMax = 300 * time.Millisecond
	cfg.PingInterval = 100 * time.Millisecond
	cfg.PingTimeout = time.Second
	if os.Getenv("P2P_TEST_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return cfg
}

// newNode starts a node from testConfig adjusted by opts; the test closes it.
func newNode(t testing.TB, opts ...func(*Config)) *Node {
	t.Helper()
	cfg := testConfig(t)
	for _, o := range opts {
		o(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := New(ctx, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return n
}

func info(n *Node) peer.AddrInfo {
	return peer.AddrInfo{ID: n.ID(), Addrs: n.Host().Addrs()}
}

// withPeers adds static peers.
func withPeers(nodes ...*Node) func(*Config) {
	return func(c *Config) {
		for _, n := range nodes {
			c.Peers = append(c.Peers, info(n))
		}
	}
}

func isConnected(a, b *Node) bool {
	return a.Host().Network().Connectedness(b.ID()) == network.Connected
}

func bothConnected(a, b *Node) bool { return isConnected(a, b) && isConnected(b, a) }

// keeps reports whether a has processed the connection to b (its event
// loop runs after libp2p reports the connection).
func keeps(a, b *Node) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	k, ok := a.known[b.ID()]
	return ok && k.connected
}

// waitConnected waits until a and b are connected and both have seen it.
func waitConnected(t testing.TB, a, b *Node) {
	t.Helper()
	testutil.Eventuallyf(t, 5*time.Second, func() bool {
		return bothConnected(a, b) && keeps(a, b) && keeps(b, a)
	}, "%s and %s not connected", a.ID(), b.ID())
}

// message is one result of Receive.
type message struct {
	from string
	data string
}

// collect runs Receive on n until the test ends and returns the messages.
func collect(t testing.TB, n *Node) <-chan message {
	t.Helper()
	ch := make(chan message, 1024)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			from, data, err := n.Replication().Receive(ctx)
			if err != nil {
				return
			}
			select {
			case ch <- message{from, string(data)}:
			case <-ctx.Done():
				return
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return ch
}

// waitFor reads ch until a message with data arrives, failing after
// timeout. Other messages are returned in seen.
func waitFor(t testing.TB, ch <-chan message, data string, timeout time.Duration) (got message, seen []message) {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case m := <-ch:
			if m.data == data {
				return m, seen
			}
			seen = append(seen, m)
		case <-timer.C:
			t.Fatalf("message %.40q not received within %s (saw %d others)", data, timeout, len(seen))
		}
	}
}

// meshReady publishes numbered probes from pub until every receiver has
// received one: gossipsub drops what is published right after a peer's
// subscription appears.
func meshReady(t testing.TB, pub *Node, receivers ...<-chan message) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(10 * time.Second)
	ready := make([]bool, len(receivers))
	for i := 0; ; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("gossip mesh from %s not ready within 10s", pub.ID())
		}
		if err := pub.Replication().Publish(ctx, fmt.Appendf(nil, "probe-%d", i)); err != nil {
			t.Fatalf("publish probe: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
		all := true
		for j, ch := range receivers {
		drain:
			for {
				select {
				case <-ch:
					ready[j] = true
				default:
					break drain
				}
			}
			all = all && ready[j]
		}
		if all {
			break
		}
	}
	// Probes still in flight arrive later; waitFor skips them.
}
