package bench

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ipfs/boxo/bitswap"
	bsnet "github.com/ipfs/boxo/bitswap/network/bsnet"
	"github.com/ipfs/boxo/blockservice"
	"github.com/ipfs/boxo/blockstore"
	"github.com/ipfs/boxo/ipld/merkledag"
	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/namespace"
	"github.com/ipfs/go-datastore/query"
	crdt "github.com/ipfs/go-ds-crdt"
	leveldb "github.com/ipfs/go-ds-leveldb"
	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	"github.com/multiformats/go-multiaddr"
)

// The raw harness: go-ds-crdt v0.6.8 as its README sets it up.
const (
	rawTopic     = "starling-bench-raw"
	rawNamespace = "/crdt"
	// rawSetupBatch is the Puts per go-ds-crdt Batch when setting up a
	// large store (join workload): one Put per DAG node would make the
	// setup of 1M fields take over five minutes, and the history 100
	// times deeper, which only makes raw slower to join.
	rawSetupBatch = 100
)

// RawSetup describes the raw harness, for the table's header.
const RawSetup = "go-ds-crdt v0.6.8, crdt.DefaultOptions(), PubSubBroadcaster over gossipsub (default options), boxo bitswap + merkledag DAG service, go-ds-leveldb (default options: fsync per write)"

// rawNode is one go-ds-crdt replica with its own libp2p host.
type rawNode struct {
	dir      string
	backing  ds.Batching
	closeDB  func() error
	h        host.Host
	gater    *gater
	ps       *pubsub.PubSub
	psCancel context.CancelFunc
	bs       *bitswap.Bitswap
	bsCancel context.CancelFunc
	bcCancel context.CancelFunc
	store    *crdt.Datastore

	wmu      sync.Mutex
	watchers map[*rawWatcher]struct{}
}

// openRawNode starts a replica on h (which it owns) over backing.
func openRawNode(ctx context.Context, h host.Host, g *gater, dir string, backing ds.Batching, closeDB func() error) (_ *rawNode, err error) {
	n := &rawNode{dir: dir, backing: backing, closeDB: closeDB, h: h, gater: g, watchers: make(map[*rawWatcher]struct{})}
	defer func() {
		if err != nil {
			n.close()
		}
	}()
	var psCtx context.Context
	psCtx, n.psCancel = context.WithCancel(context.Background())
	if n.ps, err = pubsub.NewGossipSub(psCtx, h); err != nil {
		return nil, fmt.Errorf("raw: gossipsub: %w", err)
	}
	bstore := blockstore.NewBlockstore(namespace.Wrap(backing, ds.NewKey("/blocks")))
	var bsCtx context.Context
	bsCtx, n.bsCancel = context.WithCancel(context.Background())
	n.bs = bitswap.New(bsCtx, bsnet.NewFromIpfsHost(h), nil, bstore)
	dag := merkledag.NewDAGService(blockservice.New(bstore, n.bs))
	var bcCtx context.Context
	bcCtx, n.bcCancel = context.WithCancel(context.Background())
	bcast, err := crdt.NewPubSubBroadcaster(bcCtx, n.ps, rawTopic)
	if err != nil {
		return nil, fmt.Errorf("raw: broadcaster: %w", err)
	}
	opts := crdt.DefaultOptions()
	opts.Logger = quietLogger{} // go-ds-crdt logs harmless events at ERROR
	opts.PutHook = n.hook
	n.store, err = crdt.New(backing, ds.NewKey(rawNamespace), dag, bcast, opts)
	if err != nil {
		return nil, fmt.Errorf("raw: go-ds-crdt: %w", err)
	}
	return n, nil
}

// close shuts down in the order that leaks nothing (shared/DESIGN.md):
// broadcaster, go-ds-crdt, bitswap, pubsub, host, datastore.
func (n *rawNode) close() error {
	var errs []error
	if n.bcCancel != nil {
		n.bcCancel()
	}
	if n.store != nil {
		errs = append(errs, n.store.Close())
	}
	if n.bs != nil {
		errs = append(errs, n.bs.Close())
		n.bsCancel()
	}
	if n.psCancel != nil {
		n.psCancel()
	}
	if n.h != nil {
		errs = append(errs, n.h.Close())
	}
	if n.closeDB != nil {
		errs = append(errs, n.closeDB())
	}
	return errors.Join(errs...)
}

// hook is go-ds-crdt's PutHook: it runs under the set's merge lock, so
// it never blocks.
func (n *rawNode) hook(k ds.Key, _ []byte) {
	f, ok := parseKey(k.String())
	if !ok {
		return
	}
	n.wmu.Lock()
	defer n.wmu.Unlock()
	for w := range n.watchers {
		select {
		case w.ch <- f:
		default:
		}
	}
}

