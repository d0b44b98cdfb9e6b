package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-datastore/query"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"

	"github.com/starling-sync/starling/crdt"
	"github.com/starling-sync/starling/election"
	"github.com/starling-sync/starling/entity"
	"github.com/starling-sync/starling/node"
	"github.com/starling-sync/starling/nodestate"
	"github.com/starling-sync/starling/p2p"
)

// starlingCluster is real Starling nodes (node.Open) on 127.0.0.1, or
// on a libp2p mocknet (openStarlingMock).
type starlingCluster struct {
	dir  string
	log  *slog.Logger
	opts []node.Option // for every node it opens, after the logger
	psk  []byte        // the private network key every node shares
	mu   sync.Mutex
	// nodes: a node stopped by Stop is nil until Restart.
	nodes []*node.Node
	// mn, when set, is the mocknet the nodes run on (openStarlingMock),
	// without their HTTP API.
	mn mocknet.Mocknet
	// opened counts the connections the nodes' hosts opened, each
	// counted on both of its ends (a churn figure of the idle rows).
	opened atomic.Int64
}

var _ cluster = (*starlingCluster)(nil)

// benchEnv is the environment of bench nodes: they connect to nothing else.
const benchEnv = "bench"

func openStarling(log *slog.Logger, opts ...node.Option) func(ctx context.Context, dir string, n int) (cluster, error) {
	return func(ctx context.Context, dir string, n int) (cluster, error) {
		c := &starlingCluster{dir: dir, log: log, opts: opts}
		if err := c.openAlone(ctx, n); err != nil {
			c.Close()
			return nil, err
		}
		for i, a := range c.nodes {
			for _, b := range c.nodes[i+1:] {
				ai := peer.AddrInfo{ID: b.PeerID(), Addrs: b.P2P().Host().Addrs()}
				if err := a.P2P().AddPeer(ctx, ai); err != nil {
					c.Close()
					return nil, fmt.Errorf("connect %s to %s: %w", a.NodeID(), b.NodeID(), err)
				}
			}
		}
		return c, nil
	}
}

// openAlone makes the cluster's private network key and opens n nodes,
// none of which knows another yet (the simulated clusters connect them
// afterwards).
func (c *starlingCluster) openAlone(ctx context.Context, n int) error {
	psk, err := p2p.GeneratePSK()
	if err != nil {
		return fmt.Errorf("private network key: %w", err)
	}
	c.psk = psk
	for range n {
		if _, err := c.start(ctx, nil); err != nil {
			return err
		}
	}
	return nil
}

// start initialises and opens one node; peers are its static peers.
func (c *starlingCluster) start(ctx context.Context, peers []string) (*node.Node, error) {
	c.mu.Lock()
	i := len(c.nodes)
	c.mu.Unlock()
	dir := filepath.Join(c.dir, fmt.Sprintf("starling%d", i+1))
	_, err := node.Init(dir, node.InitOptions{PSK: c.psk, Settings: node.Settings{
		Env: benchEnv, NodeID: fmt.Sprintf("node%d", i+1),
		ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, APIAddr: "127.0.0.1:0",
		Peers: peers, NoMDNS: true, NoDHT: true,
	}})
	if err != nil {
		return nil, err
	}
	n, err := c.open(ctx, dir, i)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.nodes = append(c.nodes, n)
	c.mu.Unlock()
	return n, nil
}

// open opens the node of dir, the i-th of the cluster.
func (c *starlingCluster) open(ctx context.Context, dir string, i int) (*node.Node, error) {
	opts := []node.Option{node.WithLogger(c.log)}
	if c.mn != nil {
		opts = append(opts, node.WithoutAPI(), node.WithHost(mockHost(c.mn, i)))
	}
	n, err := node.Open(ctx, dir, append(opts, c.opts...)...)
	if err != nil {
		return nil, err
	}
	n.P2P().Host().Network().Notify(&network.NotifyBundle{
		ConnectedF: func(network.Network, network.Conn) { c.opened.Add(1) },
	})
	return n, nil
}

func (c *starlingCluster) node(i int) *node.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i]
}

func (c *starlingCluster) Size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.nodes)
}

func entPath(e int) string   { return fmt.Sprintf("/e%d", e) }
func fieldName(f int) string { return fmt.Sprintf("f%d", f) }

