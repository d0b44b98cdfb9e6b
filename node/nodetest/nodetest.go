// Package nodetest starts real Starling nodes in a test's process: on
// loopback, with port 0 for libp2p and the API, static peers only (no
// mDNS, no DHT), each in a data directory of the test's temp dir, closed
// when the test ends. node's own tests, cmd's and the bench share it.
package nodetest

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	"github.com/multiformats/go-multiaddr"

	"github.com/starling-sync/starling/internal/testutil"
	"github.com/starling-sync/starling/node"
)

// Env is the environment of test nodes.
const Env = "e2e"

// openTimeout bounds a test node's start.
const openTimeout = 30 * time.Second

// PSK returns the private network key of test nodes: one fixed key, so
// that nodes initialised one by one connect, as the nodes of a real
// cluster do with a copied swarm.key. A new slice each call.
func PSK() []byte {
	return []byte("starling-nodetest-psk-32-bytes!!")
}

// Init creates a test node's data directory dir with node ID id, using
// the test key PSK.
func Init(t testing.TB, dir, id string) {
	t.Helper()
	_, err := node.Init(dir, node.InitOptions{PSK: PSK(), Settings: node.Settings{
		Env:         Env,
		NodeID:      id,
		ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"},
		APIAddr:     "127.0.0.1:0",
		NoMDNS:      true,
		NoDHT:       true,
	}})
	if err != nil {
		t.Fatal(err)
	}
}

// Open starts the node of dir and closes it when the test ends.
func Open(t testing.TB, dir string, opts ...node.Option) *node.Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), openTimeout)
	defer cancel()
	n, err := node.Open(ctx, dir, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}

// Start initialises and opens a node with ID id in a new directory of
// the test's temp dir.
func Start(t testing.TB, id string, opts ...node.Option) *node.Node {
	t.Helper()
	dir := filepath.Join(t.TempDir(), id)
	Init(t, dir, id)
	return Open(t, dir, opts...)
}

// Cluster starts k nodes node1..nodek and connects each to every other
// (static peers, added through the API), waiting until they are.
func Cluster(t testing.TB, k int, opts ...node.Option) []*node.Node {
	t.Helper()
	nodes := openNodes(t, k, func(int) []node.Option { return opts })
	Connect(t, nodes)
	return nodes
}

// openNodes initialises and opens k nodes node1..nodek in a test
// directory each, node i with the options of optsFor(i).
func openNodes(t testing.TB, k int, optsFor func(i int) []node.Option) []*node.Node {
	t.Helper()
	root := t.TempDir()
	nodes := make([]*node.Node, k)
	for i := range nodes {
		id := fmt.Sprintf("node%d", i+1)
		dir := filepath.Join(root, id)
		Init(t, dir, id)
		nodes[i] = Open(t, dir, optsFor(i)...)
	}
	return nodes
}

// Connect makes each node a static peer of every later one and waits
// until every node is connected to all the others.
func Connect(t testing.TB, nodes []*node.Node) {
	t.Helper()
	ctx := context.Background()
	for i, a := range nodes {
		for _, b := range nodes[i+1:] {
			addr := b.P2P().Addrs()[0].String() // includes /p2p/<id>
			if _, err := a.Client().AddPeer(ctx, addr); err != nil {
				t.Fatalf("%s: add peer %s: %v", a.NodeID(), addr, err)
			}
		}
	}
	waitFullMesh(t, nodes)
}

// waitFullMesh waits until every node is connected to every other.
func waitFullMesh(t testing.TB, nodes []*node.Node) {
	t.Helper()
	for _, n := range nodes {
		testutil.Eventually(t, 15*time.Second, n.NodeID()+" connected to all", func() bool {
			c := 0
			for _, p := range n.P2P().Peers() {
				if p.Connected {
					c++
				}
			}
			return c >= len(nodes)-1
		})
	}
}

// MockHost makes hosts on mn for WithHost: the i-th at a made-up
// address of its own (mocknet carries no real traffic).
func MockHost(mn mocknet.Mocknet, i int) func(crypto.PrivKey) (host.Host, error) {
	return func(k crypto.PrivKey) (host.Host, error) {
		return mn.AddPeer(k, multiaddr.StringCast(fmt.Sprintf("/ip4/10.%d.%d.%d/tcp/4001", i>>16&0xff, i>>8&0xff, i&0xff)))
	}
}

// MockCluster starts k nodes node1..nodek on one libp2p mocknet, without
// their HTTP API, links every pair and connects node i to node i+1 only:
// the nodes' own address exchange and re-dial loops connect the rest,
// which MockCluster waits for. The mocknet is closed when the test ends,
// after the nodes.
func MockCluster(t testing.TB, k int, opts ...node.Option) ([]*node.Node, mocknet.Mocknet) {
	t.Helper()
	mn := mocknet.New()
	t.Cleanup(func() { _ = mn.Close() })
	nodes := openNodes(t, k, func(i int) []node.Option {
		return append([]node.Option{node.WithoutAPI(), node.WithHost(MockHost(mn, i))}, opts...)
	})
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	for i := range nodes[1:] {
		if _, err := mn.ConnectPeers(nodes[i].PeerID(), nodes[i+1].PeerID()); err != nil {
			t.Fatal(err)
		}
	}
	waitFullMesh(t, nodes)
	return nodes, mn
}

// EntitySnapshot is what a node's API shows of the entity tree (the whole
// tree with fields, the schemas) and how many writes it committed, as
// one string: equal snapshots before and after a refused request prove
// that the request changed nothing.
func EntitySnapshot(t testing.TB, n *node.Node) string {
	t.Helper()
	ctx := context.Background()
	tr, err := n.Client().Tree(ctx, "/", -1, true)
	if err != nil {
		t.Fatal(err)
	}
	scs, err := n.Client().Schemas(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal([]any{tr, scs, n.Store().Status(ctx).OpsCommitted})
	return string(b)
}
