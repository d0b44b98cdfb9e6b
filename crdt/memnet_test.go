package crdt

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipfs/boxo/blockservice"
	"github.com/ipfs/boxo/blockstore"
	offline "github.com/ipfs/boxo/exchange/offline"
	"github.com/ipfs/boxo/ipld/merkledag"
	cid "github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/namespace"
	ipld "github.com/ipfs/go-ipld-format"
)

// memNet is an in-process network for store tests: message delivery
// between transports and block fetches between DAG services, both cut
// by partitions.
type memNet struct {
	mu    sync.Mutex
	nodes map[string]*memTransport
	cut   map[[2]string]bool
}

func newMemNet() *memNet {
	return &memNet{nodes: make(map[string]*memTransport), cut: make(map[[2]string]bool)}
}

func (n *memNet) linked(a, b string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return !n.cut[[2]string{a, b}]
}

// partition cuts every link between the two groups.
func (n *memNet) partition(left, right []string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, a := range left {
		for _, b := range right {
			n.cut[[2]string{a, b}] = true
			n.cut[[2]string{b, a}] = true
		}
	}
}

func (n *memNet) heal() {
	n.mu.Lock()
	n.cut = make(map[[2]string]bool)
	n.mu.Unlock()
}

type memMsg struct {
	from string
	data []byte
}

type memTransport struct {
	net   *memNet
	id    string
	inbox chan memMsg
	dag   ipld.DAGService // local blocks only
	// publishing is held for reading by every Publish: a test that locks
	// it holds every publish until it unlocks.
	publishing sync.RWMutex
	// sent counts the direct messages sent.
	sent atomic.Int64
}

var _ Transport = (*memTransport)(nil)

func (n *memNet) transport(id string, dag ipld.DAGService) *memTransport {
	t := &memTransport{net: n, id: id, inbox: make(chan memMsg, 1<<16), dag: dag}
	n.mu.Lock()
	n.nodes[id] = t
	n.mu.Unlock()
	return t
}

func (n *memNet) peers(self string) []*memTransport {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []*memTransport
	for id, t := range n.nodes {
		if id != self && !n.cut[[2]string{self, id}] {
			out = append(out, t)
		}
	}
	return out
}

func (t *memTransport) Publish(ctx context.Context, data []byte) error {
	t.publishing.RLock()
	defer t.publishing.RUnlock()
	for _, p := range t.net.peers(t.id) {
		select {
		case p.inbox <- memMsg{t.id, data}:
		default: // a full inbox loses the message, like gossip
		}
	}
	return nil
}

func (t *memTransport) SendTo(ctx context.Context, to string, data []byte) error {
	t.net.mu.Lock()
	p, ok := t.net.nodes[to]
	t.net.mu.Unlock()
	if !ok || !t.net.linked(t.id, to) {
		return errors.New("memnet: unreachable")
	}
	select {
	case p.inbox <- memMsg{t.id, data}:
		t.sent.Add(1)
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (t *memTransport) Receive(ctx context.Context) (string, []byte, error) {
	select {
	case m := <-t.inbox:
		return m.from, m.data, nil
	case <-ctx.Done():
		return "", nil, ctx.Err()
	}
}

// netDAG is a DAG service that fetches blocks it lacks from reachable
// peers, standing in for bitswap.
type netDAG struct {
	ipld.DAGService
	self string
	net  *memNet
}

func (d *netDAG) Get(ctx context.Context, c cid.Cid) (ipld.Node, error) {
	nd, err := d.DAGService.Get(ctx, c)
	if err == nil || !ipld.IsNotFound(err) {
		return nd, err
	}
	for _, p := range d.net.peers(d.self) {
		if nd, perr := p.dag.Get(ctx, c); perr == nil {
			if err := d.DAGService.Add(ctx, nd); err != nil {
				return nil, err
			}
			return nd, nil
		}
	}
	return nil, err
}

func (d *netDAG) GetMany(ctx context.Context, cs []cid.Cid) <-chan *ipld.NodeOption {
	out := make(chan *ipld.NodeOption, len(cs))
	for _, c := range cs {
		nd, err := d.Get(ctx, c)
		out <- &ipld.NodeOption{Node: nd, Err: err}
	}
	close(out)
	return out
}

// waitingDAG stands in for a bitswap that never finds a block by itself:
// a Get of a missing block waits until the block is stored locally (as
// bitswap does when a block arrives by other means) or ctx ends.
type waitingDAG struct {
	ipld.DAGService
}

func (d *waitingDAG) Get(ctx context.Context, c cid.Cid) (ipld.Node, error) {
	for {
		nd, err := d.DAGService.Get(ctx, c)
		if err == nil || !ipld.IsNotFound(err) {
			return nd, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(2 * time.Millisecond):
		}
	}
}

func (d *waitingDAG) GetMany(ctx context.Context, cs []cid.Cid) <-chan *ipld.NodeOption {
	out := make(chan *ipld.NodeOption, len(cs))
	go func() {
		defer close(out)
		for _, c := range cs {
			nd, err := d.Get(ctx, c)
			out <- &ipld.NodeOption{Node: nd, Err: err}
		}
	}()
	return out
}

// testNode is a store on its own LevelDB, attached to a memNet.
type testNode struct {
	id    string
	dir   string
	db    *LevelDB
	store *Store
	tr    *memTransport
}

func openTestNode(t testing.TB, net *memNet, id, dir string, opts Options) *testNode {
	t.Helper()
	return openTestNodeFetch(t, net, id, dir, opts, true)
}

// openTestNodeFetch opens a test node; without bitswapLike, blocks a node
// lacks reach it only through the store's own protocol (carried blocks
// and branch requests).
func openTestNodeFetch(t testing.TB, net *memNet, id, dir string, opts Options, bitswapLike bool) *testNode {
	t.Helper()
	return openTestNodeOn(t, net, id, dir, opts, bitswapLike, nil)
}

// openTestNodeOn opens a test node whose store runs on wrap(db) (db
// itself when wrap is nil).
func openTestNodeOn(t testing.TB, net *memNet, id, dir string, opts Options, bitswapLike bool, wrap func(*LevelDB) ds.Batching) *testNode {
	t.Helper()
	db, err := OpenLevelDB(dir)
	if err != nil {
		t.Fatal(err)
	}
	bs := blockstore.NewBlockstore(namespace.Wrap(db, ds.NewKey("/blocks")))
	local := merkledag.NewDAGService(blockservice.New(bs, offline.Exchange(bs)))
	var tr Transport
	var dag ipld.DAGService = local
	n := &testNode{id: id, dir: dir, db: db}
	if net != nil {
		n.tr = net.transport(id, local)
		tr = n.tr
		if bitswapLike {
			dag = &netDAG{DAGService: local, self: id, net: net}
		} else {
			dag = &waitingDAG{DAGService: local}
		}
	}
	if opts.LocalBlocks == nil {
		opts.LocalBlocks = bs
	}
	var backing ds.Batching = db
	if wrap != nil {
		backing = wrap(db)
	}
	s, err := Open(context.Background(), backing, dag, tr, opts)
	if err != nil {
		db.Close()
		t.Fatal(err)
	}
	n.store = s
	return n
}

func (n *testNode) close(t testing.TB) {
	t.Helper()
	if err := n.store.Close(); err != nil {
		t.Errorf("close store %s: %v", n.id, err)
	}
	if err := n.db.Close(); err != nil {
		t.Errorf("close db %s: %v", n.id, err)
	}
}