type rawWatcher struct {
	n    *rawNode
	ch   chan field
	once sync.Once
}

func (w *rawWatcher) C() <-chan field { return w.ch }

func (w *rawWatcher) Close() {
	w.once.Do(func() {
		w.n.wmu.Lock()
		delete(w.n.watchers, w)
		w.n.wmu.Unlock()
	})
}

// rawCluster is raw go-ds-crdt replicas on loopback TCP, or on a mocknet
// when mn is set.
type rawCluster struct {
	dir   string
	mn    mocknet.Mocknet
	mu    sync.Mutex
	nodes []*rawNode
	// nudge loops started by Join.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	seq    int
}

var _ cluster = (*rawCluster)(nil)

func openRaw(ctx context.Context, dir string, n int) (cluster, error) {
	c := newRawCluster(dir, nil)
	for range n {
		if _, err := c.start(ctx); err != nil {
			c.Close()
			return nil, err
		}
	}
	if err := c.connectAll(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func newRawCluster(dir string, mn mocknet.Mocknet) *rawCluster {
	c := &rawCluster{dir: dir, mn: mn}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c
}

// start adds one replica: on loopback, a LevelDB in its own directory
// and a libp2p host with default options on 127.0.0.1; on a mocknet, a
// map datastore and a mocknet host.
func (c *rawCluster) start(ctx context.Context) (*rawNode, error) {
	c.mu.Lock()
	i := len(c.nodes)
	c.mu.Unlock()
	var n *rawNode
	if c.mn != nil {
		h, err := c.mn.GenPeer()
		if err != nil {
			return nil, err
		}
		if n, err = openRawNode(ctx, h, nil, "", memDatastore(), nil); err != nil {
			return nil, err
		}
	} else {
		dir := filepath.Join(c.dir, fmt.Sprintf("raw%d", i+1))
		db, err := leveldb.NewDatastore(dir, nil)
		if err != nil {
			return nil, fmt.Errorf("raw: leveldb: %w", err)
		}
		g := newGater()
		h, err := libp2p.New(
			libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
			libp2p.ConnectionGater(g),
			libp2p.DisableMetrics(), // several hosts in one process
		)
		if err != nil {
			db.Close()
			return nil, fmt.Errorf("raw: libp2p host: %w", err)
		}
		if n, err = openRawNode(ctx, h, g, dir, db, db.Close); err != nil {
			return nil, err
		}
	}
	c.mu.Lock()
	c.nodes = append(c.nodes, n)
	c.mu.Unlock()
	return n, nil
}

func (c *rawCluster) connectAll(ctx context.Context) error {
	for i := range c.Size() {
		for j := i + 1; j < c.Size(); j++ {
			if err := c.connect(ctx, i, j); err != nil {
				return err
			}
		}
	}
	return nil
}

func (c *rawCluster) connect(ctx context.Context, i, j int) error {
	a, b := c.node(i), c.node(j)
	if c.mn != nil {
		if _, err := c.mn.LinkPeers(a.h.ID(), b.h.ID()); err != nil {
			return err
		}
		_, err := c.mn.ConnectPeers(a.h.ID(), b.h.ID())
		return err
	}
	return connectHost(ctx, a.h, b.h)
}

func (c *rawCluster) node(i int) *rawNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i]
}

func (c *rawCluster) Size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.nodes)
}

// Prepare: raw go-ds-crdt has no entities. It writes on node 0 until the
// write reaches every node: the gossip mesh works end to end.
func (c *rawCluster) Prepare(ctx context.Context, _ int) error {
	return c.warm(ctx, 0)
}

// warm writes a key on node from every 250 ms until every node has one.
func (c *rawCluster) warm(ctx context.Context, from int) error {
	return poll(ctx, 250*time.Millisecond, func() (bool, error) {
		c.mu.Lock()
		c.seq++
		k := ds.NewKey(fmt.Sprintf("/warm/%d", c.seq))
		c.mu.Unlock()
		if err := c.node(from).store.Put(ctx, k, []byte("w")); err != nil {
			return false, err
		}
		for i := range c.Size() {
			if !c.hasPrefix(ctx, i, "/warm") {
				return false, nil
			}
		}
		return true, nil
	})
}

func (c *rawCluster) hasPrefix(ctx context.Context, i int, prefix string) bool {
	res, err := c.node(i).store.Query(ctx, query.Query{Prefix: prefix, KeysOnly: true, Limit: 1})
	if err != nil {
		return false
	}
	defer res.Close()
	r, ok := res.NextSync()
	return ok && r.Error == nil
}

func (c *rawCluster) Write(ctx context.Context, i int, w write) error {
	return c.node(i).store.Put(ctx, ds.NewKey(w.f.key()), strconv.AppendInt(nil, w.v, 10))
}

