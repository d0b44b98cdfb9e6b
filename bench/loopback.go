package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	"golang.org/x/sync/errgroup"

	"github.com/starling-sync/starling/node"
)

// The loopback network of the simulated-cluster workloads (--net
// loopback): every node is a real libp2p host in this process, on
// 127.0.0.1 (TCP, the private network, TLS, yamux), so a message costs
// what it costs between real nodes, and no lock is shared between
// nodes. libp2p's mocknet shares one: its Connectedness takes a peer's
// exclusive lock, as every new or closed connection does, and new
// streams wait behind it; with 200 whole nodes, pings waited seconds
// behind connection changes, the liveness checks cut live peers, the
// re-dials changed connections again, and the cluster never settled
// (0.5-1.3 connections opened per node per s while idle, 0.00 on
// loopback).

// openStarlingLoopback starts n whole Starling nodes on 127.0.0.1, data
// under dir, without their HTTP API, and connects them along
// topologyEdges; their address exchange and re-dial loops then connect
// each node to up to p2p's MaxPeers others.
func openStarlingLoopback(log *slog.Logger, progress func(string, ...any), opts ...node.Option) func(ctx context.Context, dir string, n int, seed int64) (cluster, error) {
	return func(ctx context.Context, dir string, n int, seed int64) (_ cluster, err error) {
		c := &starlingCluster{dir: dir, log: log, opts: append([]node.Option{node.WithoutAPI()}, opts...)}
		defer func() {
			if err != nil {
				_ = c.Close()
			}
		}()
		if err := c.openAlone(ctx, n); err != nil {
			return nil, err
		}
		progress("starling: %d nodes open; connecting them", n)
		err = connectTopology(ctx, "starling", n, seed, progress, func(ctx context.Context, i, j int) error {
			return connectHost(ctx, c.node(i).P2P().Host(), c.node(j).P2P().Host())
		})
		if err != nil {
			return nil, err
		}
		return c, nil
	}
}

// openRawLoopback starts n raw go-ds-crdt replicas on 127.0.0.1, each
// with its LevelDB under dir, connected along topologyEdges.
func openRawLoopback(progress func(string, ...any)) func(ctx context.Context, dir string, n int, seed int64) (cluster, error) {
	return func(ctx context.Context, dir string, n int, seed int64) (cluster, error) {
		c := newRawCluster(dir, nil)
		for range n {
			if _, err := c.start(ctx); err != nil {
				c.Close()
				return nil, err
			}
		}
		progress("raw: %d nodes open; connecting them", n)
		if err := connectTopology(ctx, "raw", n, seed, progress, c.connect); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	}
}

// connectHost connects a to b, clearing a's dial backoff first: a
// failed try must not make the next fail at once ("dial backoff").
func connectHost(ctx context.Context, a, b host.Host) error {
	if sw, ok := a.Network().(*swarm.Swarm); ok {
		sw.Backoff().Clear(b.ID())
	}
	return a.Connect(ctx, peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()})
}

// loopbackDials is how many of the set-up's dials run at once, and
// loopbackTries how often each is tried. Every dial is a TCP, private
// network, TLS and yamux handshake, in a process whose nodes already
// connected keep its two cores busy: with 200 nodes, 8 or 16 dials at a
// time failed as soon as 60 nodes were connected (a handshake outlasted
// libp2p's 5 s timeout for local addresses), 2 at a time did so three
// times in a row for one pair, and naming the neighbours as the nodes'
// static peers (all dialling at once) logged 10,000 failed handshakes in
// three minutes. One at a time connected 200 nodes in about 4 minutes on
// the WAN election preset; on the LAN preset, whose nodes suspect each
// other once round trips pass 150 ms, it failed for one pair three times
// too (give 200 nodes --election-preset wan).
const (
	loopbackDials    = 1
	loopbackTries    = 3
	loopbackProgress = 30 * time.Second
)

// connectTopology connects node i to node j, for each pair of
// topologyEdges, a few at a time, and says how far it came every
// loopbackProgress.
func connectTopology(ctx context.Context, sys string, n int, seed int64, progress func(string, ...any), connect func(ctx context.Context, i, j int) error) error {
	edges := topologyEdges(n, seed)
	var done atomic.Int64
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		t := time.NewTicker(loopbackProgress)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				progress("%s: connected %d of %d pairs", sys, done.Load(), len(edges))
			}
		}
	}()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(loopbackDials)
	for _, e := range edges {
		g.Go(func() error {
			defer done.Add(1)
			var errs []error
			for range loopbackTries {
				err := connect(gctx, e[0], e[1])
				if err == nil {
					return nil
				}
				if gctx.Err() != nil {
					return gctx.Err()
				}
				errs = append(errs, err)
			}
			return fmt.Errorf("connect node %d to node %d (%d tries): %w", e[0]+1, e[1]+1, loopbackTries, errors.Join(errs...))
		})
	}
	return g.Wait()
}

// topologyEdges are the pairs mockTopology connects: node i to its next
// mockDegree ring neighbours and to one random node (seeded), without
// self-loops.
func topologyEdges(n int, seed int64) [][2]int {
	rng := rand.New(rand.NewSource(seed))
	var out [][2]int
	for i := range n {
		for d := 1; d <= mockDegree && d < n; d++ {
			out = append(out, [2]int{i, (i + d) % n})
		}
		if j := rng.Intn(n); j != i {
			out = append(out, [2]int{i, j})
		}
	}
	return out
}
