package statesync

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/starling-sync/starling/crdt"
	"github.com/starling-sync/starling/nodestate"
	"github.com/starling-sync/starling/p2p"
)

// stateProtocol is the state-transfer stream protocol.
const stateProtocol = "state/1.0.0"

// stateRequest opens a state-transfer stream.
const stateRequest = "STREQ1\n"

// emptyGrace is how long a joining node keeps asking when every peer it
// reaches has no state either.
const emptyGrace = time.Second

// DefaultJoinTimeout is how long a node with no state waits for a peer to
// transfer from before it starts as the first node of a cluster.
const DefaultJoinTimeout = 3 * time.Second

// DefaultJoinRetry is how often a joining node asks its connected peers
// again (peers still empty, a transfer that failed).
const DefaultJoinRetry = 250 * time.Millisecond

// Config is what a Syncer works with. Store, P2P, Loads and Available
// are required.
type Config struct {
	// NodeID names this node in refusals sent to peers.
	NodeID string
	// Store is the replicated store whose state is copied.
	Store *crdt.Store
	// P2P carries the state-transfer streams and lists the peers.
	P2P *p2p.Node
	// HasPeers says whether the node can find anyone to join (static
	// peers or discovery); without, a node with no state is ACTIVE at
	// once.
	HasPeers bool
	// JoinTimeout is how long a node with no state waits for a peer to
	// transfer from. Default DefaultJoinTimeout.
	JoinTimeout time.Duration
	// JoinRetry is how often a joining node asks its connected peers
	// again when nothing new has connected (every new connection is
	// asked at once). Default DefaultJoinRetry.
	JoinRetry time.Duration
	// Loads counts whole loads of the entity view; after an install the
	// Syncer waits until it moves, so the view is complete before the
	// node says it is ACTIVE.
	Loads func() uint64
	// Available makes the node an election candidate (true, once ACTIVE)
	// or takes it out (false, while a resync runs). Called from the
	// Syncer's goroutines.
	Available func(bool) error
	// ServeMax is how many state transfers this node serves at once;
	// a request beyond is refused with the reason, and the asking node
	// tries another peer. Each transfer holds a LevelDB snapshot (old
	// table files stay on disk until it ends) and a stream. Default
	// DefaultServeMax.
	ServeMax int
	// Logger receives progress and failures. Default: discard.
	Logger *slog.Logger
}

// DefaultServeMax is the default of Config.ServeMax: a new node and a
// repairing one at once.
const DefaultServeMax = 2

// Syncer runs the join, resync and serving of state transfers for one
// node. Its methods are safe for concurrent use.
type Syncer struct {
	cfg Config
	log *slog.Logger
	wg  sync.WaitGroup

	ctx    context.Context
	cancel context.CancelFunc
	once   sync.Once

	// serving holds a token per state transfer being served; served is
	// when each peer's last one began (servePeerEvery).
	serving  chan struct{}
	servedMu sync.Mutex
	served   map[peer.ID]time.Time

	mu      sync.Mutex
	prog    nodestate.SyncProgress
	running bool // a join or a resync is under way
	joining bool // the join is under way: this node holds no state yet
	onPhase []func(nodestate.SyncPhase)
}

// New returns a Syncer, not yet started: register OnPhase hooks, then
// call Start.
func New(cfg Config) (*Syncer, error) {
	if cfg.Store == nil || cfg.P2P == nil || cfg.Loads == nil || cfg.Available == nil {
		return nil, errors.New("statesync: Config needs Store, P2P, Loads and Available")
	}
	if cfg.JoinTimeout <= 0 {
		cfg.JoinTimeout = DefaultJoinTimeout
	}
	if cfg.JoinRetry <= 0 {
		cfg.JoinRetry = DefaultJoinRetry
	}
	if cfg.ServeMax <= 0 {
		cfg.ServeMax = DefaultServeMax
	}
	// JOINING until Start says otherwise: the node's monitor reports
	// before Start, and a report with no phase is refused by every peer
	// (each logged "dropped a bad node report" for every node's first).
	y := &Syncer{cfg: cfg, log: cfg.Logger, serving: make(chan struct{}, cfg.ServeMax),
		prog: nodestate.SyncProgress{Phase: nodestate.PhaseJoining}}
	if y.log == nil {
		y.log = slog.New(slog.DiscardHandler)
	}
	y.ctx, y.cancel = context.WithCancel(context.Background())
	return y, nil
}

