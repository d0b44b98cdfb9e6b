package node

import (
	"time"

	"github.com/starling-sync/starling/nodestate"
)

// WithJoinTimeout sets how long a node with no state waits for a peer to
// transfer from (default statesync.DefaultJoinTimeout).
func WithJoinTimeout(d time.Duration) Option {
	return func(o *openOptions) { o.joinTimeout = d }
}

// SyncProgress reports the node's join/resync state.
func (n *Node) SyncProgress() nodestate.SyncProgress { return n.sync.Progress() }

// OnSyncPhase calls f (from the goroutine that changed it, without
// locks held) whenever the node's phase changes.
func (n *Node) OnSyncPhase(f func(nodestate.SyncPhase)) { n.sync.OnPhase(f) }

// Resync forces a full state transfer from a peer (the one named, or
// the first connected peer that can serve), keeping local writes the
// peers do not have yet. It returns once the transfer has started; its
// progress is in SyncProgress. nodestate.ErrSyncBusy if one is running.
func (n *Node) Resync(peerID string) error { return n.sync.Resync(peerID) }
