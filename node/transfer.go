package node

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/starling-sync/starling/crdt"
)

// State transfer between nodes (crdt/install.go does the copying):
//
//   - A node that starts with no state (a new or wiped data dir, or an
//     install cut off by a crash) is JOINING: it holds received heads
//     back (so go-ds-crdt does not start walking the history), asks
//     connected peers for their state one at a time, and is SYNCING
//     while a transfer runs. Once installed it is ACTIVE. Peers that have
//     no state either are skipped; when every peer that answered is empty
//     (a new cluster starting together), or when no peer is reachable
//     within the join timeout (the first node), it becomes ACTIVE as is.
//     It is not an election candidate until ACTIVE.
//   - Resync forces a transfer on a running node (SYNCING meanwhile),
//     keeping its local writes that peers do not have yet.
//   - A node serves its state only while ACTIVE.
//
// A node with no static peers and no discovery has nobody to join: it is
// ACTIVE at once.

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

// WithJoinTimeout sets how long a node with no state waits for a peer to
// transfer from (default DefaultJoinTimeout).
func WithJoinTimeout(d time.Duration) Option {
	return func(o *openOptions) { o.joinTimeout = d }
}

// ErrSyncBusy means a state transfer is already running.
var ErrSyncBusy = errors.New("node: a state transfer is already running")

// syncer holds the node's join/resync state.
type syncer struct {
	mu      sync.Mutex
	prog    SyncProgress
	running bool
	ctx     context.Context
	cancel  context.CancelFunc
	onPhase []func(SyncPhase)
}

func (y *syncer) get() SyncProgress {
	y.mu.Lock()
	defer y.mu.Unlock()
	return y.prog
}

func (y *syncer) update(f func(p *SyncProgress)) {
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

// startSync decides whether the node joins by state transfer, serves
// transfers to peers, and makes the node an election candidate once it
// is ACTIVE.
func (n *Node) startSync(joinTimeout time.Duration) error {
	ctx, cancel := context.WithCancel(context.Background())
	n.sync.ctx, n.sync.cancel = ctx, cancel
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		<-n.stopPeers
		cancel()
	}()
	n.p2p.HandleStream(stateProtocol, n.serveState)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.repairDirty(ctx)
	}()
	hasPeers := len(n.cfg.Peers) > 0 || n.cfg.MDNS || n.cfg.DHT
	if !n.store.NeedsTransfer(ctx) || !hasPeers {
		n.store.MergePending(ctx)
		n.sync.update(func(p *SyncProgress) { p.Phase = PhaseActive })
		return n.markAvailable()
	}
	if joinTimeout <= 0 {
		joinTimeout = DefaultJoinTimeout
	}
	n.sync.update(func(p *SyncProgress) { p.Phase = PhaseJoining })
	n.sync.running = true
	n.store.HoldRemote()
	n.log.Info("no local state: joining by state transfer", "join_timeout", joinTimeout)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.join(ctx, joinTimeout)
	}()
	return nil
}