// Progress reports the node's join/resync state.
func (y *Syncer) Progress() nodestate.SyncProgress { return y.get() }

// OnPhase calls f (from the goroutine that changed it, without locks
// held) whenever the node's phase changes.
func (y *Syncer) OnPhase(f func(nodestate.SyncPhase)) {
	y.mu.Lock()
	y.onPhase = append(y.onPhase, f)
	y.mu.Unlock()
}

// Close stops the Syncer's goroutines and any transfer in progress, and
// waits for them. Safe to call twice.
func (y *Syncer) Close() {
	y.once.Do(func() {
		y.cancel()
		y.wg.Wait()
	})
}

func (y *Syncer) get() nodestate.SyncProgress {
	y.mu.Lock()
	defer y.mu.Unlock()
	return y.prog
}

func (y *Syncer) update(f func(p *nodestate.SyncProgress)) {
	y.mu.Lock()
	before := y.prog.Phase
	f(&y.prog)
	after := y.prog.Phase
	hooks := slices.Clone(y.onPhase)
	y.mu.Unlock()
	if before != after {
		for _, h := range hooks {
			h(after)
		}
	}
}

// Start decides whether the node joins by state transfer, serves
// transfers to peers, and makes the node an election candidate once it
// is ACTIVE.
func (y *Syncer) Start() error {
	ctx := y.ctx
	y.cfg.P2P.HandleStream(stateProtocol, y.serveState)
	y.wg.Add(1)
	go func() {
		defer y.wg.Done()
		y.repairDirty(ctx)
	}()
	// The store held received heads since it opened empty (crdt's
	// HoldRemoteWhenEmpty); the join below holds them on its own.
	defer y.cfg.Store.ReleaseOpenHold()
	if !y.cfg.Store.NeedsTransfer(ctx) || !y.cfg.HasPeers {
		y.cfg.Store.MergePending(ctx)
		y.update(func(p *nodestate.SyncProgress) { p.Phase = nodestate.PhaseActive })
		return y.cfg.Available(true)
	}
	y.update(func(p *nodestate.SyncProgress) { p.Phase = nodestate.PhaseJoining })
	y.mu.Lock()
	y.running, y.joining = true, true
	y.mu.Unlock()
	y.cfg.Store.HoldRemote()
	y.log.Info("no local state: joining by state transfer", "join_timeout", y.cfg.JoinTimeout)
	y.wg.Add(1)
	go func() {
		defer y.wg.Done()
		y.join(ctx, y.cfg.JoinTimeout)
	}()
	return nil
}

// join runs until the node holds the cluster's state or decides it is
// the first node.
func (y *Syncer) join(ctx context.Context, timeout time.Duration) {
	started := time.Now()
	deadline := started.Add(timeout)
	defer y.cfg.Store.ReleaseRemote()
	finish := func(why string) {
		y.cfg.Store.MergePending(ctx)
		y.mu.Lock()
		y.running, y.joining = false, false
		y.mu.Unlock()
		y.update(func(p *nodestate.SyncProgress) { p.Phase = nodestate.PhaseActive; p.Source = "" })
		y.log.Info("node is active", "how", why)
		if err := y.cfg.Available(true); err != nil && ctx.Err() == nil {
			y.log.Error("election", "err", err)
		}
	}
	// A peer that connects is asked at once: waiting for the next tick
	// made a join take a whole tick longer whenever the static peer
	// connected just after the first look (bench: 80 or 330 ms).
	events, stop := y.cfg.P2P.SubscribePeers()
	defer stop()
	t := time.NewTicker(y.cfg.JoinRetry)
	defer t.Stop()
	for {
		peers := y.connectedPeers()
		empty := 0
		for _, p := range peers {
			err := y.transferFrom(ctx, p, nodestate.PhaseJoining, true)
			switch {
			case err == nil:
				finish("state transfer from " + p.String())
				return
			case errors.Is(err, crdt.ErrEmptySource):
				empty++
			case ctx.Err() != nil:
				return
			default:
				y.log.Warn("state transfer failed; trying another peer", "peer", p, "err", err)
			}
		}
		// A new cluster starting together: every peer is empty too. Give
		// the others a moment to connect first, so a node that is new
		// among old ones does not take the new ones for the cluster.
		if len(peers) > 0 && empty == len(peers) && time.Since(started) > emptyGrace {
			finish("every peer is new too: a new cluster")
			return
		}
		if time.Now().After(deadline) {
			if len(peers) == 0 {
				finish(fmt.Sprintf("no peer within %v: first node", timeout))
			} else {
				finish(fmt.Sprintf("no peer could transfer its state within %v", timeout))
			}
			return
		}
		if !y.waitJoinRetry(ctx, t.C, events) {
			return
		}
	}
}

