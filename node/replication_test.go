package node_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/starling-sync/starling/internal/testutil"
	"github.com/starling-sync/starling/node"
	"github.com/starling-sync/starling/node/nodetest"
)

// partition cuts the given nodes off from the others with the connection
// gater on both sides; the processes keep running.
func partition(nodes []*node.Node, cut ...*node.Node) {
	for _, c := range cut {
		for _, o := range nodes {
			if o != c {
				o.P2P().Block(c.PeerID())
				c.P2P().Block(o.PeerID())
			}
		}
	}
}

func heal(nodes []*node.Node) {
	for _, a := range nodes {
		for _, b := range nodes {
			if a != b {
				a.P2P().Unblock(b.PeerID())
			}
		}
	}
}

func countPrefix(t testing.TB, n *node.Node, prefix string) int {
	t.Helper()
	res, err := n.Store().Query(context.Background(), query.Query{Prefix: prefix, KeysOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	all, err := res.Rest()
	if err != nil {
		t.Fatal(err)
	}
	return len(all)
}

// writeConcurrently writes count keys under prefix from writers goroutines.
func writeConcurrently(t testing.TB, n *node.Node, prefix string, count, writers int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < count; i += writers {
				if err := n.Store().Put(context.Background(), ds.NewKey(fmt.Sprintf("%s/%06d", prefix, i)), []byte("v")); err != nil {
					errs <- err
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestHeal10kKeys cuts one node off, writes 10,000 keys on the other side
// (16 concurrent writers, as on a busy node) and on the cut-off node, and
// measures how long after the heal every node holds every key.
func TestHeal10kKeys(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 10,000 keys")
	}
	nodes := nodetest.Cluster(t, 3)
	a, c := nodes[0], nodes[2]
	partition(nodes, c)
	testutil.Eventually(t, 10*time.Second, "node3 cut off", func() bool { return !anyConnected(c) })

	const keys = 10_000
	start := time.Now()
	writeConcurrently(t, a, "/heal/a", keys, 16)
	writeConcurrently(t, c, "/heal/c", 100, 4)
	st := a.Store().Status(context.Background())
	t.Logf("wrote %d keys on node1 in %v (%d deltas) during the partition", keys, time.Since(start), st.Commits)
	if got := countPrefix(t, c, "/heal/a"); got != 0 {
		t.Fatalf("node3 got %d keys through the partition", got)
	}

	start = time.Now()
	heal(nodes)
	for _, n := range nodes {
		testutil.Eventually(t, 60*time.Second, n.NodeID()+" holds every key", func() bool {
			return countPrefix(t, n, "/heal/a") == keys && countPrefix(t, n, "/heal/c") == 100
		})
	}
	t.Logf("FIGURE heal: %d keys written on one side converged on all 3 nodes %v after the heal", keys, time.Since(start))
}

func anyConnected(n *node.Node) bool {
	for _, p := range n.P2P().Peers() {
		if p.Connected {
			return true
		}
	}
	return false
}

// TestRestartCatchesUp stops a node, writes while it is down, and starts
// it again on the same directory: same peer ID, its old data, and what it
// missed.
func TestRestartCatchesUp(t *testing.T) {
	nodes := nodetest.Cluster(t, 3)
	a, c := nodes[0], nodes[2]
	ctx := context.Background()
	if err := c.Store().Put(ctx, ds.NewKey("/mine"), []byte("before")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "first write replicated", func() bool {
		ok, _ := a.Store().Has(ctx, ds.NewKey("/mine"))
		return ok
	})
	dir, id := c.Dir(), c.PeerID()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	writeConcurrently(t, a, "/missed", 500, 8)

	var peers []string
	for _, n := range nodes[:2] {
		peers = append(peers, n.P2P().Addrs()[0].String())
	}
	c2 := nodetest.Open(t, dir, node.WithConfig(func(cfg *node.Config) { cfg.Peers = append(cfg.Peers, peers...) }))
	if c2.PeerID() != id {
		t.Fatalf("peer ID changed across restart: %s -> %s", id, c2.PeerID())
	}
	if v, err := c2.Store().Get(ctx, ds.NewKey("/mine")); err != nil || string(v) != "before" {
		t.Fatalf("own data after restart: %q, %v", v, err)
	}
	testutil.Eventually(t, 30*time.Second, "restarted node catches up", func() bool {
		return countPrefix(t, c2, "/missed") == 500
	})
}

// BenchmarkPut measures writes per second on one node: one writer, and 64
// concurrent writers sharing group commits.
func BenchmarkPut(b *testing.B) {
	for _, writers := range []int{1, 64} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			dir := filepath.Join(b.TempDir(), "n")
			initBenchNode(b, dir)
			n, err := node.Open(context.Background(), dir)
			if err != nil {
				b.Fatal(err)
			}
			defer n.Close()
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			per := (b.N + writers - 1) / writers
			for w := 0; w < writers; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					for i := 0; i < per; i++ {
						if err := n.Store().Put(context.Background(), ds.NewKey(fmt.Sprintf("/b/%d/%d", w, i)), []byte("value")); err != nil {
							b.Error(err)
							return
						}
					}
				}(w)
			}
			wg.Wait()
			b.ReportMetric(float64(per*writers)/time.Since(start).Seconds(), "writes/s")
		})
	}
}

