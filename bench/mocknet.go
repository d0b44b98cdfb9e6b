package bench

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
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
	dssync "github.com/ipfs/go-datastore/sync"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"

	"github.com/starling-sync/starling/crdt"
)

// The mocknet workload: many nodes in one process on libp2p's mocknet.
// node.Open listens on real sockets and cannot run on a mocknet, so the
// Starling side is crdt.Store (group commit, blocks carried in
// broadcasts, heads exchange on connect) over a Transport made here from
// gossipsub and direct streams on mocknet hosts, like p2p.Replication.
// Both sides keep their data in memory (map datastores): 50-100 LevelDBs
// would measure the disk, not replication.

// mockDegree is how many ring neighbours each simulated node connects to
// on each side: a sparse, connected graph, as in a real deployment where
// a node does not dial every other one.
const mockDegree = 4

func memDatastore() ds.Batching { return dssync.MutexWrap(ds.NewMapDatastore()) }

// mockTopology links and connects node i to its next mockDegree ring
// neighbours and to one random node.
func mockTopology(ctx context.Context, mn mocknet.Mocknet, ids []peer.ID, seed int64) error {
	rng := rand.New(rand.NewSource(seed))
	connect := func(a, b peer.ID) error {
		if a == b || len(mn.LinksBetweenPeers(a, b)) > 0 {
			return nil
		}
		if _, err := mn.LinkPeers(a, b); err != nil {
			return err
		}
		_, err := mn.ConnectPeers(a, b)
		return err
	}
	for i, a := range ids {
		for d := 1; d <= mockDegree && d < len(ids); d++ {
			if err := connect(a, ids[(i+d)%len(ids)]); err != nil {
				return err
			}
		}
		if err := connect(a, ids[rng.Intn(len(ids))]); err != nil {
			return err
		}
	}
	return ctx.Err()
}