// waitJoinRetry waits for the next tick or a new connection; false when
// ctx is done or the p2p node closed.
func (y *Syncer) waitJoinRetry(ctx context.Context, tick <-chan time.Time, events <-chan p2p.PeerEvent) bool {
	for {
		select {
		case <-ctx.Done():
			return false
		case <-tick:
			return true
		case ev, ok := <-events:
			if !ok {
				return false
			}
			if ev.Connected {
				return true
			}
		}
	}
}

func (y *Syncer) connectedPeers() []peer.ID { return transferOrder(y.cfg.P2P.Peers()) }

// transferOrder lists the connected peers to transfer from: those
// reached directly (or hole-punched) first, those reached only through
// a relay last. A relay cuts each circuit after 16 MiB and 2 minutes
// (p2p's relay limits), so a large state comes through one only when no
// direct peer has it (with symmetric NAT on both sides); the relaying
// node itself is a direct peer of both.
func transferOrder(peers []p2p.PeerInfo) []peer.ID {
	var direct, relayed []peer.ID
	for _, p := range peers {
		switch {
		case !p.Connected || p.Blocked:
		case p.Conn == p2p.ConnRelayed:
			relayed = append(relayed, p.ID)
		default:
			direct = append(direct, p.ID)
		}
	}
	return append(direct, relayed...)
}