func (c *starlingCluster) Prepare(ctx context.Context, ents int) error {
	es := c.node(0).Entities()
	for start := 0; start < ents; start += 500 {
		_, err := es.Update(ctx, func(tx *entity.Tx) error {
			for e := start; e < min(start+500, ents); e++ {
				if _, err := tx.Create("/", "Bench", fmt.Sprintf("e%d", e)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("create entities: %w", err)
		}
	}
	// Every node is checked in each round, so that a time-out says how
	// far replication got.
	missing := make([]int, c.Size())
	for i := range missing {
		missing[i] = i
	}
	err := poll(ctx, 5*time.Millisecond, func() (bool, error) {
		rest := missing[:0]
		for _, i := range missing {
			if _, err := c.node(i).Entities().Resolve(entPath(ents - 1)); err != nil {
				rest = append(rest, i)
			}
		}
		missing = rest
		return len(missing) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("entities replicated to %d of %d nodes, not yet to %s among others: %w", c.Size()-len(missing), c.Size(), c.node(missing[0]).NodeID(), err)
	}
	return nil
}

func (c *starlingCluster) Write(ctx context.Context, i int, w write) error {
	_, err := c.node(i).Entities().Set(ctx, entPath(w.f.ent), fieldName(w.f.f), entity.Int(w.v))
	return err
}

// starlingSetupBatch is the field writes per Update when setting up a
// store: one record (and one delta) per 1,000 writes.
const starlingSetupBatch = 1000

func (c *starlingCluster) WriteMany(ctx context.Context, i int, ws []write) error {
	es := c.node(i).Entities()
	for start := 0; start < len(ws); start += starlingSetupBatch {
		batch := ws[start:min(start+starlingSetupBatch, len(ws))]
		_, err := es.Update(ctx, func(tx *entity.Tx) error {
			for _, w := range batch {
				if err := tx.Set(entPath(w.f.ent), fieldName(w.f.f), entity.Int(w.v)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func (c *starlingCluster) Watch(i int) watcher {
	w := c.node(i).Entities().Watch("/", 1<<16)
	return watchStream(w.C(), w.Close, func(ev entity.Event) (field, bool) {
		e, err := strconv.Atoi(strings.TrimPrefix(ev.Path, "/e"))
		if err != nil || !strings.HasPrefix(ev.Field, "f") {
			return field{}, false
		}
		f, err := strconv.Atoi(ev.Field[1:])
		if err != nil {
			return field{}, false
		}
		return field{e, f}, true
	})
}

func (c *starlingCluster) Count(ctx context.Context, i int, e int) (int, error) {
	en, err := c.node(i).Entities().Get(entPath(e))
	if errors.Is(err, entity.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return len(en.Fields), nil
}

func (c *starlingCluster) Value(ctx context.Context, i int, f field) (int64, bool, error) {
	fv, err := c.node(i).Entities().GetField(entPath(f.ent), fieldName(f.f))
	if errors.Is(err, entity.ErrNotFound) || errors.Is(err, entity.ErrNoField) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	return fv.Value.Int, true, nil
}

// Diagnose says what node i's store and links are doing: for a write
// that never showed on it. In a loaded process gossipsub's event loop
// (its peer list) and the store's status (LevelDB's sizes) may answer
// only after minutes: what has not answered within 10 s is said so.
func (c *starlingCluster) Diagnose(i int) string {
	n := c.node(i)
	if n == nil {
		return "stopped"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type sessions struct {
		now     int
		renewed uint64
	}
	sc := make(chan sessions, 1)
	go func() {
		now, renewed := n.P2P().GossipSessions()
		sc <- sessions{now, renewed}
	}()
	stc := make(chan crdt.Status, 1)
	go func() { stc <- n.Store().Status(context.Background()) }()
	out := fmt.Sprintf("%d connections", len(n.P2P().Host().Network().Peers()))
	select {
	case s := <-sc:
		out += fmt.Sprintf(", %d gossip sessions (%d renewed)", s.now, s.renewed)
	case <-ctx.Done():
		out += ", gossipsub did not list its peers within 10 s"
	}
	select {
	case st := <-stc:
		return fmt.Sprintf("%s; %d heads, max height %d, queued jobs %d, dirty %v, syncing %v, receive queue %d, received %d, rejected %d, dropped %d, blocks requested %d",
			out, len(st.Heads), st.MaxHeight, st.QueuedJobs, st.Dirty, st.Syncing, st.ReceiveQueue, st.Received, st.Rejected, st.Dropped, st.Requested)
	case <-ctx.Done():
		return out + "; its store's status did not answer within 10 s"
	}
}

// Partition blocks node i and every other node from each other (the
// connection gater on both sides; open connections are closed).
func (c *starlingCluster) Partition(i int) error {
	cut := c.node(i)
	for j := range c.Size() {
		if j == i {
			continue
		}
		o := c.node(j)
		o.P2P().Block(cut.PeerID())
		cut.P2P().Block(o.PeerID())
	}
	return nil
}

// Heal lifts every block; the nodes' own re-dial loops reconnect.
func (c *starlingCluster) Heal() error {
	for a := range c.Size() {
		for b := range c.Size() {
			if a != b {
				c.node(a).P2P().Unblock(c.node(b).PeerID())
			}
		}
	}
	return nil
}

// Join starts a node with an empty data directory whose only
// configuration is node 1 as a static peer: it joins by state transfer
// on its own (node/transfer.go).
func (c *starlingCluster) Join(ctx context.Context) (int, error) {
	src := c.node(0)
	var peers []string
	for _, a := range src.P2P().Addrs() {
		peers = append(peers, a.String())
	}
	if _, err := c.start(ctx, peers); err != nil {
		return 0, err
	}
	return c.Size() - 1, nil
}

// Synced: the node says it holds the current state (ACTIVE).
func (c *starlingCluster) Synced(ctx context.Context, i int) bool {
	return c.node(i).SyncProgress().Phase == nodestate.PhaseActive
}

func (c *starlingCluster) SyncDone(ctx context.Context, i int) float64 {
	p := c.node(i).SyncProgress()
	switch {
	case p.Phase == nodestate.PhaseActive:
		return 1
	case p.EntriesTotal > 0:
		return float64(p.EntriesDone) / float64(p.EntriesTotal)
	}
	return 0
}

// agreedLeader reports the cluster leadership if every node names the
// same one (and there is one).
func (c *starlingCluster) agreedLeader() (election.Leadership, bool) {
	var first election.Leadership
	for i := range c.Size() {
		l := c.node(i).Election().Leader(election.ClusterGroup)
		if !l.HasLeader() || (i > 0 && l != first) {
			return l, false
		}
		first = l
	}
	return first, true
}

// leaderViews says which leader and term the nodes name, with how many
// name each: "node1@3 x98, node7@2 x2".
func (c *starlingCluster) leaderViews() string {
	count := make(map[string]int)
	for i := range c.Size() {
		l := c.node(i).Election().Leader(election.ClusterGroup)
		v := "none"
		if l.HasLeader() {
			v = fmt.Sprintf("%s@%d", l.Leader, l.Term)
		}
		count[v]++
	}
	views := slices.Collect(maps.Keys(count))
	slices.SortFunc(views, func(a, b string) int { return cmp.Or(count[b]-count[a], strings.Compare(a, b)) })
	for i, v := range views {
		views[i] = fmt.Sprintf("%s x%d", v, count[v])
	}
	return strings.Join(views, ", ")
}

func (c *starlingCluster) Dir(i int) string { return c.node(i).Dir() }

func (c *starlingCluster) Close() error {
	c.mu.Lock()
	nodes := c.nodes
	c.nodes = nil
	c.mu.Unlock()
	err := closeAll(nodes, (*node.Node).Close)
	if c.mn != nil {
		// Each node closed its host; this ends the mocknet's own context.
		_ = c.mn.Close()
	}
	return err
}

// closeAll closes every node at once (a nil one is stopped already) and
// joins their errors.
func closeAll[N comparable](nodes []N, closeNode func(N) error) error {
	var zero N
	var errs []error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, n := range nodes {
		if n == zero {
			continue
		}
		wg.Go(func() {
			if err := closeNode(n); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// starlingDir is the data directory of the i-th node of c.
func (c *starlingCluster) starlingDir(i int) string {
	return filepath.Join(c.dir, fmt.Sprintf("starling%d", i+1))
}

// Stop closes node i cleanly; its data directory stays. Until Restart,
// no other method may be called for node i.
func (c *starlingCluster) Stop(i int) error {
	c.mu.Lock()
	n := c.nodes[i]
	c.nodes[i] = nil
	c.mu.Unlock()
	if n == nil {
		return nil
	}
	return n.Close()
}

// Restart opens node i again on its data directory, with the cluster's
// options.
func (c *starlingCluster) Restart(ctx context.Context, i int) error {
	n, err := c.open(ctx, c.starlingDir(i), i)
	if err != nil {
		return fmt.Errorf("restart node %d: %w", i+1, err)
	}
	c.mu.Lock()
	c.nodes[i] = n
	c.mu.Unlock()
	return nil
}

// LiveBytes is the live state as node i's store returns it: the bytes of
// every current key and value (entity records, registers, schemas), what
// a state transfer carries.
func (c *starlingCluster) LiveBytes(ctx context.Context, i int) (int64, error) {
	res, err := c.node(i).Store().Query(ctx, query.Query{})
	if err != nil {
		return 0, err
	}
	return sumEntries(res)
}

// compact forces a compaction round on node i. A round skipped because
// the store is busy (a commit in flight, another round running) is tried
// again until one runs or there is nothing to reclaim, for up to
// compactWait.
func (c *starlingCluster) compact(ctx context.Context, i int) (crdt.CompactStats, error) {
	ctx, cancel := context.WithTimeout(ctx, compactWait)
	defer cancel()
	var st crdt.CompactStats
	err := poll(ctx, 10*time.Millisecond, func() (bool, error) {
		var err error
		st, err = c.node(i).Store().Compact(ctx, nil)
		switch {
		case errors.Is(err, crdt.ErrCompactBusy):
			return false, nil
		case err != nil:
			return false, err
		}
		// Done when it ran, or when it walked the DAG and found nothing
		// every member has merged (no busy store to wait for).
		return st.Skipped == "" || (st.Walked > 0 && st.Frontier == 0), nil
	})
	if errors.Is(err, context.DeadlineExceeded) && st.Skipped != "" {
		return st, nil // reported as skipped
	}
	return st, err
}

// compactWait bounds the retries of a forced round.
const compactWait = 30 * time.Second