// join runs until the node holds the cluster's state or decides it is
// the first node.
func (n *Node) join(ctx context.Context, timeout time.Duration) {
	started := time.Now()
	deadline := started.Add(timeout)
	defer n.store.ReleaseRemote()
	finish := func(why string) {
		n.store.MergePending(ctx)
		n.sync.mu.Lock()
		n.sync.running = false
		n.sync.mu.Unlock()
		n.sync.update(func(p *SyncProgress) { p.Phase = PhaseActive; p.Source = "" })
		n.log.Info("node is active", "how", why)
		if err := n.markAvailable(); err != nil && ctx.Err() == nil {
			n.log.Error("election", "err", err)
		}
	}
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		peers := n.connectedPeers()
		empty := 0
		for _, p := range peers {
			err := n.transferFrom(ctx, p, PhaseJoining, true)
			switch {
			case err == nil:
				finish("state transfer from " + p.String())
				return
			case errors.Is(err, crdt.ErrEmptySource):
				empty++
			case ctx.Err() != nil:
				return
			default:
				n.log.Warn("state transfer failed; trying another peer", "peer", p, "err", err)
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
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (n *Node) connectedPeers() []peer.ID {
	var out []peer.ID
	for _, p := range n.p2p.Peers() {
		if p.Connected && !p.Blocked {
			out = append(out, p.ID)
		}
	}
	return out
}

// transferFrom installs a peer's state; phase is the phase to return to
// if it fails (JOINING or ACTIVE). skipEmpty skips sources with no state.
func (n *Node) transferFrom(ctx context.Context, from peer.ID, back SyncPhase, skipEmpty bool) (err error) {
	start := time.Now()
	n.sync.update(func(p *SyncProgress) {
		p.Phase, p.Source, p.Started = PhaseSyncing, from.String(), start
		p.EntriesDone, p.EntriesTotal, p.BytesDone, p.BytesTotal = 0, 0, 0, 0
	})
	defer func() {
		n.sync.update(func(p *SyncProgress) {
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
	s, err := n.p2p.OpenStream(sctx, from, stateProtocol)
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
	loads := n.entities.Loads()
	err = n.store.Install(sctx, idleReader{s, transferIdle}, crdt.InstallOptions{
		SkipEmpty: skipEmpty,
		Progress: func(tp crdt.TransferProgress) {
			n.sync.update(func(p *SyncProgress) {
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
	for n.entities.Loads() == loads {
		select {
		case <-sctx.Done():
			return fmt.Errorf("load the installed entity tree: %w", sctx.Err())
		case <-t.C:
		}
	}
	n.log.Info("state transfer installed", "from", from, "took", time.Since(start).Round(time.Millisecond))
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
func (n *Node) serveState(from peer.ID, s io.ReadWriteCloser) {
	defer s.Close()
	br := bufio.NewReader(io.LimitReader(s, int64(len(stateRequest))))
	req, err := br.ReadString('\n')
	if err != nil || req != stateRequest {
		n.log.Warn("bad state request", "peer", from, "err", err)
		return
	}
	switch ph := n.sync.get().Phase; ph {
	case PhaseActive:
	case PhaseJoining:
		// Nothing to give yet (at most this node's own writes, which
		// reach the others anyway): answering "empty" lets the nodes of
		// a new cluster that start together find each other new at once.
		_ = crdt.WriteEmptySnapshot(s)
		return
	default:
		_ = crdt.RefuseSnapshot(s, fmt.Sprintf("node %s is %s itself", n.cfg.NodeID, ph))
		return
	}
	start := time.Now()
	var w io.Writer = s
	if st, ok := s.(deadliner); ok {
		w = idleWriter{st, transferIdle}
	}
	if err := n.store.WriteSnapshot(n.sync.ctx, w); err != nil {
		n.log.Warn("state transfer to peer failed", "peer", from, "err", err)
		return
	}
	n.log.Info("state transferred to peer", "peer", from, "took", time.Since(start).Round(time.Millisecond))
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
func (n *Node) repairDirty(ctx context.Context) {
	t := time.NewTicker(dirtyCheckInterval)
	defer t.Stop()
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n.SyncProgress().Phase != PhaseActive || time.Since(last) < dirtyRetry {
			continue
		}
		if !n.store.Status(ctx).Dirty || len(n.connectedPeers()) == 0 {
			continue
		}
		last = time.Now()
		n.log.Warn("the store is dirty (a DAG walk failed part-way): resyncing from a peer")
		if err := n.Resync(""); err != nil && !errors.Is(err, ErrSyncBusy) {
			n.log.Warn("resync of a dirty store", "err", err)
		}
	}
}

// Resync forces a full state transfer from a peer (the one named, or
// the first connected peer that can serve), keeping local writes the
// peers do not have yet. It returns once the transfer has started; its
// progress is in SyncProgress. ErrSyncBusy if one is running.
func (n *Node) Resync(peerID string) error {
	var want []peer.ID
	if peerID != "" {
		id, err := peer.Decode(peerID)
		if err != nil {
			return fmt.Errorf("resync: %q is not a peer ID: %w", peerID, err)
		}
		want = []peer.ID{id}
	} else {
		want = n.connectedPeers()
	}
	if len(want) == 0 {
		return errors.New("resync: no connected peer to transfer the state from; check `starling cluster peers`")
	}
	n.sync.mu.Lock()
	if n.sync.running {
		n.sync.mu.Unlock()
		return ErrSyncBusy
	}
	n.sync.running = true
	n.sync.mu.Unlock()
	if err := n.elect.runner.SetNodeAvailable(false); err != nil {
		n.log.Warn("resync: leaving the election", "err", err)
	}
	n.sync.update(func(p *SyncProgress) { p.Phase = PhaseSyncing; p.LastError = "" })
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer func() {
			n.sync.mu.Lock()
			n.sync.running = false
			n.sync.mu.Unlock()
			if n.sync.ctx.Err() == nil {
				if err := n.markAvailable(); err != nil {
					n.log.Warn("resync: rejoining the election", "err", err)
				}
			}
		}()
		var errs []error
		for _, p := range want {
			err := n.transferFrom(n.sync.ctx, p, PhaseActive, false)
			if err == nil {
				n.sync.update(func(p *SyncProgress) { p.Phase, p.Source = PhaseActive, "" })
				return
			}
			errs = append(errs, fmt.Errorf("%s: %w", p, err))
			if n.sync.ctx.Err() != nil {
				return
			}
		}
		err := errors.Join(errs...)
		n.log.Warn("resync failed", "err", err)
		n.sync.update(func(p *SyncProgress) { p.Phase = PhaseActive; p.LastError = err.Error() })
	}()
	return nil
}