// BenchmarkWriteVisible measures the time from the start of a write on
// node1 until node2 and node3 both see it (change feed), one write at a
// time, and reports the median and 99th percentile.
func BenchmarkWriteVisible(b *testing.B) {
	root := b.TempDir()
	var nodes []*node.Node
	for i := 1; i <= 3; i++ {
		dir := filepath.Join(root, fmt.Sprintf("node%d", i))
		initBenchNode(b, dir)
		n, err := node.Open(context.Background(), dir)
		if err != nil {
			b.Fatal(err)
		}
		defer n.Close()
		nodes = append(nodes, n)
	}
	for _, n := range nodes[1:] {
		if err := nodes[0].P2P().AddPeer(context.Background(), addrInfo(b, n)); err != nil {
			b.Fatal(err)
		}
	}
	if err := nodes[1].P2P().AddPeer(context.Background(), addrInfo(b, nodes[2])); err != nil {
		b.Fatal(err)
	}
	var subs []<-chan struct{}
	for _, n := range nodes[1:] {
		sub := n.Store().Subscribe(ds.NewKey("/vis"), 1024)
		defer sub.Close()
		ch := make(chan struct{}, 1024)
		go func() {
			for range sub.C() {
				ch <- struct{}{}
			}
		}()
		subs = append(subs, ch)
	}
	// Warm up until a write reaches both peers (mesh formed).
	ctx := context.Background()
	for i := 0; ; i++ {
		if err := nodes[0].Store().Put(ctx, ds.NewKey(fmt.Sprintf("/vis/warm/%d", i)), nil); err != nil {
			b.Fatal(err)
		}
		if countPrefixB(b, nodes[1], "/vis/warm") > 0 && countPrefixB(b, nodes[2], "/vis/warm") > 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, s := range subs {
		for len(s) > 0 {
			<-s
		}
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if err := nodes[0].Store().Put(ctx, ds.NewKey(fmt.Sprintf("/vis/%d", i)), []byte("v")); err != nil {
			b.Fatal(err)
		}
		for _, s := range subs {
			select {
			case <-s:
			case <-time.After(10 * time.Second):
				b.Fatal("write not visible within 10s")
			}
		}
		lat = append(lat, time.Since(start))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

func countPrefixB(b *testing.B, n *node.Node, prefix string) int { return countPrefix(b, n, prefix) }

func initBenchNode(b *testing.B, dir string) {
	b.Helper()
	_, err := node.Init(dir, node.InitOptions{PSK: nodetest.PSK(), Settings: node.Settings{
		Env: "bench", ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, APIAddr: "127.0.0.1:0", NoMDNS: true, NoDHT: true,
	}})
	if err != nil {
		b.Fatal(err)
	}
}

func addrInfo(tb testing.TB, n *node.Node) peer.AddrInfo {
	tb.Helper()
	return peer.AddrInfo{ID: n.PeerID(), Addrs: n.P2P().Host().Addrs()}
}
