package bench

import (
	"errors"

	connmgrcore "github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"

	"context"
	"fmt"
	"log/slog"

	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	"github.com/multiformats/go-multiaddr"

	"github.com/starling-sync/starling/node"
)

// The mocknet workloads: many nodes in one process on libp2p's mocknet
// (in-memory connections, no latency). The Starling side is whole nodes
// (node.Open with node.WithHost: entity tree, election, node states,
// statesync, p2p's re-dial loop, address exchange and liveness pings),
// each with its LevelDB in a data directory of its own, without the
// HTTP API. The raw side is go-ds-crdt replicas on map datastores.

// mockDegree is how many ring neighbours each simulated node connects to
// on each side: a sparse, connected graph, as in a real deployment where
// a node does not dial every other one.
const mockDegree = 4

func memDatastore() ds.Batching { return dssync.MutexWrap(ds.NewMapDatastore()) }

// mockTopology connects the nodes along topologyEdges, linking each pair
// first where it is not linked yet (whole Starling nodes are all linked:
// they dial the peers they learn of on their own).
func mockTopology(ctx context.Context, mn mocknet.Mocknet, ids []peer.ID, seed int64) error {
	for _, e := range topologyEdges(len(ids), seed) {
		// mocknet's dials take no context: an interrupt (Ctrl-C, SIGTERM)
		// ends the set-up between two of them. Checked once at the end, it
		// let a 200-node set-up that had slowed to minutes run on.
		if err := ctx.Err(); err != nil {
			return err
		}
		a, b := ids[e[0]], ids[e[1]]
		if len(mn.LinksBetweenPeers(a, b)) == 0 {
			if _, err := mn.LinkPeers(a, b); err != nil {
				return err
			}
		}
		// ConnsToPeer takes the peer's read lock; Connectedness would take
		// its exclusive one (see mockNetwork).
		if len(mn.Net(a).ConnsToPeer(b)) > 0 {
			continue
		}
		if _, err := mn.ConnectPeers(a, b); err != nil {
			return err
		}
	}
	return nil
}

func openRawMock(ctx context.Context, _ string, n int, seed int64) (cluster, error) {
	c := newRawCluster("", mocknet.New())
	for range n {
		if _, err := c.start(ctx); err != nil {
			c.Close()
			return nil, err
		}
	}
	var ids []peer.ID
	for i := range n {
		ids = append(ids, c.node(i).h.ID())
	}
	if err := mockTopology(ctx, c.mn, ids, seed); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// mockHost makes the i-th host of mn for node.WithHost, at a made-up
// address of its own.
func mockHost(mn mocknet.Mocknet, i int) func(crypto.PrivKey) (host.Host, error) {
	return func(k crypto.PrivKey) (host.Host, error) {
		h, err := mn.AddPeer(k, multiaddr.StringCast(fmt.Sprintf("/ip4/10.%d.%d.%d/tcp/4001", i>>16&0xff, i>>8&0xff, i&0xff)))
		if err != nil {
			return nil, err
		}
		// libp2p.New's default connection manager (a real node's):
		// gossipsub tags delivering peers through its decayer, which a
		// mock host lacks (bhost.NewHost without one is given a null
		// manager), and then builds and logs an error for every message
		// delivered ("error bumping delivery tag"): 617,000 warnings in
		// 90 s of 200 idle nodes.
		cm, err := connmgr.NewConnManager(160, 192)
		if err != nil {
			return nil, err
		}
		h.Network().Notify(cm.Notifee())
		return &mockNodeHost{Host: h, cm: cm}, nil
	}
}

// mockNodeHost is a mocknet host made as libp2p.New makes a node's: it
// has a connection manager, and keeps WithNoDial's promise (NewStream).
type mockNodeHost struct {
	host.Host
	cm *connmgr.BasicConnMgr
}

func (h *mockNodeHost) ConnManager() connmgrcore.ConnManager { return h.cm }

func (h *mockNodeHost) Close() error {
	return errors.Join(h.Host.Close(), h.cm.Close())
}

// NewStream keeps libp2p's promise that a stream opened with
// network.WithNoDial does not connect: the mocknet's network dials for
// every new stream (go-libp2p v0.51, mock_peernet.go, NewStream), so a
// whole node's liveness pings and address exchanges re-dialled the
// peers its bound had just closed or its liveness check had just cut,
// which a real swarm does not: 200 simulated nodes churned connections
// (one held 63, the high water mark was 48) and queued thousands of dials
// on the mocknet's locks.
//
// To a connected peer it opens the stream without the host's Connect,
// whose check takes the mocknet's exclusive lock (see mockNetwork).
func (h *mockNodeHost) NewStream(ctx context.Context, p peer.ID, pids ...protocol.ID) (network.Stream, error) {
	switch noDial, _ := network.GetNoDial(ctx); {
	case h.Network().Connectedness(p) == network.Connected:
		ctx = network.WithNoDial(ctx, "connected")
	case noDial:
		return nil, network.ErrNoConn
	}
	return h.Host.NewStream(ctx, p, pids...)
}

// Network is the mocknet peer's network with a Connectedness that takes
// a read lock (mockNetwork).
func (h *mockNodeHost) Network() network.Network { return mockNetwork{h.Host.Network()} }

// mockNetwork is a mocknet peer's network whose Connectedness takes the
// peer's read lock, as a real swarm's does. The mocknet's own takes its
// exclusive lock (go-libp2p v0.51, mock_peernet.go), which every new
// connection also takes, on both of its peers at once, while it waits
// for the second: with 100 whole nodes, whose gossipsub, pings, monitor
// and address book ask it for every peer, thousands of goroutines
// queued behind those locks (1,984 in Connectedness in one dump), and
// gossipsub's event loop, which asks it for every dead peer, stalled
// for more than 10 s on some nodes: a write was not seen on them within
// a minute.
type mockNetwork struct{ network.Network }

func (n mockNetwork) Connectedness(p peer.ID) network.Connectedness {
	if len(n.ConnsToPeer(p)) > 0 {
		return network.Connected
	}
	return network.NotConnected
}

// openStarlingMock starts n whole Starling nodes on one mocknet, data
// under dir, all linked (any node can dial any other), and connects
// them as mockTopology does; their address exchange and re-dial loops
// then connect each node to up to p2p's MaxPeers others (12), as on a
// LAN: every pair up to 13 nodes.
func openStarlingMock(log *slog.Logger, opts ...node.Option) func(ctx context.Context, dir string, n int, seed int64) (cluster, error) {
	return func(ctx context.Context, dir string, n int, seed int64) (_ cluster, err error) {
		c := &starlingCluster{dir: dir, log: log, opts: opts, mn: mocknet.New()}
		defer func() {
			if err != nil {
				_ = c.Close()
			}
		}()
		if err := c.openAlone(ctx, n); err != nil {
			return nil, err
		}
		if err := c.mn.LinkAll(); err != nil {
			return nil, err
		}
		ids := make([]peer.ID, n)
		for i := range ids {
			ids[i] = c.node(i).PeerID()
		}
		if err := mockTopology(ctx, c.mn, ids, seed); err != nil {
			return nil, err
		}
		return c, nil
	}
}