func (c *rawCluster) WriteMany(ctx context.Context, i int, ws []write) error {
	st := c.node(i).store
	for start := 0; start < len(ws); start += rawSetupBatch {
		b, err := st.Batch(ctx)
		if err != nil {
			return err
		}
		for _, w := range ws[start:min(start+rawSetupBatch, len(ws))] {
			if err := b.Put(ctx, ds.NewKey(w.f.key()), strconv.AppendInt(nil, w.v, 10)); err != nil {
				return err
			}
		}
		if err := b.Commit(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (c *rawCluster) Watch(i int) watcher {
	n := c.node(i)
	w := &rawWatcher{n: n, ch: make(chan field, 1<<16)}
	n.wmu.Lock()
	n.watchers[w] = struct{}{}
	n.wmu.Unlock()
	return w
}

func (c *rawCluster) Count(ctx context.Context, i int, e int) (int, error) {
	prefix := entPath(e)
	res, err := c.node(i).store.Query(ctx, query.Query{Prefix: prefix, KeysOnly: true})
	if err != nil {
		return 0, err
	}
	defer res.Close()
	n := 0
	for r := range res.Next() {
		if r.Error != nil {
			return n, r.Error
		}
		if strings.HasPrefix(r.Key, prefix+"/") {
			n++
		}
	}
	return n, ctx.Err()
}

func (c *rawCluster) Value(ctx context.Context, i int, f field) (int64, bool, error) {
	v, err := c.node(i).store.Get(ctx, ds.NewKey(f.key()))
	if errors.Is(err, ds.ErrNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	x, err := strconv.ParseInt(string(v), 10, 64)
	return x, err == nil, err
}

// Partition gates node i and the others off from each other and closes
// their connections (loopback clusters only).
func (c *rawCluster) Partition(i int) error {
	if c.mn != nil {
		return errors.New("raw: partitions are not implemented on the mocknet")
	}
	cut := c.node(i)
	for j := range c.Size() {
		if j == i {
			continue
		}
		o := c.node(j)
		o.gater.block(cut.h.ID())
		cut.gater.block(o.h.ID())
		_ = o.h.Network().ClosePeer(cut.h.ID())
		_ = cut.h.Network().ClosePeer(o.h.ID())
	}
	return nil
}

// Heal lifts the gates and reconnects at once: go-ds-crdt has no re-dial
// loop of its own (an application would need one), so the harness dials.
func (c *rawCluster) Heal() error {
	for i := range c.Size() {
		c.node(i).gater.clear()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.connectAll(ctx)
}

// Join starts a fresh replica, connects it to every node, and, as an
// application writing all the time would, writes on node 0 every second
// until the new replica has received a broadcast: go-ds-crdt announces
// its heads only with a new write or its rebroadcast (every minute), and
// gossip published in the first moments of a subscription is lost.
func (c *rawCluster) Join(ctx context.Context) (int, error) {
	if _, err := c.start(ctx); err != nil {
		return 0, err
	}
	i := c.Size() - 1
	for j := range i {
		if err := c.connect(ctx, i, j); err != nil {
			return 0, err
		}
	}
	c.wg.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for k := 0; ; k++ {
			if c.hasPrefix(c.ctx, i, "/nudge") {
				return
			}
			_ = c.node(0).store.Put(c.ctx, ds.NewKey(fmt.Sprintf("/nudge/%d", k)), []byte("n"))
			select {
			case <-c.ctx.Done():
				return
			case <-t.C:
			}
		}
	})
	return i, nil
}

// Synced: node i has node 0's heads, nothing queued, and has processed
// as many DAG blocks as node 0. Heads alone are not enough: go-ds-crdt
// makes a newer broadcast's head a head at once when its child is being
// walked by another job, so heads match long before the walk of the
// history is done.
func (c *rawCluster) Synced(ctx context.Context, i int) bool {
	a := c.node(i).store.InternalStats(ctx)
	b := c.node(0).store.InternalStats(ctx)
	if a.QueuedJobs > 0 || len(a.Heads) != len(b.Heads) {
		return false
	}
	for _, h := range b.Heads {
		if !slices.ContainsFunc(a.Heads, h.Equals) {
			return false
		}
	}
	if c.node(i).store.IsDirty(ctx) {
		return false
	}
	return c.SyncDone(ctx, i) >= 1
}

// SyncDone is node i's processed DAG blocks over node 0's.
func (c *rawCluster) SyncDone(ctx context.Context, i int) float64 {
	a, err1 := c.node(i).processedBlocks(ctx)
	b, err2 := c.node(0).processedBlocks(ctx)
	if err1 != nil || err2 != nil || b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// processedBlocks counts go-ds-crdt's processed-block markers.
func (n *rawNode) processedBlocks(ctx context.Context) (int, error) {
	res, err := n.backing.Query(ctx, query.Query{Prefix: rawNamespace + "/b", KeysOnly: true})
	if err != nil {
		return 0, err
	}
	defer res.Close()
	k := 0
	for r := range res.Next() {
		if r.Error != nil {
			return k, r.Error
		}
		k++
	}
	return k, nil
}

func (c *rawCluster) Dir(i int) string { return c.node(i).dir }

func (c *rawCluster) Close() error {
	c.cancel()
	c.wg.Wait()
	c.mu.Lock()
	nodes := c.nodes
	c.nodes = nil
	c.mu.Unlock()
	err := closeAll(nodes, (*rawNode).close)
	if c.mn != nil {
		err = errors.Join(err, c.mn.Close())
	}
	return err
}

// gater refuses connections with blocked peers (partitions).
type gater struct {
	mu      sync.Mutex
	blocked map[peer.ID]bool
}

func newGater() *gater { return &gater{blocked: make(map[peer.ID]bool)} }

func (g *gater) block(id peer.ID) {
	g.mu.Lock()
	g.blocked[id] = true
	g.mu.Unlock()
}

func (g *gater) clear() {
	if g == nil {
		return
	}
	g.mu.Lock()
	g.blocked = make(map[peer.ID]bool)
	g.mu.Unlock()
}

func (g *gater) allowed(id peer.ID) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return !g.blocked[id]
}

func (g *gater) InterceptPeerDial(p peer.ID) bool                        { return g.allowed(p) }
func (g *gater) InterceptAddrDial(p peer.ID, _ multiaddr.Multiaddr) bool { return g.allowed(p) }
func (g *gater) InterceptAccept(network.ConnMultiaddrs) bool             { return true }
func (g *gater) InterceptSecured(_ network.Direction, p peer.ID, _ network.ConnMultiaddrs) bool {
	return g.allowed(p)
}
func (g *gater) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) { return true, 0 }

// quietLogger discards go-ds-crdt's logs.
type quietLogger struct{}

func (quietLogger) Debug(...any)          {}
func (quietLogger) Debugf(string, ...any) {}
func (quietLogger) Error(...any)          {}
func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Fatal(...any)          {}
func (quietLogger) Fatalf(string, ...any) {}
func (quietLogger) Info(...any)           {}
func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Panic(...any)          {}
func (quietLogger) Panicf(string, ...any) {}
func (quietLogger) Warn(...any)           {}
func (quietLogger) Warnf(string, ...any)  {}

// Stop closes replica i cleanly; its data directory stays (loopback
// clusters only). Until Restart, no other method may be called for it.
func (c *rawCluster) Stop(i int) error {
	c.mu.Lock()
	n := c.nodes[i]
	c.nodes[i] = nil
	c.mu.Unlock()
	if n == nil {
		return nil
	}
	return n.close()
}

// Restart opens replica i again on its data directory, with a new
// libp2p host, connected to the others.
func (c *rawCluster) Restart(ctx context.Context, i int) error {
	if c.mn != nil {
		return errors.New("raw: restart is not implemented on the mocknet")
	}
	dir := filepath.Join(c.dir, fmt.Sprintf("raw%d", i+1))
	db, err := leveldb.NewDatastore(dir, nil)
	if err != nil {
		return fmt.Errorf("raw: leveldb: %w", err)
	}
	g := newGater()
	h, err := libp2p.New(
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
		libp2p.ConnectionGater(g),
		libp2p.DisableMetrics(),
	)
	if err != nil {
		db.Close()
		return fmt.Errorf("raw: libp2p host: %w", err)
	}
	n, err := openRawNode(ctx, h, g, dir, db, db.Close)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.nodes[i] = n
	c.mu.Unlock()
	for j := range c.Size() {
		if j != i && c.node(j) != nil {
			if err := c.connect(ctx, i, j); err != nil {
				return err
			}
		}
	}
	return nil
}

// LiveBytes is the live state as replica i returns it: the bytes of every
// current key and value.
func (c *rawCluster) LiveBytes(ctx context.Context, i int) (int64, error) {
	res, err := c.node(i).store.Query(ctx, query.Query{})
	if err != nil {
		return 0, err
	}
	return sumEntries(res)
}

// sumEntries adds up the bytes of the keys and values of res, and closes
// it.
func sumEntries(res query.Results) (int64, error) {
	defer res.Close()
	var total int64
	for e := range res.Next() {
		if e.Error != nil {
			return total, e.Error
		}
		total += int64(len(e.Key) + len(e.Value))
	}
	return total, nil
}
