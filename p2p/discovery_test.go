package p2p

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	drouting "github.com/libp2p/go-libp2p/p2p/discovery/routing"
	dutil "github.com/libp2p/go-libp2p/p2p/discovery/util"
	"github.com/multiformats/go-multiaddr"
	"github.com/starling-sync/starling/internal/testutil"
)

// uniqueEnv keeps concurrent test runs on this machine from finding each
// other by mDNS.
func uniqueEnv(t testing.TB) func(*Config) {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	env := "test-" + hex.EncodeToString(b)
	return func(c *Config) { c.Env = env }
}

// B and C know only A; the DHT rendezvous (advertise after the first
// connection, then find) brings them together.
func TestDHTRendezvous(t *testing.T) {
	env := uniqueEnv(t)
	dhtOn := func(c *Config) { c.DHT = true }
	a := newNode(t, env, dhtOn)
	b := newNode(t, env, dhtOn, withPeers(a))
	c := newNode(t, env, dhtOn, withPeers(a))
	waitConnected(t, a, b)
	waitConnected(t, a, c)
	start := time.Now()
	testutil.Eventuallyf(t, 20*time.Second, func() bool { return bothConnected(b, c) }, "B and C did not find each other through the DHT")
	t.Logf("B and C connected %s after both reached A", time.Since(start).Round(time.Millisecond))

	// And they keep each other: C is a known peer of B now.
	var known bool
	for _, p := range b.Peers() {
		known = known || p.ID == c.ID()
	}
	if !known {
		t.Fatal("B does not keep C")
	}

	// The DHT's own routing-table walk usually connects B and C first;
	// check the rendezvous itself: every node's record is found.
	rd := drouting.NewRoutingDiscovery(b.dht)
	testutil.Eventuallyf(t, 20*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		found, err := dutil.FindPeers(ctx, rd, b.names.rendezvous)
		if err != nil {
			return false
		}
		seen := map[peer.ID]bool{}
		for _, ai := range found {
			seen[ai.ID] = true
		}
		return seen[a.ID()] && seen[b.ID()] && seen[c.ID()]
	}, "rendezvous records of A, B and C not all found")
	t.Logf("all rendezvous records found %s after start", time.Since(start).Round(time.Millisecond))
}

// mDNS does not work on loopback (no MULTICAST flag); the test needs a
// real multicast interface and listens on all addresses.
func TestMDNSDiscovery(t *testing.T) {
	if !haveMulticast() {
		t.Skip("no up, multicast, non-loopback interface")
	}
	env := uniqueEnv(t)
	on := func(c *Config) {
		c.MDNS = true
		c.ListenAddrs = []multiaddr.Multiaddr{multiaddr.StringCast("/ip4/0.0.0.0/tcp/0")}
	}
	a := newNode(t, env, on)
	b := newNode(t, env, on)
	testutil.Eventuallyf(t, 10*time.Second, func() bool { return bothConnected(a, b) }, "nodes did not find each other by mDNS")

	// Another environment's node stays apart.
	other := newNode(t, uniqueEnv(t), on)
	testutil.Neverf(t, time.Second, func() bool { return isConnected(a, other) || isConnected(b, other) },
		"mDNS mixed two environments")
}

func haveMulticast() bool {
	ifaces, err := net.Interfaces()
	if err != nil {
		return false
	}
	for _, ifi := range ifaces {
		if ifi.Flags&net.FlagUp != 0 && ifi.Flags&net.FlagMulticast != 0 && ifi.Flags&net.FlagLoopback == 0 {
			return true
		}
	}
	return false
}
