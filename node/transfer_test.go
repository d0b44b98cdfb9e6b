package node_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ds "github.com/ipfs/go-datastore"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/starling-sync/starling/api"
	"github.com/starling-sync/starling/entity"
	"github.com/starling-sync/starling/internal/testutil"
	"github.com/starling-sync/starling/node"
	"github.com/starling-sync/starling/node/nodetest"
	"github.com/starling-sync/starling/nodestate"
)

// writeFields creates count entities under /j, each with a field v = i,
// in updates of 250 writes.
func writeFields(t *testing.T, n *node.Node, count int) {
	t.Helper()
	ctx := context.Background()
	es := n.Entities()
	if _, err := es.Create(ctx, "/", "Folder", "j"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < count; i += 125 {
		_, err := es.Update(ctx, func(tx *entity.Tx) error {
			for j := i; j < i+125 && j < count; j++ {
				id, err := tx.Create("/j", "Sensor", fmt.Sprintf("s%05d", j))
				if err != nil {
					return err
				}
				if err := tx.Set(string(id), "v", entity.Int(int64(j))); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// peersOf lists the nodes' listen addresses, for Config.Peers.
func peersOf(nodes ...*node.Node) []string {
	var out []string
	for _, n := range nodes {
		out = append(out, n.P2P().Addrs()[0].String())
	}
	return out
}

// openJoining starts a new node whose static peers are nodes.
func openJoining(t *testing.T, dir, id string, nodes ...*node.Node) *node.Node {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dir, api.ConfigFile)); err != nil {
		nodetest.Init(t, dir, id)
	}
	return nodetest.Open(t, dir, node.WithConfig(func(c *node.Config) { c.Peers = peersOf(nodes...) }))
}

func fieldValue(t *testing.T, n *node.Node, path string) (int64, bool) {
	f, err := n.Entities().GetField(path, "v")
	if err != nil {
		return 0, false
	}
	return f.Value.Int, true
}

// TestJoinByStateTransfer: a new node joins a populated cluster by state
// transfer: all data at once, no DAG history walked, JOINING/SYNCING
// until then and not an election candidate, then ACTIVE and following
// real-time writes.
func TestJoinByStateTransfer(t *testing.T) {
	nodes := nodetest.Cluster(t, 2)
	a := nodes[0]
	const count = 3000
	writeFields(t, a, count)
	for i := 0; i < 200; i++ {
		if err := a.Store().Put(context.Background(), ds.NewKey(fmt.Sprintf("/kv/k%03d", i)), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, 30*time.Second, "b has a's writes", func() bool {
		_, ok := fieldValue(t, nodes[1], fmt.Sprintf("/j/s%05d", count-1))
		return ok && countPrefix(t, nodes[1], "/kv") == 200
	})

	start := time.Now()
	c := openJoining(t, filepath.Join(t.TempDir(), "c"), "node3", nodes...)
	var phases []nodestate.SyncPhase
	var mu sync.Mutex
	c.OnSyncPhase(func(p nodestate.SyncPhase) { mu.Lock(); phases = append(phases, p); mu.Unlock() })
	testutil.Eventually(t, 30*time.Second, "c active", func() bool { return c.SyncProgress().Phase == nodestate.PhaseActive })
	took := time.Since(start)
	p := c.SyncProgress()
	if p.Transfers != 1 {
		t.Fatalf("progress after the join: %+v, want 1 transfer", p)
	}
	mu.Lock()
	t.Logf("joined %d fields + 200 keys in %v (%d entries, %d bytes), phases %v", count, took, p.EntriesTotal, p.BytesTotal, phases)
	mu.Unlock()
	if rc, ra := countPrefix(t, c, "/r"), countPrefix(t, a, "/r"); rc != ra {
		t.Fatalf("c holds %d entity records, the source %d", rc, ra)
	}
	for _, i := range []int{0, count / 2, count - 1} {
		if v, ok := fieldValue(t, c, fmt.Sprintf("/j/s%05d", i)); !ok || v != int64(i) {
			t.Fatalf("after the join /j/s%05d = %d, %v", i, v, ok)
		}
	}
	if got := countPrefix(t, c, "/kv"); got != 200 {
		t.Fatalf("after the join %d keys, want 200", got)
	}
	if st := c.Store().Status(context.Background()); st.Requested > 10 {
		t.Fatalf("the joining node asked for %d blocks: it walked history", st.Requested)
	}
	// Real-time sync both ways from here.
	if _, err := a.Entities().Set(context.Background(), "/j/s00001", "v", entity.Int(-1)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Entities().Set(context.Background(), "/j/s00002", "v", entity.Int(-2)); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "a's new write on c", func() bool { v, _ := fieldValue(t, c, "/j/s00001"); return v == -1 })
	testutil.Eventually(t, 10*time.Second, "c's write on a", func() bool { v, _ := fieldValue(t, a, "/j/s00002"); return v == -2 })
	// It is a candidate now.
	testutil.Eventually(t, 10*time.Second, "c available in the election", func() bool {
		for _, g := range c.Election().Groups() {
			for _, m := range g.Members {
				if m.Node == "node3" && m.Local && m.Available {
					return true
				}
			}
		}
		return false
	})
}

// TestJoinWhileWritesContinue: writes go on at the source during the
// join; the new node ends with every one of them, exactly once.
func TestJoinWhileWritesContinue(t *testing.T) {
	nodes := nodetest.Cluster(t, 1)
	a := nodes[0]
	writeFields(t, a, 1000)
	var stop atomic.Bool
	var written atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; !stop.Load(); i++ {
			if err := a.Store().Put(context.Background(), ds.NewKey(fmt.Sprintf("/kv/w%06d", i)), []byte("x")); err != nil {
				t.Error(err)
				return
			}
			written.Add(1)
		}
	}()
	c := openJoining(t, filepath.Join(t.TempDir(), "c"), "node3", a)
	testutil.Eventually(t, 30*time.Second, "c active", func() bool { return c.SyncProgress().Phase == nodestate.PhaseActive })
	// A little more after the join, then stop.
	at := written.Load()
	testutil.Eventually(t, 10*time.Second, "writes after the join", func() bool { return written.Load() > at+50 })
	stop.Store(true)
	<-done
	n := int(written.Load())
	testutil.Eventually(t, 30*time.Second, fmt.Sprintf("all %d writes on c", n), func() bool { return countPrefix(t, c, "/kv") == n })
	if v, ok := fieldValue(t, c, "/j/s00999"); !ok || v != 999 {
		t.Fatalf("field after the join: %d %v", v, ok)
	}
	if p := c.SyncProgress(); p.Transfers != 1 {
		t.Fatalf("progress: %+v", p)
	}
	t.Logf("%d writes, %d of them before the join ended", n, at)
}

// TestWipedNodeRejoinsWithNothingStale: a node whose data dir is wiped
// while the others delete and overwrite comes back with their state, not
// its old one.
func TestWipedNodeRejoinsWithNothingStale(t *testing.T) {
	nodes := nodetest.Cluster(t, 2)
	a, b := nodes[0], nodes[1]
	ctx := context.Background()
	writeFields(t, a, 300)
	for i := 0; i < 50; i++ {
		if err := a.Store().Put(ctx, ds.NewKey(fmt.Sprintf("/kv/k%02d", i)), []byte("old")); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, 20*time.Second, "b has everything", func() bool { return countPrefix(t, b, "/kv") == 50 })
	dir := b.Dir()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, api.DatastoreDir)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 25; i++ {
		if err := a.Store().Delete(ctx, ds.NewKey(fmt.Sprintf("/kv/k%02d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.Entities().Set(ctx, "/j/s00007", "v", entity.Int(7000)); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Entities().Delete(ctx, "/j/s00008", false); err != nil {
		t.Fatal(err)
	}
	b2 := openJoining(t, dir, "node2", a)
	testutil.Eventually(t, 30*time.Second, "b active again", func() bool { return b2.SyncProgress().Phase == nodestate.PhaseActive })
	if p := b2.SyncProgress(); p.Transfers != 1 {
		t.Fatalf("the wiped node did not join by transfer: %+v", p)
	}
	if got := countPrefix(t, b2, "/kv"); got != 25 {
		t.Fatalf("wiped node has %d keys, want 25 (deleted ones must stay deleted)", got)
	}
	if v, _ := fieldValue(t, b2, "/j/s00007"); v != 7000 {
		t.Fatalf("overwritten field = %d, want 7000", v)
	}
	if _, err := b2.Entities().Get("/j/s00008"); err == nil {
		t.Fatal("deleted entity visible on the wiped node")
	}
}

// TestResyncKeepsLocalWrites: `resync` on a node replaces its state with
// a peer's and keeps the node's writes the peer had not seen.
func TestResyncKeepsLocalWrites(t *testing.T) {
	nodes := nodetest.Cluster(t, 2)
	a, b := nodes[0], nodes[1]
	ctx := context.Background()
	writeFields(t, a, 200)
	testutil.Eventually(t, 20*time.Second, "b has a's fields", func() bool { _, ok := fieldValue(t, b, "/j/s00199"); return ok })
	partition(nodes, b)
	if _, err := b.Entities().Set(ctx, "/j/s00003", "v", entity.Int(333)); err != nil {
		t.Fatal(err)
	}
	if err := b.Store().Put(ctx, ds.NewKey("/kv/only-b"), []byte("b")); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Entities().Set(ctx, "/j/s00004", "v", entity.Int(444)); err != nil {
		t.Fatal(err)
	}
	heal(nodes)
	nodetest.Connect(t, nodes)
	if _, err := b.Client().Resync(ctx, a.PeerID().String()); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, "resync done", func() bool {
		p := b.SyncProgress()
		if p.LastError != "" {
			t.Fatalf("resync failed: %+v", p)
		}
		return p.Phase == nodestate.PhaseActive && p.Transfers == 1
	})
	testutil.Eventually(t, 10*time.Second, "b's local writes kept and replicated", func() bool {
		v3, _ := fieldValue(t, b, "/j/s00003")
		v4, _ := fieldValue(t, b, "/j/s00004")
		va, _ := fieldValue(t, a, "/j/s00003")
		ok, _ := a.Store().Has(ctx, ds.NewKey("/kv/only-b"))
		return v3 == 333 && v4 == 444 && va == 333 && ok
	})
	// A resync while one runs, or from nobody, is a clear error.
	if _, err := b.Client().Resync(ctx, "not-a-peer"); err == nil {
		t.Fatal("resync from a bad peer ID accepted")
	}
}

// TestDirtyStoreResyncs: a store left dirty by a failed DAG walk repairs
// itself by state transfer from a peer.
func TestDirtyStoreResyncs(t *testing.T) {
	nodes := nodetest.Cluster(t, 2)
	a, b := nodes[0], nodes[1]
	writeFields(t, a, 100)
	testutil.Eventually(t, 20*time.Second, "b has a's fields", func() bool { _, ok := fieldValue(t, b, "/j/s00099"); return ok })
	b.Store().MarkDirty(context.Background())
	testutil.Eventually(t, 20*time.Second, "b resynced and clean", func() bool {
		return b.SyncProgress().Transfers == 1 && !b.Store().Status(context.Background()).Dirty && b.SyncProgress().Phase == nodestate.PhaseActive
	})
	if v, ok := fieldValue(t, b, "/j/s00042"); !ok || v != 42 {
		t.Fatalf("after the repair: %d %v", v, ok)
	}
}

// TestNewClusterStartsTogether: two new nodes that list each other as
// static peers start JOINING, find each other empty and become ACTIVE
// without a transfer (and without waiting for the join timeout).
func TestNewClusterStartsTogether(t *testing.T) {
	root := t.TempDir()
	dirs := []string{filepath.Join(root, "a"), filepath.Join(root, "b")}
	ports := []int{freeTCPPort(t), freeTCPPort(t)}
	var ids []string
	for i, dir := range dirs {
		if _, err := node.Init(dir, node.InitOptions{PSK: nodetest.PSK(), Settings: node.Settings{
			Env: "e2e", NodeID: fmt.Sprintf("node%d", i+1), APIAddr: "127.0.0.1:0", NoMDNS: true, NoDHT: true,
			ListenAddrs: []string{fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", ports[i])},
		}}); err != nil {
			t.Fatal(err)
		}
		id, err := node.ReadPeerID(dir)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id.String())
	}
	var nodes []*node.Node
	for i, dir := range dirs {
		other := 1 - i
		peerAddr := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", ports[other], ids[other])
		n := nodetest.Open(t, dir, node.WithConfig(func(c *node.Config) { c.Peers = []string{peerAddr} }))
		if p := n.SyncProgress(); p.Phase != nodestate.PhaseJoining {
			t.Fatalf("%s starts %s, want JOINING", n.NodeID(), p.Phase)
		}
		nodes = append(nodes, n)
	}
	start := time.Now()
	for _, n := range nodes {
		testutil.Eventually(t, 15*time.Second, n.NodeID()+" active", func() bool { return n.SyncProgress().Phase == nodestate.PhaseActive })
		if p := n.SyncProgress(); p.Transfers != 0 {
			t.Fatalf("%s: %+v: a transfer between empty nodes", n.NodeID(), p)
		}
	}
	t.Logf("both active %v after the second started", time.Since(start))
	if err := nodes[0].Store().Put(context.Background(), ds.NewKey("/kv/x"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "a's write on b", func() bool { return countPrefix(t, nodes[1], "/kv") == 1 })
}

func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestJoinStartsWhenTheSourceConnects: a joining node asks a peer for
// its state as soon as it connects, not at its next retry (with the
// retry at an hour, only the connection can start the join).
func TestJoinStartsWhenTheSourceConnects(t *testing.T) {
	a := nodetest.Start(t, "node1")
	writeFields(t, a, 50)

	dir := filepath.Join(t.TempDir(), "b")
	nodetest.Init(t, dir, "node2")
	nowhere := fmt.Sprintf("/ip4/127.0.0.1/tcp/1/p2p/%s", testutil.PeerID(t))
	b := nodetest.Open(t, dir, node.WithJoinRetry(time.Hour), node.WithJoinTimeout(time.Hour),
		node.WithConfig(func(c *node.Config) { c.Peers = []string{nowhere} }))
	testutil.Eventually(t, 10*time.Second, "b joining", func() bool { return b.SyncProgress().Phase == nodestate.PhaseJoining })
	if err := b.P2P().AddPeer(context.Background(), peer.AddrInfo{ID: a.PeerID(), Addrs: a.P2P().Host().Addrs()}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, "b active after a transfer", func() bool {
		p := b.SyncProgress()
		return p.Phase == nodestate.PhaseActive && p.Transfers == 1
	})
	if v, ok := fieldValue(t, b, "/j/s00049"); !ok || v != 49 {
		t.Fatalf("after the join /j/s00049 = %d, %v", v, ok)
	}
}