func openRawMock(ctx context.Context, n int, seed int64) (cluster, error) {
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

// mockStore is one Starling store on a mocknet host.
type mockStore struct {
	h        host.Host
	ps       *pubsub.PubSub
	psCancel context.CancelFunc
	tr       *mockTransport
	bs       *bitswap.Bitswap
	bsCancel context.CancelFunc
	store    *crdt.Store
}

func (m *mockStore) close() error {
	var errs []error
	if m.store != nil {
		errs = append(errs, m.store.Close())
	}
	if m.tr != nil {
		m.tr.close()
	}
	if m.bs != nil {
		errs = append(errs, m.bs.Close())
		m.bsCancel()
	}
	if m.psCancel != nil {
		m.psCancel()
	}
	errs = append(errs, m.h.Close())
	return errors.Join(errs...)
}

// mockStarling is Starling stores on a mocknet.
type mockStarling struct {
	mn     mocknet.Mocknet
	log    *slog.Logger
	nodes  []*mockStore
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	seq    int
}

var _ cluster = (*mockStarling)(nil)

func openStarlingMock(log *slog.Logger) func(ctx context.Context, n int, seed int64) (cluster, error) {
	return func(ctx context.Context, n int, seed int64) (_ cluster, err error) {
		c := &mockStarling{mn: mocknet.New(), log: log}
		c.ctx, c.cancel = context.WithCancel(context.Background())
		defer func() {
			if err != nil {
				c.Close()
			}
		}()
		for range n {
			m, err := c.startStore(ctx)
			if err != nil {
				return nil, err
			}
			c.nodes = append(c.nodes, m)
		}
		var ids []peer.ID
		for _, m := range c.nodes {
			ids = append(ids, m.h.ID())
		}
		if err := mockTopology(ctx, c.mn, ids, seed); err != nil {
			return nil, err
		}
		return c, nil
	}
}

func (c *mockStarling) startStore(ctx context.Context) (_ *mockStore, err error) {
	h, err := c.mn.GenPeer()
	if err != nil {
		return nil, err
	}
	m := &mockStore{h: h}
	defer func() {
		if err != nil {
			m.close()
		}
	}()
	var psCtx context.Context
	psCtx, m.psCancel = context.WithCancel(context.Background())
	// The options p2p.Node uses.
	m.ps, err = pubsub.NewGossipSub(psCtx, h, pubsub.WithMaxMessageSize(4<<20), pubsub.WithFloodPublish(true))
	if err != nil {
		return nil, err
	}
	if m.tr, err = newMockTransport(h, m.ps); err != nil {
		return nil, err
	}
	backing := memDatastore()
	bstore := blockstore.NewBlockstore(namespace.Wrap(backing, ds.NewKey("/blocks")))
	var bsCtx context.Context
	bsCtx, m.bsCancel = context.WithCancel(context.Background())
	m.bs = bitswap.New(bsCtx, bsnet.NewFromIpfsHost(h), nil, bstore)
	dag := merkledag.NewDAGService(blockservice.New(bstore, m.bs))
	m.store, err = crdt.Open(ctx, backing, dag, m.tr, crdt.Options{LocalBlocks: bstore, Logger: c.log})
	if err != nil {
		return nil, err
	}
	// Heads exchange on connect, as node.Node does.
	h.Network().Notify(&network.NotifyBundle{ConnectedF: func(_ network.Network, conn network.Conn) {
		m.store.PeerConnected(conn.RemotePeer().String())
	}})
	return m, nil
}

func (c *mockStarling) Size() int { return len(c.nodes) }

// Prepare writes on node 0 until every node has the write.
func (c *mockStarling) Prepare(ctx context.Context, _ int) error {
	return poll(ctx, 250*time.Millisecond, func() (bool, error) {
		c.seq++
		if err := c.nodes[0].store.Put(ctx, ds.NewKey(fmt.Sprintf("/warm/%d", c.seq)), []byte("w")); err != nil {
			return false, err
		}
		for _, m := range c.nodes {
			res, err := m.store.Query(ctx, query.Query{Prefix: "/warm", KeysOnly: true, Limit: 1})
			if err != nil {
				return false, err
			}
			all, err := res.Rest()
			if err != nil || len(all) == 0 {
				return false, err
			}
		}
		return true, nil
	})
}

func (c *mockStarling) Write(ctx context.Context, i int, w write) error {
	return c.nodes[i].store.Put(ctx, ds.NewKey(w.f.key()), binary.AppendVarint(nil, w.v))
}

func (c *mockStarling) WriteMany(ctx context.Context, i int, ws []write) error {
	for _, w := range ws {
		if err := c.Write(ctx, i, w); err != nil {
			return err
		}
	}
	return nil
}

func (c *mockStarling) Watch(i int) watcher {
	sub := c.nodes[i].store.Subscribe(ds.NewKey("/"), 1<<16)
	return watchStream(sub.C(), sub.Close, func(ch crdt.Change) (field, bool) { return parseKey(ch.Key.String()) })
}

var errMockOnly = errors.New("bench: not used on the mocknet")

func (c *mockStarling) Count(context.Context, int, int) (int, error) { return 0, errMockOnly }
func (c *mockStarling) Value(context.Context, int, field) (int64, bool, error) {
	return 0, false, errMockOnly
}
func (c *mockStarling) Partition(int) error                   { return errMockOnly }
func (c *mockStarling) Heal() error                           { return errMockOnly }
func (c *mockStarling) Join(context.Context) (int, error)     { return 0, errMockOnly }
func (c *mockStarling) Synced(context.Context, int) bool      { return false }
func (c *mockStarling) SyncDone(context.Context, int) float64 { return 0 }
func (c *mockStarling) Dir(int) string                        { return "" }

func (c *mockStarling) Close() error {
	c.cancel()
	c.wg.Wait()
	var errs []error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, m := range c.nodes {
		wg.Go(func() {
			if err := m.close(); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(append(errs, c.mn.Close())...)
}

// mockTransport is crdt.Transport over gossipsub and direct streams,
// like p2p.Replication (which the p2p package builds only on its own
// host).
type mockTransport struct {
	h     host.Host
	topic *pubsub.Topic
	sub   *pubsub.Subscription
	inbox chan inbound
	ctx   context.Context
	stop  context.CancelFunc
	wg    sync.WaitGroup
}

type inbound struct {
	from string
	data []byte
}

var _ crdt.Transport = (*mockTransport)(nil)

const mockDirectProto = "/starling-bench/direct/1.0.0"

func newMockTransport(h host.Host, ps *pubsub.PubSub) (*mockTransport, error) {
	t := &mockTransport{h: h, inbox: make(chan inbound, 4096)}
	t.ctx, t.stop = context.WithCancel(context.Background())
	var err error
	if t.topic, err = ps.Join("starling-bench"); err != nil {
		return nil, err
	}
	if t.sub, err = t.topic.Subscribe(pubsub.WithBufferSize(4096)); err != nil {
		return nil, err
	}
	h.SetStreamHandler(mockDirectProto, t.handle)
	t.wg.Go(func() {
		for {
			m, err := t.sub.Next(t.ctx)
			if err != nil {
				return
			}
			if m.ReceivedFrom == h.ID() || m.GetFrom() == h.ID() {
				continue
			}
			select {
			case t.inbox <- inbound{m.GetFrom().String(), m.Data}:
			case <-t.ctx.Done():
				return
			}
		}
	})
	return t, nil
}

func (t *mockTransport) close() {
	t.h.RemoveStreamHandler(mockDirectProto)
	t.stop()
	t.sub.Cancel()
	t.wg.Wait()
	_ = t.topic.Close()
}

func (t *mockTransport) Publish(ctx context.Context, data []byte) error {
	return t.topic.Publish(ctx, data)
}

func (t *mockTransport) SendTo(ctx context.Context, to string, data []byte) error {
	id, err := peer.Decode(to)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s, err := t.h.NewStream(ctx, id, mockDirectProto)
	if err != nil {
		return err
	}
	buf := binary.AppendUvarint(nil, uint64(len(data)))
	if _, err := s.Write(append(buf, data...)); err != nil {
		_ = s.Reset()
		return err
	}
	return s.Close()
}

func (t *mockTransport) handle(s network.Stream) {
	defer s.Close()
	br := bufio.NewReader(s)
	l, err := binary.ReadUvarint(br)
	if err != nil || l > 4<<20 {
		_ = s.Reset()
		return
	}
	data := make([]byte, l)
	if _, err := io.ReadFull(br, data); err != nil {
		_ = s.Reset()
		return
	}
	select {
	case t.inbox <- inbound{s.Conn().RemotePeer().String(), data}:
	case <-t.ctx.Done():
	}
}

func (t *mockTransport) Receive(ctx context.Context) (string, []byte, error) {
	select {
	case m := <-t.inbox:
		return m.from, m.data, nil
	case <-ctx.Done():
		return "", nil, ctx.Err()
	case <-t.ctx.Done():
		return "", nil, errors.New("bench: transport closed")
	}
}