// transferFrom installs a peer's state; phase is the phase to return to
// if it fails (JOINING or ACTIVE). skipEmpty skips sources with no state.
func (y *Syncer) transferFrom(ctx context.Context, from peer.ID, back nodestate.SyncPhase, skipEmpty bool) (err error) {
	start := time.Now()
	y.update(func(p *nodestate.SyncProgress) {
		p.Phase, p.Source, p.Started = nodestate.PhaseSyncing, from.String(), start
		p.EntriesDone, p.EntriesTotal, p.BytesDone, p.BytesTotal = 0, 0, 0, 0
	})
	defer func() {
		y.update(func(p *nodestate.SyncProgress) {
			if err != nil {
				p.Phase, p.Source = back, ""
				if !errors.Is(err, crdt.ErrEmptySource) {
					p.LastError = err.Error()
				}
				return
			}
			p.Transfers++
			p.LastError = ""
		})
	}()
	sctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	s, err := y.cfg.P2P.OpenStream(sctx, from, stateProtocol)
	if err != nil {
		return err
	}
	defer s.Close()
	go func() { // a stalled source must not hold the node for ten minutes
		<-sctx.Done()
		_ = s.Reset()
	}()
	if _, err := io.WriteString(s, stateRequest); err != nil {
		return fmt.Errorf("ask %s for its state: %w", from, err)
	}
	if err := s.CloseWrite(); err != nil {
		return fmt.Errorf("ask %s for its state: %w", from, err)
	}
	loads := y.cfg.Loads()
	err = y.cfg.Store.Install(sctx, idleReader{s, transferIdle}, crdt.InstallOptions{
		SkipEmpty: skipEmpty,
		Progress: func(tp crdt.TransferProgress) {
			y.update(func(p *nodestate.SyncProgress) {
				p.EntriesDone, p.EntriesTotal = tp.EntriesDone, tp.Header.Entries
				p.BytesDone, p.BytesTotal = tp.BytesDone, tp.Header.Bytes
			})
		},
	})
	if err != nil {
		return err
	}
	// The view is complete before the node says so: the install tells
	// the change feed's subscribers to reload; wait for the entity tree.
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for y.cfg.Loads() == loads {
		select {
		case <-sctx.Done():
			return fmt.Errorf("load the installed entity tree: %w", sctx.Err())
		case <-t.C:
		}
	}
	y.log.Info("state transfer installed", "from", from, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// transferIdle is how long a state transfer may go without a byte moving
// (a partition, a peer gone) before it is abandoned and another peer is
// tried.
const transferIdle = 15 * time.Second

type deadliner interface {
	io.ReadWriteCloser
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
}

// idleReader fails a Read that waits longer than idle.
type idleReader struct {
	s    deadliner
	idle time.Duration
}

func (r idleReader) Read(p []byte) (int, error) {
	_ = r.s.SetReadDeadline(time.Now().Add(r.idle))
	return r.s.Read(p)
}

// idleWriter fails a Write that waits longer than idle.
type idleWriter struct {
	s    deadliner
	idle time.Duration
}

func (w idleWriter) Write(p []byte) (int, error) {
	_ = w.s.SetWriteDeadline(time.Now().Add(w.idle))
	return w.s.Write(p)
}

// serveState answers a peer's state request.
func (y *Syncer) serveState(from peer.ID, s io.ReadWriteCloser) {
	defer s.Close()
	br := bufio.NewReader(io.LimitReader(s, int64(len(stateRequest))))
	req, err := br.ReadString('\n')
	if err != nil || req != stateRequest {
		y.log.Warn("bad state request", "peer", from, "err", err)
		return
	}
	y.mu.Lock()
	ph, joining := y.prog.Phase, y.joining
	y.mu.Unlock()
	switch {
	case ph == nodestate.PhaseActive:
	case ph == nodestate.PhaseJoining, ph == nodestate.PhaseSyncing && joining:
		// Nothing to give yet (at most this node's own writes, which
		// reach the others anyway), also while it tries a transfer
		// itself: answering "empty" lets the nodes of a new cluster that
		// start together find each other new at once. (Refusing while
		// trying made 24 nodes started at once take 26 s to all turn
		// ACTIVE: each round, some peer was trying another.)
		_ = crdt.WriteEmptySnapshot(s)
		return
	default:
		_ = crdt.RefuseSnapshot(s, fmt.Sprintf("node %s is %s itself", y.cfg.NodeID, ph))
		return
	}
	if wait := y.servedRecently(from); wait > 0 {
		_ = crdt.RefuseSnapshot(s, fmt.Sprintf("node %s served this peer a state transfer less than %v ago; ask again in %v, or another peer", y.cfg.NodeID, servePeerEvery, wait.Round(time.Second)))
		y.log.Info("state transfer refused: asked again too soon", "peer", from, "wait", wait.Round(time.Second))
		return
	}
	select {
	case y.serving <- struct{}{}:
		defer func() { <-y.serving }()
	default:
		_ = crdt.RefuseSnapshot(s, fmt.Sprintf("node %s already serves %d state transfer(s) at once, its limit; ask another peer or again later", y.cfg.NodeID, cap(y.serving)))
		y.log.Info("state transfer refused: serving the most at once", "peer", from, "serving", cap(y.serving))
		return
	}
	start := time.Now()
	var w io.Writer = s
	if st, ok := s.(deadliner); ok {
		w = idleWriter{st, transferIdle}
	}
	if err := y.cfg.Store.WriteSnapshot(y.ctx, w); err != nil {
		y.log.Warn("state transfer to peer failed", "peer", from, "err", err)
		return
	}
	y.log.Info("state transferred to peer", "peer", from, "took", time.Since(start).Round(time.Millisecond))
}

// servePeerEvery is the least time between two state transfers this node
// serves one peer: a node joins or resyncs now and then, while a peer
// asking back to back (issue 14's adversary: 17 a second across a
// cluster) would keep the snapshot slots taken and the disk busy.
const servePeerEvery = 10 * time.Second

// servedRecently reports how long from must wait before this node serves
// it again (0: now), and if 0 notes that it is served now.
func (y *Syncer) servedRecently(from peer.ID) time.Duration {
	now := time.Now()
	y.servedMu.Lock()
	defer y.servedMu.Unlock()
	if y.served == nil {
		y.served = make(map[peer.ID]time.Time)
	}
	if last, ok := y.served[from]; ok && now.Sub(last) < servePeerEvery {
		return servePeerEvery - now.Sub(last)
	}
	if len(y.served) > 1024 {
		for p, t := range y.served {
			if now.Sub(t) >= servePeerEvery {
				delete(y.served, p)
			}
		}
	}
	y.served[from] = now
	return 0
}

// dirtyCheckInterval is how often the node looks for a dirty store, and
// dirtyRetry how long it waits after a repair by resync failed.
const (
	dirtyCheckInterval = 2 * time.Second
	dirtyRetry         = 30 * time.Second
)

// repairDirty resyncs from a peer when the store is dirty: a DAG walk
// failed part-way (a block could not be fetched in time), which leaves a
// gap that go-ds-crdt's own repair fills only by walking the whole DAG to
// its root, fetching every block a state-transferred node never had.
// A transfer replaces the state with a consistent copy and merges this
// node's own DAG on top.
func (y *Syncer) repairDirty(ctx context.Context) {
	t := time.NewTicker(dirtyCheckInterval)
	defer t.Stop()
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if y.Progress().Phase != nodestate.PhaseActive || time.Since(last) < dirtyRetry {
			continue
		}
		if !y.cfg.Store.Dirty(ctx) || len(y.connectedPeers()) == 0 {
			continue
		}
		last = time.Now()
		y.log.Warn("the store is dirty (a DAG walk failed part-way): resyncing from a peer")
		if err := y.Resync(""); err != nil && !errors.Is(err, nodestate.ErrSyncBusy) {
			y.log.Warn("resync of a dirty store", "err", err)
		}
	}
}

// Resync forces a full state transfer from a peer (the one named, or
// the first connected peer that can serve), keeping local writes the
// peers do not have yet. It returns once the transfer has started; its
// progress is in nodestate.SyncProgress. nodestate.ErrSyncBusy if one is running.
func (y *Syncer) Resync(peerID string) error {
	var want []peer.ID
	if peerID != "" {
		id, err := peer.Decode(peerID)
		if err != nil {
			return fmt.Errorf("resync: %q is not a peer ID: %w", peerID, err)
		}
		want = []peer.ID{id}
	} else {
		want = y.connectedPeers()
	}
	if len(want) == 0 {
		return errors.New("resync: no connected peer to transfer the state from; check `starling cluster peers`")
	}
	y.mu.Lock()
	if y.running {
		y.mu.Unlock()
		return nodestate.ErrSyncBusy
	}
	y.running = true
	y.mu.Unlock()
	if err := y.cfg.Available(false); err != nil {
		y.log.Warn("resync: leaving the election", "err", err)
	}
	y.update(func(p *nodestate.SyncProgress) { p.Phase = nodestate.PhaseSyncing; p.LastError = "" })
	y.wg.Add(1)
	go func() {
		defer y.wg.Done()
		defer func() {
			y.mu.Lock()
			y.running = false
			y.mu.Unlock()
			if y.ctx.Err() == nil {
				if err := y.cfg.Available(true); err != nil {
					y.log.Warn("resync: rejoining the election", "err", err)
				}
			}
		}()
		var errs []error
		for _, p := range want {
			err := y.transferFrom(y.ctx, p, nodestate.PhaseActive, false)
			if err == nil {
				y.update(func(p *nodestate.SyncProgress) { p.Phase, p.Source = nodestate.PhaseActive, "" })
				return
			}
			errs = append(errs, fmt.Errorf("%s: %w", p, err))
			if y.ctx.Err() != nil {
				return
			}
		}
		err := errors.Join(errs...)
		y.log.Warn("resync failed", "err", err)
		y.update(func(p *nodestate.SyncProgress) { p.Phase = nodestate.PhaseActive; p.LastError = err.Error() })
	}()
	return nil
}
