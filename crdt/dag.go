package crdt

import (
	"context"
	"sync"

	cid "github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
)

// recentBlocks keeps the raw bytes of recently added or received blocks,
// bounded by total size, oldest evicted first. Broadcasts and head
// exchanges carry blocks from here.
type recentBlocks struct {
	mu    sync.Mutex
	max   int
	size  int
	data  map[cid.Cid][]byte
	order []cid.Cid // FIFO; may hold CIDs already evicted
}

func newRecentBlocks(max int) *recentBlocks {
	return &recentBlocks{max: max, data: make(map[cid.Cid][]byte)}
}

func (r *recentBlocks) add(c cid.Cid, data []byte) {
	if len(data) > r.max {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.data[c]; ok {
		return
	}
	r.data[c] = data
	r.order = append(r.order, c)
	r.size += len(data)
	for r.size > r.max && len(r.order) > 0 {
		old := r.order[0]
		r.order = r.order[1:]
		if d, ok := r.data[old]; ok {
			r.size -= len(d)
			delete(r.data, old)
		}
	}
}

func (r *recentBlocks) get(c cid.Cid) ([]byte, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	d, ok := r.data[c]
	return d, ok
}

// recordingDAG wraps the DAG service given to go-ds-crdt and remembers
// every block go-ds-crdt adds, so the broadcast of a new head can carry it.
type recordingDAG struct {
	ipld.DAGService
	recent *recentBlocks
	// store guards what go-ds-crdt reads (guardGetter, frontier.go);
	// nil: no guard.
	store *Store
}

// Get reads through the frontier guard.
func (d *recordingDAG) Get(ctx context.Context, c cid.Cid) (ipld.Node, error) {
	if d.store == nil {
		return d.DAGService.Get(ctx, c)
	}
	return guardGetter{NodeGetter: d.DAGService, s: d.store}.Get(ctx, c)
}

// GetMany reads through the frontier guard.
func (d *recordingDAG) GetMany(ctx context.Context, cs []cid.Cid) <-chan *ipld.NodeOption {
	if d.store == nil {
		return d.DAGService.GetMany(ctx, cs)
	}
	return guardGetter{NodeGetter: d.DAGService, s: d.store}.GetMany(ctx, cs)
}

var _ ipld.DAGService = (*recordingDAG)(nil)

func (d *recordingDAG) Add(ctx context.Context, n ipld.Node) error {
	if err := d.DAGService.Add(ctx, n); err != nil {
		return err
	}
	d.recent.add(n.Cid(), n.RawData())
	addedIn(ctx).add(n)
	return nil
}

func (d *recordingDAG) AddMany(ctx context.Context, ns []ipld.Node) error {
	if err := d.DAGService.AddMany(ctx, ns); err != nil {
		return err
	}
	a := addedIn(ctx)
	for _, n := range ns {
		d.recent.add(n.Cid(), n.RawData())
		a.add(n)
	}
	return nil
}

// addedBlocks collects the blocks go-ds-crdt adds during one commit. The
// commit puts it in the context it passes to go-ds-crdt, which hands
// that context on to the DAG service's Add and to the broadcaster's
// Broadcast: so the commit's broadcast knows the blocks to carry without
// decoding the heads go-ds-crdt just encoded (see broadcaster.Broadcast).
type addedBlocks struct {
	mu     sync.Mutex
	blocks []carriedBlock
}

type addedBlocksKey struct{}

// withAddedBlocks returns ctx with a new collector of added blocks.
func withAddedBlocks(ctx context.Context) context.Context {
	return context.WithValue(ctx, addedBlocksKey{}, &addedBlocks{})
}

// addedIn returns ctx's collector, or nil (its methods accept nil).
func addedIn(ctx context.Context) *addedBlocks {
	a, _ := ctx.Value(addedBlocksKey{}).(*addedBlocks)
	return a
}

func (a *addedBlocks) add(n ipld.Node) {
	if a == nil {
		return
	}
	a.mu.Lock()
	a.blocks = append(a.blocks, carriedBlock{cid: n.Cid(), data: n.RawData()})
	a.mu.Unlock()
}

// get returns the blocks added so far; ok is false without a collector.
func (a *addedBlocks) get() (blocks []carriedBlock, ok bool) {
	if a == nil {
		return nil, false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.blocks, true
}

// sessionDAG is implemented by DAG services that offer sessions
// (merkledag does); go-ds-crdt uses them to walk a branch.
type sessionDAG interface {
	Session(context.Context) ipld.NodeGetter
}

// recordingSessionDAG is a recordingDAG that passes sessions through.
type recordingSessionDAG struct {
	*recordingDAG
	sessions sessionDAG
}

func (d *recordingSessionDAG) Session(ctx context.Context) ipld.NodeGetter {
	if d.store == nil {
		return d.sessions.Session(ctx)
	}
	return guardGetter{NodeGetter: d.sessions.Session(ctx), s: d.store}
}

// wrapDAG returns the recording wrapper, keeping session support; with a
// store, reads go through its frontier guard.
func wrapDAG(dag ipld.DAGService, recent *recentBlocks, s *Store) ipld.DAGService {
	r := &recordingDAG{DAGService: dag, recent: recent, store: s}
	if s, ok := dag.(sessionDAG); ok {
		return &recordingSessionDAG{recordingDAG: r, sessions: s}
	}
	return r
}
