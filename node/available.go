package node

import (
	"maps"
	"slices"
	"sync"
	"time"
)

// availability is whether this node may lead the cluster: it may not
// while any reason holds it back (a join or resync in progress, a store
// that cannot write). Each part of the node holds or releases its own
// reason; the election sees the combination, so one part taking the
// node back does not override another's hold.
type availability struct {
	mu      sync.Mutex
	reasons map[string]bool
	set     func(bool) error
}

// Reasons a node is not available.
const (
	holdSync = "sync" // statesync: joining or resyncing
	holdDisk = "disk" // the store cannot write (a full disk)
)

func newAvailability(set func(bool) error) *availability {
	// Not available until statesync says the node has started.
	return &availability{reasons: map[string]bool{holdSync: true}, set: set}
}

// hold sets whether reason holds the node back, and passes the
// combination to the election.
func (a *availability) hold(reason string, held bool) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if held {
		a.reasons[reason] = true
	} else {
		delete(a.reasons, reason)
	}
	return a.set(len(a.reasons) == 0)
}

// held lists the reasons in force.
func (a *availability) held() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Sorted(maps.Keys(a.reasons))
}

// diskCheckInterval is how often the node looks whether its store can
// write (LevelDB notes failed writes at once; this only passes it on).
const diskCheckInterval = time.Second

// watchWritable leaves the cluster's candidacy while the store cannot
// write, and comes back once it can: a leader that cannot write would
// hold the cluster's leadership for nothing.
func (n *Node) watchWritable() {
	defer n.wg.Done()
	t := time.NewTicker(diskCheckInterval)
	defer t.Stop()
	was := true
	for {
		select {
		case <-n.stopPeers:
			return
		case <-t.C:
		}
		h := n.ldb.Health()
		if h.Writable == was {
			continue
		}
		was = h.Writable
		if err := n.avail.hold(holdDisk, !h.Writable); err != nil {
			n.log.Warn("election: availability", "err", err)
			continue
		}
		if !h.Writable {
			n.log.Warn("left the cluster's candidacy: the store cannot write", "cause", h.WriteError)
		} else {
			n.log.Info("back in the cluster's candidacy: the store writes again")
		}
	}
}
